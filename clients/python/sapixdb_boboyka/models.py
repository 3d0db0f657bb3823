"""Typed answers of the Boboyka integration API (shared/seeds/004_*)."""
from typing import Any, Dict, List, Optional

from sluice.models import Model as _Model


class DualWrite(_Model):
    enabled: bool
    ok: Optional[bool] = None
    error: Optional[str] = None


class IngestResponse(_Model):
    record_hash: str
    record_type: str
    ingested_at_ms: int
    dual_write: DualWrite


class BoboykaStatusResponse(_Model):
    integration_phase: str
    dual_write_enabled: bool
    supabase_url: Optional[str] = None
    event_counts: Dict[str, int] = {}
    total_events: int = 0
    # Sluice's additions: the mirror's retry queue
    mirror_pending: Optional[int] = None
    mirror_failed: Optional[int] = None


class BoboykaEvent(_Model):
    record_hash: str
    record_type: str
    ingested_at_ms: int
    dual_write_ok: Optional[bool] = None
    dual_write_error: Optional[str] = None
    dual_write_state: Optional[str] = None
    dual_write_attempts: Optional[int] = None
    data: Dict[str, Any] = {}


class EventsResponse(_Model):
    events: List[BoboykaEvent]
    next_cursor: Optional[str] = None


__all__ = ["DualWrite", "IngestResponse", "BoboykaStatusResponse", "BoboykaEvent", "EventsResponse"]
