"""Typed answers of Sluice's own routes (docs/api.md, docs/connectors.md)."""
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, Field


class Model(BaseModel):
    """The base of every answer model: fields the server adds later are kept, not refused."""

    class Config:
        extra = "allow"


_Model = Model


class WriteResult(_Model):
    record_hash: str
    strand: str
    seq: int
    timestamp_ms: int
    prev_hash: Optional[str] = None


class BatchResult(_Model):
    count: int
    strand: str
    first_seq: int
    last_seq: int
    timestamp_ms: int
    record_hashes: List[str]


class Record(_Model):
    record_hash: str
    strand: str
    seq: int
    timestamp_ms: int
    flags: int = 0
    source: Optional[str] = None
    prev_hash: Optional[str] = None
    payload: Any = None
    payload_msgpack_b64: Optional[str] = None


class RecordPage(_Model):
    records: List[Record]
    next_seq: int
    scanned: Optional[int] = None  # with where=
    truncated: Optional[bool] = None


class Latest(_Model):
    """GET /v1/strands/{name}/latest: the latest record of each key."""
    records: List[Record]
    keys: int
    scanned: int
    truncated: bool


class InclusionProof(_Model):
    leaf_index: int
    tree_size: int
    hashes: List[str]


class ConsistencyProof(_Model):
    from_: int = Field(alias="from")
    to: int
    hashes: List[str]


class Strand(_Model):
    name: str
    count: int
    head_hash: Optional[str] = None
    first_timestamp_ms: Optional[int] = None
    last_timestamp_ms: Optional[int] = None
    bytes: int = 0
    segments: int = 0


class DeadLetter(_Model):
    id: int
    strand: str
    seq: int
    record_hash: str
    attempts: int
    last_status: Optional[int] = None
    last_error: Optional[str] = None
    response_excerpt: Optional[str] = None
    at_ms: int


class DeadLetters(_Model):
    id: str
    count: int
    dead_letters: List[DeadLetter]


class Health(_Model):
    status: str
    agent: Optional[str] = None
    version: Optional[str] = None


__all__ = ["Model", "WriteResult", "BatchResult", "Record", "RecordPage", "Strand", "DeadLetter",
           "DeadLetters", "Health"]
