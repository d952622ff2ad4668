"""Writes and business rules for customers and messages."""

from __future__ import annotations


def gateway_event_apply(*, user, event: dict) -> str:
    """Apply one `message.*` or `contact.*` gateway event for `user`.

    Called by the callback service inside its transaction, after the event id
    was recorded. Returns a short outcome word for the event log, such as
    ``applied`` or ``ignored``.
    """
    raise NotImplementedError
