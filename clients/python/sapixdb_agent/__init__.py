"""Drop-in for the part of SapixDB's `sapixdb-agent` package that the Connector Hub and Boboyka
seeds name: SapixClient's raw-dict wrappers (connector_* and boboyka_*), plus record writes and
reads. Answers are the server's JSON as dicts; errors raise sluice.errors exceptions.

    async with SapixClient("http://localhost:7475") as client:
        resp = await client.boboyka_ingest("agent_health", {...})
        print(resp["record_hash"])"""
from sluice._http import DEFAULT_URL, BaseClient, drop_none
from sluice.errors import *  # noqa: F401,F403  (the typed errors, re-exported)
from sluice.errors import __all__ as _errors

C = "/v1/connectors"


class SapixClient(BaseClient):
    def __init__(self, base_url=DEFAULT_URL, **kw):
        super().__init__(base_url, **kw)

    # ---- records ----

    async def write(self, payload, *, agent_id=None, strand=None, flags=None) -> dict:
        """POST /v1/records: the answer once the record is durable."""
        body = drop_none({"payload": payload, "agent_id": agent_id, "strand": strand, "flags": flags})
        return await self._request("POST", "/v1/records", json=body)

    async def get_record(self, record_hash) -> dict:
        return await self._request("GET", "/v1/records/%s" % record_hash)

    # ---- the Connector Hub (seed 000: "SapixClient convenience methods") ----

    async def connector_list(self) -> dict:
        return await self._request("GET", C)

    async def connector_create(self, name, kind, config=None, *, enabled=None, strands=None) -> dict:
        body = drop_none({"name": name, "kind": kind, "config": config, "enabled": enabled,
                          "strands": strands})
        return await self._request("POST", C, json=body)

    async def connector_get(self, id) -> dict:
        return await self._request("GET", "%s/%s" % (C, id))

    async def connector_update(self, id, *, name=None, enabled=None, config=None) -> dict:
        body = drop_none({"name": name, "enabled": enabled, "config": config})
        return await self._request("PATCH", "%s/%s" % (C, id), json=body)

    async def connector_delete(self, id) -> dict:
        return await self._request("DELETE", "%s/%s" % (C, id))

    async def connector_rest_push(self, id, body, *, flags=None) -> dict:
        params = {"flags": str(flags)} if flags is not None else None
        return await self._request("POST", "%s/inbound/rest/%s/push" % (C, id), json=body, params=params)

    # ---- Boboyka (seed 004: "via SapixClient") ----

    async def boboyka_ingest(self, record_type, data) -> dict:
        return await self._request("POST", "/v1/boboyka/ingest",
                                   json={"record_type": record_type, "data": data})

    async def boboyka_status(self) -> dict:
        return await self._request("GET", "/v1/boboyka/status")

    async def boboyka_events(self, limit=None, record_type=None, *, cursor=None) -> dict:
        params = drop_none({"limit": limit, "record_type": record_type, "cursor": cursor})
        return await self._request("GET", "/v1/boboyka/events", params=params)


__all__ = ["SapixClient"] + list(_errors)
