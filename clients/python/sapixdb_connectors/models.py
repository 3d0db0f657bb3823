"""Typed answers of the Connector Hub API (shared/seeds/000_*: ConnectorConfig and friends).
Fields Sluice adds (state, last_error, strands, stats) are typed too; unknown fields are kept."""
from typing import Any, Dict, List, Optional

from sluice.models import Model as _Model


class ConnectorStats(_Model):
    """An outbound connector's delivery counters since the server started."""
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    lag: Optional[int] = None
    breaker: Optional[str] = None


class ConnectorConfig(_Model):
    id: str
    name: str
    kind: str
    direction: str  # "inbound" or "outbound"
    enabled: bool
    created_at_ms: int
    config: Dict[str, Any] = {}
    last_event_ms: Optional[int] = None
    event_count: int = 0
    # Sluice's additions
    state: Optional[str] = None
    last_error: Optional[str] = None
    strands: List[str] = []
    stats: Optional[Dict[str, Any]] = None


class ConnectorList(_Model):
    connectors: List[ConnectorConfig]
    inbound_count: int
    outbound_count: int


class PushResult(_Model):
    record_hash: str
    connector_id: str


class DeleteResult(_Model):
    deleted: bool
    id: str


__all__ = ["ConnectorStats", "ConnectorConfig", "ConnectorList", "PushResult", "DeleteResult"]
