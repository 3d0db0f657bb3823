"""Typed errors. Sluice answers every error as {"error": message, "code": snake_case_code}; each
exception carries both, and the HTTP status, and its class tells the status family apart."""


class SluiceError(Exception):
    """Any error answered by Sluice (or a failure to reach it: code "connection_error")."""

    def __init__(self, message, *, code="error", status=None, body=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.body = body

    def __str__(self):
        if self.status is None:
            return "%s (%s)" % (self.message, self.code)
        return "%d %s: %s" % (self.status, self.code, self.message)


class InvalidRequestError(SluiceError):
    """400: the request names the field that is wrong."""


class NotFoundError(SluiceError):
    """404: no such connector, record, strand or route."""


class MethodNotAllowedError(SluiceError):
    """405."""


class ConflictError(SluiceError):
    """409: a name in use, a disabled or paused REST bridge, ..."""


class PayloadTooLargeError(SluiceError):
    """413."""


class UnsupportedMediaTypeError(SluiceError):
    """415."""


class RateLimitedError(SluiceError):
    """429: retry_after is the server's Retry-After in seconds (or None)."""

    def __init__(self, message, *, retry_after=None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(SluiceError):
    """5xx: the request could not be made durable, the server is shutting down, ..."""


class SluiceConnectionError(SluiceError):
    """The server could not be reached, or did not answer in time."""


_BY_STATUS = {400: InvalidRequestError, 404: NotFoundError, 405: MethodNotAllowedError,
              409: ConflictError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError,
              429: RateLimitedError}


def error_for(status, body, headers=None):
    """The exception for an error answer (body: the parsed JSON, or None)."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message, code = body["error"], body.get("code") or "error"
    else:
        message, code = "HTTP %d" % status, "http_%d" % status
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else SluiceError)
    if cls is RateLimitedError:
        ra = (headers or {}).get("retry-after")
        try:
            ra = float(ra) if ra is not None else None
        except ValueError:
            ra = None
        return cls(message, code=code, status=status, body=body, retry_after=ra)
    return cls(message, code=code, status=status, body=body)


__all__ = ["SluiceError", "InvalidRequestError", "NotFoundError", "MethodNotAllowedError",
           "ConflictError", "PayloadTooLargeError", "UnsupportedMediaTypeError", "RateLimitedError",
           "ServerError", "SluiceConnectionError", "error_for"]
