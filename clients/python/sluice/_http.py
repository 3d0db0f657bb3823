"""The one HTTP layer of every client here: an httpx.AsyncClient, JSON in and out, errors raised
as the typed exceptions of sluice.errors."""
import httpx

from .errors import SluiceConnectionError, error_for

DEFAULT_URL = "http://localhost:7475"


def _pydantic_parse(model, data):
    """Model from a dict with pydantic 1 (Debian 12) or 2."""
    if hasattr(model, "model_validate"):
        return model.model_validate(data)
    return model.parse_obj(data)


def drop_none(d):
    """The dict without its None values: an optional argument left out is not sent."""
    return {k: v for k, v in d.items() if v is not None}


class BaseClient:
    """An async client: `async with Client(url) as c: ...` (or call aclose()).

    base_url: Sluice's address (default http://localhost:7475); api_key: sent as a Bearer token
    when given; timeout: seconds per request; transport: an httpx transport (tests)."""

    def __init__(self, base_url=DEFAULT_URL, *, api_key=None, timeout=30.0, transport=None):
        headers = {"User-Agent": "sluice-python/0.1"}
        if api_key:
            headers["Authorization"] = "Bearer %s" % api_key
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout,
                                       transport=transport)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def aclose(self):
        await self._http.aclose()

    async def _request(self, method, path, *, json=None, params=None, headers=None, content=None,
                       raw=False):
        try:
            r = await self._http.request(method, path, json=json, params=params, headers=headers,
                                         content=content)
        except httpx.TimeoutException as e:
            raise SluiceConnectionError("%s %s: no answer in time (%s)" % (method, path, e),
                                        code="timeout") from e
        except httpx.HTTPError as e:
            raise SluiceConnectionError("%s %s: cannot reach %s (%s)" % (method, path, self.base_url, e),
                                        code="connection_error") from e
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = None
            raise error_for(r.status_code, body, r.headers)
        if raw:
            return r
        return r.json()
