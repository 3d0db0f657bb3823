"""Python client for what only Sluice has: durable record writes (single and batched), reading
and following strands, records by hash, dead letters, pause/resume/restart. The seeds' own
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
from .models import (BatchResult, DeadLetter, DeadLetters, Health, Record, RecordPage, Strand,
                     WriteResult)

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

    async def get_record(self, record_hash, *, raw=False) -> Record:
        params = {"raw": "1"} if raw else None
        return _pydantic_parse(Record, await self._request("GET", "/v1/records/%s" % record_hash,
                                                           params=params))

    # ---- strands ----

    async def strands(self):
        """Every strand with its count and head hash (a list of Strand)."""
        r = await self._request("GET", "/v1/strands")
        return [_pydantic_parse(Strand, s) for s in r["strands"]]

    async def records(self, strand, *, from_seq=None, limit=None, as_of_ms=None, raw=False) -> RecordPage:
        params = drop_none({"from_seq": from_seq, "limit": limit, "as_of_ms": as_of_ms,
                            "raw": "1" if raw else None})
        return _pydantic_parse(RecordPage, await self._request(
            "GET", "/v1/strands/%s/records" % _seg(strand), params=params))

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


__all__ = ["Client", "WriteResult", "BatchResult", "Record", "RecordPage", "Strand", "DeadLetter",
           "DeadLetters", "Health"] + list(_errors)
