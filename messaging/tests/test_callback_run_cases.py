"""Hard cases for applying a run of message events together.

`test_callback_runs` generates mixed batches. These tests pick the inputs
most likely to make the shared path of `gateway_event_run_apply` differ from
applying each event alone. They cover repeated event ids, interleaved users,
events that break a run and receipts for messages stored earlier in the same
run. They also cover merges, the subscriber's own identity and malformed
data. Most post the same events once as one batch and once one event per
request, for subscribers set up alike. They compare the rows, the outcomes,
the order of the messages and the ignored-event counts the dashboard shows.
"""

from __future__ import annotations

import random
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import IntegrityError

from messaging.models import Customer, Message
from messaging.selectors import ignored_event_counts
from sessions_wa.models import WhatsAppSession

from .helpers import CUSTOMER_JID, OWN_PHONE, callback_post, event, received_data
from .test_callback_runs import (
    INBOUND_IDS,
    LID_2,
    LID_4,
    OUTBOUND_IDS,
    PEERS,
    TIMES,
    _echo,
    _jid,
    _other,
    _receipt,
    _received,
    _state,
    _subscriber,
)

OWN_LID = "100000000000009@lid"
LID_1 = "100000000000001@lid"
GROUP_JID = "120363000000000002@g.us"
LONG_ID = "L" * 129
EXACT_ID = "E" * 128

# Spellings of a message code that uuid.UUID reads as the same code.
CODE_SPELLINGS = {
    "upper": str.upper,
    "braces": lambda code: "{" + code + "}",
    "urn": lambda code: f"urn:uuid:{code}",
    "hex": lambda code: code.replace("-", ""),
}


@pytest.fixture(autouse=True)
def local_cache(settings):
    """Count ignored events in an empty local cache, so every test starts at 0."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "callback-run-cases",
        }
    }
    cache.clear()


def _message_id(value, codes: list[str]):
    """Return the `message_id` to send. An index or (spelling, index) names a code."""
    if isinstance(value, int) and not isinstance(value, bool):
        return codes[value]
    if isinstance(value, tuple):
        spelling, index = value
        return CODE_SPELLINGS[spelling](codes[index])
    return value


def _events_build(user, codes: list[str], scenario) -> list[dict]:
    events = []
    for event_type, data in scenario:
        data = dict(data)
        if "message_id" in data:
            data["message_id"] = _message_id(data["message_id"], codes)
        events.append(event(user, event_type, data))
    return events


def _rows(user, codes: list[str]) -> dict:
    """`_state` plus the order of the messages and today's ignored counts."""
    rows = _state(user, codes)
    rows["order"] = list(
        Message.objects.filter(owner=user)
        .order_by("pk")
        .values_list("gateway_message_id", "direction")
    )
    rows["ignored"] = ignored_event_counts(user=user)
    return rows


def _assert_same(together: dict, alone: dict) -> None:
    for part, rows in together.items():
        assert rows == alone[part], part


def _both_ways(scenario, *, prepare=None, repeat=()) -> tuple[dict, dict, list]:
    """Post `scenario` as one batch, and as one event per request.

    `prepare(user)` runs after the usual set-up of each subscriber. Each
    (index, position) in `repeat` inserts a copy of scenario event `index`,
    with the same event id, at `position` of the list built so far. Returns
    the batch's rows, the other subscriber's rows and every callback
    response body, the batch's first.
    """
    built = []
    for email in ("together@example.com", "alone@example.com"):
        user, codes = _subscriber(email)
        if prepare is not None:
            prepare(user)
        originals = _events_build(user, codes, scenario)
        events = list(originals)
        for index, position in repeat:
            events.insert(position, dict(originals[index]))
        built.append((user, codes, events))

    (together, together_codes, batch), (alone, alone_codes, singles) = built
    responses = [callback_post(batch)]
    responses += [callback_post([single]) for single in singles]
    return _rows(together, together_codes), _rows(alone, alone_codes), responses


def _outcomes(rows: dict) -> list[str]:
    return [outcome for _type, outcome, _detail in rows["outcomes"]]


def _from_peer(phone, lid, **overrides) -> dict:
    """`message.received` data of a message from the person (phone, lid)."""
    jid = _jid(phone, lid)
    fields = {
        "chat_jid": jid,
        "sender_jid": jid,
        "sender_phone": phone,
        "sender_lid": lid,
        "peer_jid": jid,
        "peer_phone": phone,
        "peer_lid": lid,
        **overrides,
    }
    return received_data(**fields)


def _status(status: str, **fields) -> tuple[str, dict]:
    return "message.status", {"status": status, **fields}


def _inbound(gateway_id: str, **overrides) -> tuple[str, dict]:
    return "message.received", received_data(gateway_message_id=gateway_id, **overrides)


def test_repeated_event_id_applies_once(db):
    scenario = [
        _inbound("IN1"),
        _inbound("IN2", kind="undecryptable", text=None),
        _status("delivered", gateway_message_id="OUT1", timestamp=TIMES[1]),
        _inbound("IN2", text="Oi de novo"),
    ]

    # Copies of the placeholder and of the receipt follow them in the run.
    together, alone, responses = _both_ways(scenario, repeat=[(1, 2), (2, 4)])

    assert responses[0] == {"accepted": 4, "duplicates": 2}
    assert sum(response["duplicates"] for response in responses[1:]) == 2
    _assert_same(together, alone)


def test_interleaved_users_match_alone(db):
    users = {}
    for name in ("a-together", "b-together", "a-alone", "b-alone"):
        users[name] = _subscriber(f"{name}@example.com")
    missing_user_id = max(user.pk for user, _codes in users.values()) + 1000
    # (subscriber, event type, data). The events of one subscriber are split
    # into several runs by the other's, and by an event for no known user.
    scenario = [
        ("a", *_inbound("IN1")),
        ("a", *_inbound("IN2")),
        ("b", *_inbound("IN1")),
        ("a", *_status("read", gateway_message_id="OUT1")),
        ("missing", *_inbound("IN9")),
        ("a", *_status("delivered", message_id=0)),
        ("b", *_status("delivered", gateway_message_id="OUT1")),
        ("b", "message.received", _from_peer("+5511900000002", LID_2)),
        (
            "b",
            "message.received",
            received_data(gateway_message_id="OUT9", from_me=True),
        ),
        ("a", *_inbound("IN1")),
        ("b", *_status("read", gateway_message_id="OUT9")),
        ("a", "message.received", _from_peer(None, LID_4, gateway_message_id="IN3")),
    ]

    def events_for(suffix: str) -> list[dict]:
        events = []
        for subscriber, event_type, data in scenario:
            owner = "a" if subscriber == "missing" else subscriber
            user, codes = users[f"{owner}-{suffix}"]
            built = _events_build(user, codes, [(event_type, data)])[0]
            if subscriber == "missing":
                built["user_id"] = missing_user_id
            events.append(built)
        return events

    callback_post(events_for("together"))
    for single in events_for("alone"):
        callback_post([single])

    for owner in ("a", "b"):
        _assert_same(
            _rows(*users[f"{owner}-together"]), _rows(*users[f"{owner}-alone"])
        )


def test_run_breaking_events_match_alone(db):
    scenario = [
        _inbound("IN1"),
        _inbound("IN2"),
        (
            "message.updated",
            {"gateway_message_id": "IN1", "change": "edited", "text": "Oi!"},
        ),
        _inbound("IN1", text="Oi!"),
        _inbound("IN2"),
        _status("sent", gateway_message_id="OUT1", timestamp=TIMES[1]),
        (
            "message.reaction",
            {"gateway_message_id": "IN2", "emoji": "👍", "sender_jid": CUSTOMER_JID},
        ),
        _status("delivered", gateway_message_id="OUT1", timestamp=TIMES[1]),
        ("contact.lid_mapped", {"phone": "+5511900000001", "lid": LID_1}),
        (
            "message.received",
            _from_peer("+5511900000001", LID_1, gateway_message_id="IN3"),
        ),
        _status("read", gateway_message_id="OUT1", timestamp=TIMES[2]),
        ("message.updated", {"gateway_message_id": "IN4", "change": "revoked"}),
        _inbound("IN4"),
        (
            "message.reaction",
            {"gateway_message_id": "OUT2", "emoji": "❤️", "sender_jid": CUSTOMER_JID},
        ),
        _status("delivered", gateway_message_id="OUT2", timestamp=TIMES[3]),
        _inbound("IN5"),
    ]

    together, alone, _responses = _both_ways(scenario)

    _assert_same(together, alone)


def test_receipts_by_code_match_alone(db):
    scenario = [
        _status("delivered", message_id=1, gateway_message_id="OTHER1"),
        _status("read", message_id=2, gateway_message_id="OUT1"),
        _status("sent", message_id=0, gateway_message_id="NEW0"),
        _status("delivered", gateway_message_id="NEW0", timestamp=TIMES[2]),
        _status("read", message_id=3),
        _status("read", message_id=0, gateway_message_id="NEW0b", timestamp=TIMES[3]),
        _status("read", message_id=1, gateway_message_id="OUT1", timestamp=TIMES[4]),
    ]

    together, alone, _responses = _both_ways(scenario)

    _assert_same(together, alone)


def test_receipt_code_assigns_gateway_id(db):
    user, codes = _subscriber("alice@example.com")
    scenario = [
        _status("sent", message_id=0, gateway_message_id="NEW0"),
        _status("delivered", gateway_message_id="NEW0", timestamp=TIMES[2]),
    ]

    callback_post(_events_build(user, codes, scenario))

    message = Message.objects.get(code=codes[0])
    assert message.gateway_message_id == "NEW0"
    assert message.status == Message.Status.DELIVERED


def test_receipts_for_messages_stored_in_run(db):
    scenario = [
        ("message.received", received_data(gateway_message_id="OUT9", from_me=True)),
        _status("delivered", gateway_message_id="OUT9", timestamp=TIMES[1]),
        _inbound("IN1"),
        _status("read", gateway_message_id="IN1"),
        _status("read", message_id=3, gateway_message_id="OUT9", timestamp=TIMES[2]),
        _status("read", gateway_message_id="OUT9", timestamp=TIMES[3]),
        ("message.received", received_data(gateway_message_id="OUT9", from_me=True)),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert _outcomes(together) == [
        "applied",
        "applied",
        "applied",
        "ignored",
        "applied",
        "duplicate",
        "duplicate",
    ]
    _assert_same(together, alone)


def test_placeholder_upgraded_within_run(db):
    scenario = [
        _inbound("IN1", kind="undecryptable", text=None),
        _inbound("IN1", text="Oi"),
        _inbound("IN1", text="Oi"),
        _inbound("IN2", text="Tudo bem?"),
        _inbound("IN2", kind="undecryptable", text=None),
        _inbound("IN3", kind="text", text=""),
        _inbound("IN3", text="Agora sim"),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert _outcomes(together) == [
        "applied",
        "applied",
        "duplicate",
        "applied",
        "duplicate",
        "applied",
        "applied",
    ]
    _assert_same(together, alone)


def test_push_name_changes_mid_run(db):
    scenario = [
        _inbound("IN1", push_name="Ana"),
        _inbound("IN2", push_name="Ana"),
        _inbound("IN3", push_name="Bia"),
        _inbound("IN4", push_name=None),
        _inbound("IN5", push_name="  Ana  "),
        _inbound("IN6", push_name="A" * 300),
        _inbound("IN7", push_name="A" * 250),
    ]

    together, alone, _responses = _both_ways(scenario)

    _assert_same(together, alone)


def test_lid_then_phone_merge_in_run(db):
    phone = "+5511900000005"
    scenario = [
        ("message.received", _from_peer(phone, None, gateway_message_id="IN1")),
        ("message.received", _from_peer(None, LID_4, gateway_message_id="IN2")),
        ("message.received", _from_peer(None, LID_4, gateway_message_id="IN3")),
        ("message.received", _from_peer(phone, LID_4, gateway_message_id="IN4")),
        ("message.received", _from_peer(None, LID_4, gateway_message_id="IN5")),
        ("message.received", _from_peer(phone, None, gateway_message_id="IN6")),
        ("message.received", _from_peer(phone, LID_2, gateway_message_id="IN7")),
    ]

    together, alone, _responses = _both_ways(scenario)

    _assert_same(together, alone)


def test_lid_customer_merged_keeps_messages(db):
    user, codes = _subscriber("alice@example.com")
    phone = "+5511900000005"
    scenario = [
        ("message.received", _from_peer(phone, None, gateway_message_id="IN1")),
        ("message.received", _from_peer(None, LID_4, gateway_message_id="IN2")),
        ("message.received", _from_peer(None, LID_4, gateway_message_id="IN3")),
        ("message.received", _from_peer(phone, LID_4, gateway_message_id="IN4")),
    ]

    callback_post(_events_build(user, codes, scenario))

    customer = Customer.objects.get(owner=user, lid=LID_4)
    assert customer.phone == phone
    assert customer.messages.count() == 4


def _own_lid_set(user) -> None:
    WhatsAppSession.objects.filter(user=user).update(lid=OWN_LID)


def test_own_number_and_groups_ignored(db):
    own_jid = _jid(OWN_PHONE, None)
    scenario = [
        _inbound("IN1"),
        ("message.received", _from_peer(OWN_PHONE, None, gateway_message_id="S1")),
        ("message.received", _from_peer(None, OWN_LID, gateway_message_id="S2")),
        (
            "message.received",
            received_data(
                gateway_message_id="S3",
                from_me=True,
                chat_jid=own_jid,
                peer_jid=own_jid,
                peer_phone=OWN_PHONE,
            ),
        ),
        _inbound("G1", chat_jid=GROUP_JID, chat_type="group"),
        _inbound("B1", chat_jid="status@broadcast"),
        _inbound("N1", chat_jid="120363000000000003@newsletter"),
        _inbound("IN2"),
    ]

    together, alone, _responses = _both_ways(scenario, prepare=_own_lid_set)

    assert together["ignored"] == {
        "own_number": 3,
        "group": 1,
        "broadcast": 1,
        "newsletter": 1,
    }
    _assert_same(together, alone)


def test_own_number_changes_mid_batch(db):
    new_phone = "+5511900000001"
    scenario = [
        _inbound("IN1"),
        (
            "session.connected",
            {
                "jid": _jid(new_phone, None),
                "phone": new_phone,
                "lid": None,
                "push_name": "Me",
            },
        ),
        _inbound("IN2"),
        _inbound("IN3"),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert _outcomes(together) == ["applied", "applied", "ignored", "ignored"]
    _assert_same(together, alone)


def test_run_without_session_matches(db):
    def session_delete(user):
        WhatsAppSession.objects.filter(user=user).delete()

    scenario = [
        _inbound("IN1"),
        _inbound("IN2"),
        ("message.received", _from_peer(OWN_PHONE, None, gateway_message_id="S1")),
        _status("read", gateway_message_id="OUT1"),
    ]

    together, alone, _responses = _both_ways(scenario, prepare=session_delete)

    _assert_same(together, alone)


def test_unknown_status_words_ignored(db):
    scenario = [
        _status(word, gateway_message_id="OUT1")
        for word in ("seen", "", "READ", "pending", "server_ack", " read")
    ]
    scenario += [
        _status("played", gateway_message_id="OUT1", timestamp=TIMES[2]),
        _status("read", gateway_message_id="OUT1", timestamp=TIMES[1]),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert together["ignored"] == {"unknown_status": 6}
    _assert_same(together, alone)


def test_message_id_spellings_and_junk(db):
    scenario = [
        _status("delivered", message_id="not-a-uuid"),
        _status("delivered", message_id=""),
        _status("delivered", message_id="12345", gateway_message_id="OUT2"),
        _status("delivered", message_id=("upper", 1)),
        _status("delivered", message_id=("braces", 0)),
        _status("delivered", message_id=("urn", 3)),
        _status("read", message_id=("hex", 1), gateway_message_id="OUT1"),
        _status("read", message_id="00000000-0000-0000-0000-000000000000"),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert _outcomes(together) == [
        "rejected",
        "rejected",
        "applied",
        "applied",
        "applied",
        "applied",
        "applied",
        "rejected",
    ]
    _assert_same(together, alone)


def test_long_gateway_ids_in_run(db):
    scenario = [
        _inbound("IN1"),
        _inbound(LONG_ID),
        _inbound(EXACT_ID),
        _inbound(f"  {EXACT_ID}  "),
        _status("read", gateway_message_id=LONG_ID),
        _status("read", gateway_message_id=EXACT_ID),
        ("message.received", received_data(gateway_message_id=EXACT_ID, from_me=True)),
        _status("delivered", gateway_message_id=f" {EXACT_ID} "),
        _inbound("IN2", quoted_id="Q" * 300),
    ]

    together, alone, _responses = _both_ways(scenario)

    assert _outcomes(together) == [
        "applied",
        "rejected",
        "applied",
        "duplicate",
        "rejected",
        "ignored",
        "applied",
        "applied",
        "applied",
    ]
    _assert_same(together, alone)


def test_events_missing_fields_in_run(db):
    minimal = {"chat_jid": CUSTOMER_JID}
    scenario = [
        _inbound("IN1"),
        ("message.received", {}),
        ("message.received", {"gateway_message_id": "M1"}),
        ("message.received", {"gateway_message_id": "M2", **minimal}),
        ("message.received", {"gateway_message_id": "M3", **minimal}),
        ("message.received", {"gateway_message_id": "M4", "kind": None, **minimal}),
        ("message.received", {"gateway_message_id": "M5", "kind": "poll", **minimal}),
        ("message.status", {}),
        ("message.status", {"status": "read"}),
        ("message.status", {"status": "read", "message_id": 1}),
        ("message.status", {"gateway_message_id": "OUT2"}),
        ("message.status", {"status": "failed", "gateway_message_id": "OUT1"}),
        _inbound("IN2"),
    ]

    together, alone, _responses = _both_ways(scenario)

    _assert_same(together, alone)


# Events that break a run or carry odd values, for the generated batches.


def _update(rng: random.Random) -> tuple[str, dict]:
    return "message.updated", {
        "gateway_message_id": rng.choice([*INBOUND_IDS, *OUTBOUND_IDS, "OUT9"]),
        "change": rng.choice(["edited", "revoked", "edit_undecryptable", "pinned"]),
        "text": rng.choice(["Editado", None]),
    }


def _reaction(rng: random.Random) -> tuple[str, dict]:
    return "message.reaction", {
        "gateway_message_id": rng.choice([*INBOUND_IDS, *OUTBOUND_IDS, "OUT9"]),
        "emoji": rng.choice(["👍", "", "❤️"]),
        "sender_jid": rng.choice([CUSTOMER_JID, None]),
    }


def _lid_mapped(rng: random.Random) -> tuple[str, dict]:
    phone = rng.choice([peer_phone for peer_phone, _lid in PEERS if peer_phone])
    return "contact.lid_mapped", {
        "phone": phone,
        "lid": rng.choice([LID_2, LID_4, "100000000000006@lid", "bad"]),
    }


def _odd_receipt(rng: random.Random) -> tuple[str, dict]:
    return _status(
        rng.choice(["read", "delivered", "seen", "played", ""]),
        message_id=rng.choice(
            [
                "not-a-uuid",
                ("upper", rng.randrange(4)),
                ("hex", rng.randrange(4)),
                None,
            ]
        ),
        gateway_message_id=rng.choice([None, "OUT9", LONG_ID, EXACT_ID, "IN2"]),
        timestamp=rng.choice([*TIMES, None, "junk"]),
    )


def _odd_received(rng: random.Random) -> tuple[str, dict]:
    phone, lid = rng.choice(PEERS)
    from_me = rng.choice([True, False])
    # A phone message without a time gets the time it is stored as `sent_at`.
    # That differs between the two subscribers, and `_state` hides only an
    # estimated `timestamp`.
    times = [TIMES[0]] if from_me else [TIMES[0], None, "junk"]
    data = _from_peer(
        phone,
        lid,
        gateway_message_id=rng.choice([EXACT_ID, LONG_ID, "OUT9", "IN1"]),
        from_me=from_me,
        kind=rng.choice(["text", "image", "poll", "unavailable"]),
        timestamp=rng.choice(times),
        quoted_id=rng.choice([None, "Q" * 200]),
    )
    for name in rng.sample(["push_name", "peer_jid", "sender_phone", "text"], k=2):
        data.pop(name)
    return "message.received", data


def _mixed_scenario(seed: int, length: int = 100) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    makers = [_received] * 5 + [_echo, _receipt, _receipt, _receipt, _receipt]
    makers += [_other, _update, _reaction, _lid_mapped, _odd_receipt, _odd_received]
    return [rng.choice(makers)(rng) for _ in range(length)]


@pytest.mark.parametrize("seed", range(4))
def test_full_batch_of_mixed_events(db, seed):
    together, alone, _responses = _both_ways(_mixed_scenario(seed))

    _assert_same(together, alone)


# Side effects outside the database, odd characters and odd numbers.


def test_fallback_counts_ignored_events_once(db):
    """A run that fails together and is applied again counts each event once.

    The bulk insert fails here as it does when a concurrent delivery stores
    the same message first.
    """
    scenario = [
        _inbound("G1", chat_jid=GROUP_JID, chat_type="group"),
        _inbound("IN1"),
        _inbound("IN2"),
        _status("seen", gateway_message_id="OUT1"),
    ]
    together, together_codes = _subscriber("together@example.com")
    alone, alone_codes = _subscriber("alone@example.com")

    with mock.patch.object(
        Message.objects, "bulk_create", side_effect=IntegrityError("conflict")
    ):
        callback_post(_events_build(together, together_codes, scenario))
    for single in _events_build(alone, alone_codes, scenario):
        callback_post([single])

    assert ignored_event_counts(user=together) == {"group": 1, "unknown_status": 1}
    assert ignored_event_counts(user=alone) == {"group": 1, "unknown_status": 1}


def test_lone_surrogate_becomes_replacement_character(alice):
    """Half of an emoji (a lone UTF-16 surrogate) is stored as U+FFFD.

    PostgreSQL's jsonb event log and text columns reject the surrogate.
    """
    batch = [
        event(alice, *_inbound("IN1", push_name="Ana \ud83d", text="Oi \udc4b")),
        event(alice, *_inbound("IN2", push_name=None)),
    ]

    callback_post(batch)

    first = Message.objects.get(owner=alice, gateway_message_id="IN1")
    assert first.body == "Oi \ufffd"
    assert first.customer.push_name == "Ana \ufffd"
    assert Message.objects.filter(owner=alice, gateway_message_id="IN2").exists()


def test_huge_integer_timestamp_counts_missing(alice):
    """An integer timestamp too large for a float counts as no timestamp."""
    callback_post([event(alice, *_inbound("IN1", timestamp=10**400))])

    message = Message.objects.get(owner=alice, gateway_message_id="IN1")
    assert message.timestamp_estimated is True
