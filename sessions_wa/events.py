"""Shape checks for gateway callback batches, done before anything is written.

A batch is ``{"events": [event, ...]}`` with 1 to 100 events. Each event is
``{event_id, seq, type, user_id, occurred_at, data}``. A malformed event
rejects the whole batch with an error naming its index and field, so the
gateway's dead-letter list shows exactly what to fix. Unknown event types and
unknown reason words are not malformed: they are recorded and ignored, so a
newer gateway does not block an older Django.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError

from messaging.phones import JidKind, jid_kind
from whatsapp_saas.exceptions import ApplicationError

MAX_EVENTS = 100
MAX_BIGINT = 2**63 - 1

SESSION_QR = "session.qr"
SESSION_CONNECTED = "session.connected"
SESSION_DISCONNECTED = "session.disconnected"
SESSION_LOGGED_OUT = "session.logged_out"
SESSION_EVENT_TYPES = frozenset(
    {SESSION_QR, SESSION_CONNECTED, SESSION_DISCONNECTED, SESSION_LOGGED_OUT}
)
# Prefixes of the types handed to messaging.services.gateway_event_apply.
MESSAGING_TYPE_PREFIXES = ("message.", "contact.")

# Event types fit GatewayEvent.type (64 characters).
_TYPE_RE = re.compile(r"^(?=.{3,64}$)[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
# JIDs and LIDs fit their WhatsAppSession columns (128 characters).
MAX_JID_LENGTH = 128
# Real event data nests a few levels; the limit keeps recursive processing of
# a hostile body far from Python's recursion limit.
MAX_DATA_DEPTH = 32
_E164_RE = re.compile(r"^\+[1-9]\d{5,14}$")
# json.loads joins a valid surrogate pair into one character, so a surrogate
# left in a str is always a lone one, which UTF-8 cannot encode.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# Keys whose values are message bodies or pairing secrets; they are dropped
# from the stored copy of the event at any depth.
REDACTED_KEYS = frozenset({"text", "body", "caption", "qr"})


class EventBatchError(ApplicationError):
    """The callback body is malformed; nothing from it was applied."""

    def __init__(self, message, *, index=None, field=None):
        extra = {}
        if index is not None:
            extra["index"] = index
        if field is not None:
            extra["field"] = field
        super().__init__(message, code="invalid_event", extra=extra, status_code=400)


@dataclass(frozen=True)
class GatewayEventIn:
    """One validated event; `raw` is the event exactly as received."""

    event_id: uuid.UUID
    seq: int
    type: str
    user_id: int
    occurred_at: datetime
    data: dict
    raw: dict

    @property
    def order_key(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.seq)


def events_validate(payload) -> list[GatewayEventIn]:
    """Return the batch's events, or raise EventBatchError on the first fault."""
    if not isinstance(payload, dict):
        raise EventBatchError(
            'The body must be a JSON object such as {"events": [...]}.',
            field="events",
        )

    events = payload.get("events")
    if not isinstance(events, list):
        raise EventBatchError(
            'The body has no "events" list; send {"events": [event, ...]}.',
            field="events",
        )
    if not 1 <= len(events) <= MAX_EVENTS:
        raise EventBatchError(
            f'"events" contains {len(events)} events; send 1 to {MAX_EVENTS} '
            "per request.",
            field="events",
        )

    return [_event_validate(index, event) for index, event in enumerate(events)]


def _event_validate(index: int, event) -> GatewayEventIn:
    where = f"events[{index}]"
    if not isinstance(event, dict):
        raise EventBatchError(f"{where} must be a JSON object.", index=index)

    def fail(field, expected):
        problem = "missing" if field not in event else f"invalid ({event[field]!r:.60})"
        raise EventBatchError(
            f"{where}.{field} is {problem}; expected {expected}.",
            index=index,
            field=field,
        )

    raw_id = event.get("event_id")
    try:
        if not isinstance(raw_id, str):
            raise ValueError
        event_id = uuid.UUID(raw_id)
    except ValueError:
        fail("event_id", "a UUID string")

    seq = event.get("seq")
    if not _is_int(seq) or not 0 <= seq <= MAX_BIGINT:
        fail("seq", "a non-negative integer")

    event_type = event.get("type")
    if not isinstance(event_type, str) or not _TYPE_RE.fullmatch(event_type):
        fail("type", 'an event type such as "session.qr"')

    user_id = event.get("user_id")
    if not _is_int(user_id) or not 1 <= user_id <= MAX_BIGINT:
        fail("user_id", "a positive integer")

    occurred_at = parse_time(event.get("occurred_at"))
    if occurred_at is None:
        fail(
            "occurred_at",
            "an ISO 8601 time with a UTC offset, such as 2026-01-31T12:00:00.000Z",
        )

    data = event.get("data")
    if not isinstance(data, dict):
        fail("data", "a JSON object")
    # Every string is cleaned once here, so no later step can hand a NUL
    # character to the database, whichever field it arrived in.
    try:
        data = strings_clean(data)
    except DataTooDeep:
        fail("data", f"a JSON object nested at most {MAX_DATA_DEPTH} levels deep")
    _session_data_validate(index, event_type, data)
    _messaging_data_validate(index, event_type, data)
    return GatewayEventIn(
        event_id=event_id,
        seq=seq,
        type=event_type,
        user_id=user_id,
        occurred_at=occurred_at,
        data=data,
        raw={**event, "data": data},
    )


def _is_account_jid(value: str) -> bool:
    """Return whether `value` is a WhatsApp account's phone JID or LID."""
    try:
        return jid_kind(value) in (JidKind.PHONE, JidKind.LID)
    except ValidationError:
        return False


def _session_data_validate(index: int, event_type: str, data: dict) -> None:
    def fail(field, expected):
        problem = "missing" if field not in data else f"invalid ({data[field]!r:.60})"
        raise EventBatchError(
            f"events[{index}].data.{field} is {problem}; expected {expected}.",
            index=index,
            field=f"data.{field}",
        )

    if event_type == SESSION_QR:
        if not isinstance(data.get("qr"), str) or not data["qr"]:
            fail("qr", "the raw QR string")
        if parse_time(data.get("expires_at")) is None:
            fail("expires_at", "an ISO 8601 time with a UTC offset")

    elif event_type == SESSION_CONNECTED:
        jid = data.get("jid")
        if not (
            isinstance(jid, str)
            and 0 < len(jid) <= MAX_JID_LENGTH
            and _is_account_jid(jid)
        ):
            fail("jid", "the account's JID such as 5511900000009@s.whatsapp.net")
        phone = data.get("phone")
        if phone is not None and not (
            isinstance(phone, str) and _E164_RE.fullmatch(phone)
        ):
            fail("phone", "an E.164 number such as +5511900000009, or null")
        if data.get("push_name") is not None and not isinstance(data["push_name"], str):
            fail("push_name", "a string or null")
        lid = data.get("lid")
        if lid is not None and not (
            isinstance(lid, str) and len(lid) <= MAX_JID_LENGTH
        ):
            fail("lid", "a LID such as 100000000000001@lid, or null")

    elif event_type == SESSION_DISCONNECTED:
        if not isinstance(data.get("reason"), str) or not data["reason"]:
            fail("reason", "a reason such as network, qr_timeout or banned")
        if not isinstance(data.get("will_reconnect"), bool):
            fail("will_reconnect", "true or false")

    elif event_type == SESSION_LOGGED_OUT:
        if not isinstance(data.get("reason"), str):
            fail("reason", "a reason such as device_removed or requested")


# The JSON type of each messaging event field that is present and not null.
# Messaging decides what a missing field means. A field of the wrong type
# comes from a broken gateway, so it rejects the batch before anything runs.
_STRING = (str, "a string or null")
_OBJECT = (dict, "a JSON object or null")
_BOOLEAN = (bool, "true, false or null")
_MESSAGING_FIELD_TYPES = {
    "message.received": {
        "gateway_message_id": _STRING,
        "chat_jid": _STRING,
        "chat_type": _STRING,
        "sender_jid": _STRING,
        "sender_phone": _STRING,
        "sender_lid": _STRING,
        "peer_jid": _STRING,
        "peer_phone": _STRING,
        "peer_lid": _STRING,
        "push_name": _STRING,
        "from_me": _BOOLEAN,
        "kind": _STRING,
        "text": _STRING,
        "quoted_id": _STRING,
        "metadata": _OBJECT,
        "media": _OBJECT,
        "offline": _BOOLEAN,
    },
    "message.updated": {
        "gateway_message_id": _STRING,
        "chat_jid": _STRING,
        "change": _STRING,
        "text": _STRING,
    },
    "message.reaction": {
        "gateway_message_id": _STRING,
        "chat_jid": _STRING,
        "sender_jid": _STRING,
        "emoji": _STRING,
    },
    "message.status": {
        "gateway_message_id": _STRING,
        "message_id": _STRING,
        "chat_jid": _STRING,
        "status": _STRING,
        "error": _STRING,
    },
    "contact.lid_mapped": {
        "lid": _STRING,
        "phone": _STRING,
        "jid": _STRING,
    },
}


def _messaging_data_validate(index: int, event_type: str, data: dict) -> None:
    for field, (expected_type, expected) in _MESSAGING_FIELD_TYPES.get(
        event_type, {}
    ).items():
        value = data.get(field)
        if value is None or isinstance(value, expected_type):
            continue
        raise EventBatchError(
            f"events[{index}].data.{field} is invalid ({value!r:.60}); "
            f"expected {expected}.",
            index=index,
            field=f"data.{field}",
        )


def _is_int(value) -> bool:
    # JSON true/false arrive as bool, which is a subclass of int in Python.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_time(value) -> datetime | None:
    """Parse an ISO 8601 time that carries a UTC offset; None otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    try:
        # Times near year 1 or 9999 with an offset fall outside what datetime
        # can hold once moved to UTC, which every comparison and save does.
        parsed.astimezone(UTC)
    except OverflowError:
        return None
    return parsed


def data_redact(value):
    """Return a copy of event data without message bodies or QR strings.

    The data must come from `events_validate`, whose strings are already
    clean, so this only leaves the keys out.
    """
    if isinstance(value, dict):
        return {
            key: data_redact(item) if isinstance(item, (dict, list)) else item
            for key, item in value.items()
            if key not in REDACTED_KEYS
        }
    if isinstance(value, list):
        return [
            data_redact(item) if isinstance(item, (dict, list)) else item
            for item in value
        ]
    return value


class DataTooDeep(ValueError):
    """Error raised when JSON data nests lists and objects too deeply."""


def strings_clean(value, depth: int = 1):
    """Return a copy of JSON data with NUL removed from every key and string.

    Everything else is kept exactly, emoji, direction marks and joiners
    included. Raises DataTooDeep when lists and objects nest more than
    MAX_DATA_DEPTH levels, before recursing any deeper, so hostile nesting
    costs no more than that.
    """
    if isinstance(value, dict):
        if depth > MAX_DATA_DEPTH:
            raise DataTooDeep
        cleaned = {}
        for key, item in value.items():
            # Most keys and values are ASCII strings without NUL. They are
            # kept without a call each, because a callback batch has thousands.
            if type(key) is not str or not key.isascii() or "\x00" in key:
                key = text_clean(key)
            if type(item) is not str or not item.isascii() or "\x00" in item:
                item = strings_clean(item, depth + 1)
            cleaned[key] = item
        return cleaned
    if isinstance(value, list):
        if depth > MAX_DATA_DEPTH:
            raise DataTooDeep
        return [strings_clean(item, depth + 1) for item in value]
    if isinstance(value, str):
        return text_clean(value)
    return value


def text_clean(value: str) -> str:
    """Return the text without what PostgreSQL text and jsonb reject.

    NUL characters are removed. A lone UTF-16 surrogate (half of an emoji,
    which a JSON escape such as \\ud83d can carry) becomes U+FFFD, the
    replacement character.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    if value.isascii():
        return value
    try:
        # Only a lone surrogate makes UTF-8 encoding fail, so this finds
        # one without a regular expression search of every string.
        value.encode()
    except UnicodeEncodeError:
        value = _SURROGATE_RE.sub("\ufffd", value)
    return value
