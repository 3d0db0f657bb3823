"""Drop-in for SapixDB's `sapixdb-boboyka` package (shared/seeds/004_*, "SDK API Reference"),
talking to Sluice: every method of the seed's table, typed pydantic answers, async.

    async with BoboykaClient("http://localhost:7475") as boboyka:
        resp = await boboyka.ingest_build(project_id="proj_abc", build_id="bld_007",
                                          status="succeeded", agent_id="boboyka_builder")

Optional fields left at None are not sent (the server then treats them as absent), except
`dequeued_at_ms`, to which the seed gives null a meaning (not yet dequeued): pass
dequeued_at_ms=None to send null. Errors raise sluice.errors exceptions carrying the `code`."""
import time

from sluice._http import DEFAULT_URL, BaseClient, _pydantic_parse, drop_none
from sluice.errors import *  # noqa: F401,F403  (the typed errors, re-exported)
from sluice.errors import __all__ as _errors

from .models import BoboykaEvent, BoboykaStatusResponse, DualWrite, EventsResponse, IngestResponse

B = "/v1/boboyka"
_UNSET = object()


def _now_ms():
    return int(time.time() * 1000)


class BoboykaClient(BaseClient):
    def __init__(self, base_url=DEFAULT_URL, **kw):
        super().__init__(base_url, **kw)

    async def ingest(self, record_type, data) -> IngestResponse:
        """Raw ingest of any record type (project_build, build_queue_item, agent_health,
        audit_log)."""
        body = {"record_type": record_type, "data": data}
        return _pydantic_parse(IngestResponse, await self._request("POST", B + "/ingest", json=body))

    async def ingest_build(self, project_id, build_id, status, agent_id=None, *, started_at_ms=None,
                           completed_at_ms=None, output_url=None, **extra) -> IngestResponse:
        """project_build: status is queued, running, succeeded or failed."""
        data = drop_none({"project_id": project_id, "build_id": build_id, "status": status,
                          "agent_id": agent_id, "started_at_ms": started_at_ms,
                          "completed_at_ms": completed_at_ms, "output_url": output_url, **extra})
        return await self.ingest("project_build", data)

    async def ingest_queue_item(self, queue_id, project_id, priority, status, *, enqueued_at_ms=None,
                                dequeued_at_ms=_UNSET, **extra) -> IngestResponse:
        """build_queue_item: status is waiting, processing or done; dequeued_at_ms=None sends
        null (not dequeued yet), leaving it out sends nothing."""
        data = drop_none({"queue_id": queue_id, "project_id": project_id, "priority": priority,
                          "status": status, "enqueued_at_ms": enqueued_at_ms, **extra})
        if dequeued_at_ms is not _UNSET:
            data["dequeued_at_ms"] = dequeued_at_ms
        return await self.ingest("build_queue_item", data)

    async def ingest_health(self, agent_id, status, cpu_pct=None, memory_mb=None, *,
                            checked_at_ms=None, **extra) -> IngestResponse:
        """agent_health: status is healthy, degraded or unhealthy; checked_at_ms defaults to
        now."""
        data = drop_none({"agent_id": agent_id, "status": status, "cpu_pct": cpu_pct,
                          "memory_mb": memory_mb,
                          "checked_at_ms": checked_at_ms if checked_at_ms is not None else _now_ms(),
                          **extra})
        return await self.ingest("agent_health", data)

    async def ingest_audit(self, agent_id, event, actor=None, metadata=None, *, timestamp_ms=None,
                           **extra) -> IngestResponse:
        """audit_log: timestamp_ms defaults to the ingest time (set by the server)."""
        data = drop_none({"agent_id": agent_id, "event": event, "actor": actor, "metadata": metadata,
                          "timestamp_ms": timestamp_ms, **extra})
        return await self.ingest("audit_log", data)

    async def status(self) -> BoboykaStatusResponse:
        """Integration phase, dual-write flag and per-type counts."""
        return _pydantic_parse(BoboykaStatusResponse, await self._request("GET", B + "/status"))

    async def events(self, limit=None, record_type=None, *, cursor=None) -> EventsResponse:
        """Recent events, newest first; cursor (Sluice) is an earlier page's next_cursor."""
        params = drop_none({"limit": limit, "record_type": record_type, "cursor": cursor})
        return _pydantic_parse(EventsResponse, await self._request("GET", B + "/events", params=params))

    async def build_events(self, limit=None) -> EventsResponse:
        return await self.events(limit, "project_build")

    async def health_events(self, limit=None) -> EventsResponse:
        return await self.events(limit, "agent_health")

    async def audit_events(self, limit=None) -> EventsResponse:
        return await self.events(limit, "audit_log")


__all__ = ["BoboykaClient", "IngestResponse", "DualWrite", "BoboykaStatusResponse", "BoboykaEvent",
           "EventsResponse"] + list(_errors)
