"""Python client for what only Sluice has: durable record writes (single and batched), reading
and following strands, queries (where, latest per key), records by hash, Merkle proofs and
signed checkpoints, dead letters, pause/resume/restart. The seeds' own
clients are the sibling packages sapixdb_connectors, sapixdb_boboyka and sapixdb_agent.

    import asyncio, sluice

    async def main():
        async with sluice.Client("http://localhost:7475") as s:
            w = await s.write({"amount": 142.5}, strand="payments")
            page = await s.records("payments", from_seq=0)

    asyncio.run(main())

Errors raise the typed exceptions of sluice.errors, each carrying the answer's `code`."""
import asyncio
import json as _json

from ._http import DEFAULT_URL, BaseClient, _pydantic_parse, drop_none
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors
from .models import (BatchResult, ConsistencyProof, DeadLetter, DeadLetters, Health,
                     InclusionProof, Latest, Record, RecordPage, Strand, WriteResult)

__version__ = "0.1.0"


def _seg(name):
    from urllib.parse import quote
    return quote(name, safe="")


class Client(BaseClient):
    def __init__(self, base_url=DEFAULT_URL, **kw):
        super().__init__(base_url, **kw)

    async def health(self) -> Health:
        return _pydantic_parse(Health, await self._request("GET", "/v1/health"))

    async def metrics(self) -> str:
        """GET /metrics: Prometheus text."""
        return (await self._request("GET", "/metrics", raw=True)).text

    # ---- records ----

    async def write(self, payload, *, strand=None, agent_id=None, flags=None) -> WriteResult:
        """One record; answered once it is fsynced."""
        body = drop_none({"payload": payload, "strand": strand, "agent_id": agent_id, "flags": flags})
        return _pydantic_parse(WriteResult, await self._request("POST", "/v1/records", json=body))

    async def write_batch(self, records, *, strand=None) -> BatchResult:
        """Many records in one request, all or nothing: each item is a record object
        ({"payload", "agent_id"?, "flags"?}); sent as NDJSON."""
        lines = "".join(_json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return _pydantic_parse(BatchResult, await self._request(
            "POST", "/v1/records/batch", content=lines.encode(),
            params=drop_none({"strand": strand}), headers={"Content-Type": "application/x-ndjson"}))

    async def get_record(self, record_hash, *, raw=False, proof=False) -> Record:
        """One record by its hash; raw=True adds the exact hashed bytes, proof=True its inclusion
        proof and the signed checkpoint it is against (record.proof, record.checkpoint)."""
        params = drop_none({"raw": "1" if raw else None, "proof": "1" if proof else None}) or None
        return _pydantic_parse(Record, await self._request("GET", "/v1/records/%s" % record_hash,
                                                           params=params))

    # ---- strands ----

    async def strands(self):
        """Every strand with its count and head hash (a list of Strand)."""
        r = await self._request("GET", "/v1/strands")
        return [_pydantic_parse(Strand, s) for s in r["strands"]]

    async def records(self, strand, *, from_seq=None, limit=None, as_of_ms=None, raw=False,
                      where=None, max_scan=None) -> RecordPage:
        """A page of records; where= keeps those an expression is true for (docs/expressions.md),
        scanning at most max_scan records (page.scanned, page.truncated)."""
        params = drop_none({"from_seq": from_seq, "limit": limit, "as_of_ms": as_of_ms,
                            "raw": "1" if raw else None, "where": where, "max_scan": max_scan})
        return _pydantic_parse(RecordPage, await self._request(
            "GET", "/v1/strands/%s/records" % _seg(strand), params=params))

    async def latest(self, strand, key, *, as_of_ms=None, where=None, limit=None,
                     max_scan=None) -> Latest:
        """The latest record of each value of the field path key (as of as_of_ms): SapixDB's
        time-travel read."""
        params = drop_none({"key": key, "as_of_ms": as_of_ms, "where": where, "limit": limit,
                            "max_scan": max_scan})
        return _pydantic_parse(Latest, await self._request(
            "GET", "/v1/strands/%s/latest" % _seg(strand), params=params))

    # ---- proofs (docs/proofs.md) ----

    async def checkpoint(self, strand) -> str:
        """The strand's latest signed checkpoint (a C2SP signed note), as text."""
        return (await self._request("GET", "/v1/strands/%s/checkpoint" % _seg(strand), raw=True)).text

    async def checkpoint_key(self) -> str:
        """The verifier key of the checkpoints (name+keyid+base64)."""
        return (await self._request("GET", "/v1/checkpoint-key", raw=True)).text.strip()

    async def inclusion_proof(self, strand, *, record_hash=None, seq=None,
                              tree_size=None) -> InclusionProof:
        """An RFC 9162 inclusion proof of one record (by hash or seq)."""
        params = drop_none({"record_hash": record_hash, "seq": seq, "tree_size": tree_size})
        return _pydantic_parse(InclusionProof, await self._request(
            "GET", "/v1/strands/%s/proof/inclusion" % _seg(strand), params=params))

    async def consistency_proof(self, strand, first, second=None) -> ConsistencyProof:
        """An RFC 9162 consistency proof: the tree of size second extends the tree of size first."""
        params = drop_none({"from": first, "to": second})
        return _pydantic_parse(ConsistencyProof, await self._request(
            "GET", "/v1/strands/%s/proof/consistency" % _seg(strand), params=params))

    async def follow(self, strand, *, from_seq=0, limit=1000, poll_interval=0.25):
        """Yields every record of strand from from_seq on, then new ones as they are written
        (polling next_seq), for ever; break out of the loop to stop."""
        seq = from_seq
        while True:
            page = await self.records(strand, from_seq=seq, limit=limit)
            for r in page.records:
                yield r
            if page.next_seq == seq or not page.records:
                await asyncio.sleep(poll_interval)
            seq = page.next_seq

    # ---- connectors: what the seeds' clients lack ----

    async def pause(self, connector) -> dict:
        """Pauses a connector (id or name): no worker, its cursor kept."""
        return await self._request("POST", "/v1/connectors/%s/pause" % _seg(connector))

    async def resume(self, connector) -> dict:
        return await self._request("POST", "/v1/connectors/%s/resume" % _seg(connector))

    async def restart(self, connector) -> dict:
        return await self._request("POST", "/v1/connectors/%s/restart" % _seg(connector))

    async def dead_letters(self, connector_id, *, limit=None) -> DeadLetters:
        return _pydantic_parse(DeadLetters, await self._request(
            "GET", "/v1/connectors/%s/dead-letters" % _seg(connector_id),
            params=drop_none({"limit": limit})))

    async def replay_dead_letters(self, connector_id) -> int:
        """Each dead letter is delivered once more; returns how many."""
        r = await self._request("POST", "/v1/connectors/%s/dead-letters/replay" % _seg(connector_id))
        return r["replaying"]

    async def delete_dead_letters(self, connector_id) -> int:
        r = await self._request("DELETE", "/v1/connectors/%s/dead-letters" % _seg(connector_id))
        return r["deleted"]

    async def connector_kinds(self) -> list:
        """The catalog: every kind with its fields."""
        return (await self._request("GET", "/v1/connector-kinds"))["kinds"]


__all__ = ["Client", "WriteResult", "BatchResult", "Record", "RecordPage", "Latest", "Strand",
           "DeadLetter", "DeadLetters", "Health", "InclusionProof", "ConsistencyProof"] + list(_errors)
