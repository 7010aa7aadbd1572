"""The connection-health rules both token functions share: pure, no I/O, no HTTP.

A stored Meta user token is in one of three states (credentials.status):
- active: works, and neither it nor its data access expires within the horizon;
- expiring: works for now, but will stop before the horizon and could not be renewed (Meta
  returned the same expiry, refused the exchange, or the 90-day data access runs out): the
  tenant has been told to reconnect;
- needs_reconnect: Meta rejected it (190, is_valid false) or its expiry has passed.
`not_connected` is the token-status answer when there is no row at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.platform.settings import Settings

ACTIVE = "active"
EXPIRING = "expiring"
NEEDS_RECONNECT = "needs_reconnect"
NOT_CONNECTED = "not_connected"

# Reasons carried by the MetaReconnectRequired event and stored in status_reason.
TOKEN_EXPIRED = "token_expired"
DATA_ACCESS_EXPIRED = "data_access_expired"
TOKEN_NOT_EXTENDED = "token_not_extended"
DATA_ACCESS_EXPIRING = "data_access_expiring"
TOKEN_INVALID = "token_invalid"
REFRESH_FAILING = "refresh_failing"  # Meta keeps failing the renewal inside the promised window
TOKEN_UNDECRYPTABLE = "token_undecryptable"  # the ciphertext does not open under its own row


@dataclass(frozen=True)
class Horizons:
    """When a refresh run acts, computed once per run from the settings."""

    now: datetime
    horizon: datetime  # expiries before this need a renewal or an alert
    recheck_before: datetime  # an 'expiring' row last tried before this is tried again
    promise: datetime  # a token expiring before this must be renewed or the tenant told

    @classmethod
    def from_settings(cls, settings: Settings, now: datetime | None = None) -> Horizons:
        now = now or datetime.now(UTC)
        ahead = timedelta(days=settings.token_refresh_window_days,
                          hours=settings.token_refresh_lead_hours)
        return cls(now=now, horizon=now + ahead,
                   recheck_before=now - timedelta(hours=settings.token_refresh_recheck_hours),
                   promise=now + timedelta(days=settings.token_refresh_window_days))


def classify(expires_at: datetime | None, data_access_expires_at: datetime | None,
             h: Horizons) -> tuple[str, str | None]:
    """(status, reason) of a token Meta says is valid, from its two expiries.

    None means never (Meta's 0). Token expiry wins over data access when both apply."""
    if expires_at is not None and expires_at <= h.now:
        return NEEDS_RECONNECT, TOKEN_EXPIRED
    if data_access_expires_at is not None and data_access_expires_at <= h.now:
        return NEEDS_RECONNECT, DATA_ACCESS_EXPIRED
    if expires_at is not None and expires_at <= h.horizon:
        return EXPIRING, TOKEN_NOT_EXTENDED
    if data_access_expires_at is not None and data_access_expires_at <= h.horizon:
        return EXPIRING, DATA_ACCESS_EXPIRING
    return ACTIVE, None


def effective_status(stored_status: str, expires_at: datetime | None,
                     data_access_expires_at: datetime | None, now: datetime) -> str:
    """What token-status reports: the stored status, except that a passed expiry is broken even
    before the next refresh run has written it down."""
    if stored_status == NEEDS_RECONNECT:
        return NEEDS_RECONNECT
    if any(t is not None and t <= now for t in (expires_at, data_access_expires_at)):
        return NEEDS_RECONNECT
    return stored_status if stored_status in (ACTIVE, EXPIRING) else NEEDS_RECONNECT


def missing_scopes(granted: list[str], required: list[str]) -> list[str]:
    have = set(granted)
    return [s for s in required if s not in have]


_ABSENT: Any = object()


def meta_time(value: Any) -> datetime | None | Any:
    """Meta's unix seconds -> datetime; 0 means never (None); missing/unreadable is ABSENT."""
    if isinstance(value, bool):
        return _ABSENT
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return _ABSENT
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


def is_absent(value: Any) -> bool:
    return value is _ABSENT


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
