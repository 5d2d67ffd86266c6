"""Unix times as the API and the event records write them: ISO 8601, UTC, with a ``Z``."""

from __future__ import annotations

import datetime


def iso(timestamp: float, *, timespec: str = "auto") -> str:
    """``2026-11-26T08:39:48.123456Z``; event records (AWS-shaped) use ``timespec="milliseconds"``."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_ms(timestamp: float) -> str:
    """The form of AWS event records: milliseconds, ``2026-11-26T08:39:48.123Z``."""
    return iso(timestamp, timespec="milliseconds")
