"""Read message times in every shape WhatsApp libraries produce."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Anything earlier predates WhatsApp, anything later is a broken clock or a
# misread unit; such values count as missing.
EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# Values above this are milliseconds: 10**12 seconds is the year 33658.
MILLISECONDS_ABOVE = 10**12

_NUMBER_RE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,9})?")


def _from_epoch(seconds: float) -> datetime | None:
    try:
        if not math.isfinite(seconds):
            return None
        if seconds > MILLISECONDS_ABOVE:
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        # An integer too large for a float, or a time datetime cannot hold.
        return None


def _from_long(value: dict) -> float | None:
    """Read a protobuf Long as serialised to JSON: ``{low, high, unsigned}``."""
    low = value.get("low")
    high = value.get("high")
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    if isinstance(low, bool) or isinstance(high, bool):
        return None
    return (high << 32) | (low & 0xFFFFFFFF)


def timestamp_parse(value) -> datetime | None:
    """Return a UTC datetime for a message time, or None when it has none.

    Accepts ISO 8601 text, Unix seconds as a number or numeric text,
    milliseconds (any value above 10**12), and protobuf Long objects
    (``high * 2**32 + low``). None, unreadable values and times outside
    2009..2100 give None, so the caller can fall back to the receive time.
    """
    if value is None or isinstance(value, bool):
        return None

    if isinstance(value, dict):
        number = _from_long(value)
        moment = None if number is None else _from_epoch(number)
    elif isinstance(value, int | float):
        moment = _from_epoch(value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER_RE.fullmatch(text):
            moment = _from_epoch(float(text))
        else:
            try:
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                moment = moment.astimezone(UTC)
            except (ValueError, OverflowError):
                return None
    else:
        return None

    if moment is None or not (EARLIEST <= moment < LATEST):
        return None
    return moment
