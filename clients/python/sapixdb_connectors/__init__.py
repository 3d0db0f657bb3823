"""Drop-in for SapixDB's `sapixdb-connectors` package (shared/seeds/000_*, "ConnectorClient API"),
talking to Sluice. Every method of the seed's table, typed pydantic answers, async:

    async with ConnectorClient("http://localhost:7475") as hub:
        bridge = await hub.add_rest_bridge("IoT Bridge")
        await hub.rest_push(bridge.id, {"sensor": "temp-7"})

Errors raise sluice.errors exceptions (NotFoundError for a 404, ...) carrying the answer's
`code`."""
from sluice._http import DEFAULT_URL, BaseClient, _pydantic_parse, drop_none
from sluice.errors import *  # noqa: F401,F403  (the typed errors, re-exported)
from sluice.errors import __all__ as _errors

from .models import ConnectorConfig, ConnectorList, ConnectorStats, DeleteResult, PushResult

C = "/v1/connectors"


def _cid(id):
    if not isinstance(id, str) or not id:
        raise ValueError("id: a connector id (a non-empty string)")
    return id


class ConnectorClient(BaseClient):
    """The Connector Hub's management API and the REST bridge push."""

    def __init__(self, base_url=DEFAULT_URL, **kw):
        super().__init__(base_url, **kw)

    # ---- the seed's table ----

    async def list_connectors(self) -> ConnectorList:
        """All connectors with inbound/outbound counts."""
        return _pydantic_parse(ConnectorList, await self._request("GET", C))

    async def create_connector(self, name, kind, config=None, *, enabled=None,
                               strands=None) -> ConnectorConfig:
        """Any kind; the direction follows from the kind. strands (Sluice): what a sink follows."""
        body = drop_none({"name": name, "kind": kind, "config": config, "enabled": enabled,
                          "strands": strands})
        return _pydantic_parse(ConnectorConfig, await self._request("POST", C, json=body))

    async def get_connector(self, id) -> ConnectorConfig:
        """Raises NotFoundError (404) if there is no such connector."""
        return _pydantic_parse(ConnectorConfig, await self._request("GET", "%s/%s" % (C, _cid(id))))

    async def update_connector(self, id, *, name=None, enabled=None, config=None,
                               strands=None) -> ConnectorConfig:
        """Patches any combination of name, enabled, config (and strands)."""
        body = drop_none({"name": name, "enabled": enabled, "config": config, "strands": strands})
        return _pydantic_parse(ConnectorConfig,
                               await self._request("PATCH", "%s/%s" % (C, _cid(id)), json=body))

    async def delete_connector(self, id) -> DeleteResult:
        """Outbound connectors stop firing immediately."""
        return _pydantic_parse(DeleteResult, await self._request("DELETE", "%s/%s" % (C, _cid(id))))

    async def rest_push(self, id, body, *, flags=None) -> PushResult:
        """Pushes a JSON object through a REST bridge; flags=2 is a TOMBSTONE."""
        params = {"flags": str(flags)} if flags is not None else None
        return _pydantic_parse(PushResult, await self._request(
            "POST", "%s/inbound/rest/%s/push" % (C, _cid(id)), json=body, params=params))

    async def add_rest_bridge(self, name, *, flags=0) -> ConnectorConfig:
        return await self.create_connector(name, "rest_bridge", {"flags": flags})

    async def add_webhook(self, name, url, *, secret=None) -> ConnectorConfig:
        return await self.create_connector(name, "webhook", drop_none({"url": url, "secret": secret}))

    async def add_s3(self, name, endpoint, bucket, *, prefix=None, auth_header=None) -> ConnectorConfig:
        return await self.create_connector(name, "s3", drop_none(
            {"endpoint": endpoint, "bucket": bucket, "prefix": prefix, "auth_header": auth_header}))

    async def add_postgres_cdc(self, name, connection_string, slot, publication,
                               table_filter=None) -> ConnectorConfig:
        return await self.create_connector(name, "postgres_cdc", drop_none(
            {"connection_string": connection_string, "slot": slot, "publication": publication,
             "table_filter": table_filter}))

    async def add_kafka(self, name, brokers, topic, *, group_id=None,
                        auto_offset_reset=None) -> ConnectorConfig:
        return await self.create_connector(name, "kafka", drop_none(
            {"brokers": list(brokers), "topic": topic, "group_id": group_id,
             "auto_offset_reset": auto_offset_reset}))

    async def enable(self, id) -> ConnectorConfig:
        return await self.update_connector(id, enabled=True)

    async def disable(self, id) -> ConnectorConfig:
        return await self.update_connector(id, enabled=False)

    # ---- Sluice's additions ----

    async def pause(self, id) -> ConnectorConfig:
        """No worker, cursor kept; state "paused" until resume()."""
        return _pydantic_parse(ConnectorConfig,
                               await self._request("POST", "%s/%s/pause" % (C, _cid(id))))

    async def resume(self, id) -> ConnectorConfig:
        return _pydantic_parse(ConnectorConfig,
                               await self._request("POST", "%s/%s/resume" % (C, _cid(id))))

    async def restart(self, id) -> ConnectorConfig:
        """Clears a failed state; the worker continues from its cursor."""
        return _pydantic_parse(ConnectorConfig,
                               await self._request("POST", "%s/%s/restart" % (C, _cid(id))))


__all__ = ["ConnectorClient", "ConnectorConfig", "ConnectorList", "ConnectorStats", "DeleteResult",
           "PushResult"] + list(_errors)
