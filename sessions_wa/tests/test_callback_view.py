import json
import logging
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from sessions_wa.events import MAX_DATA_DEPTH, EventBatchError, events_validate
from sessions_wa.models import GatewayEvent, WhatsAppSession
from sessions_wa.tests.helpers import (
    OWN_PHONE,
    callback_path,
    connected_event,
    gateway_event,
    message_event,
    post_callback,
    qr_event,
    signed_header,
)
from whatsapp_saas.exceptions import ApplicationError

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(owner, make_session):
    return make_session(owner, State.STARTING)


def assert_nothing_changed(session):
    session.refresh_from_db()
    assert session.state == State.STARTING
    assert GatewayEvent.objects.count() == 0


def test_signed_batch_is_applied(client, owner, pending):
    response = post_callback(client, [qr_event(owner.pk, 1)])

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    pending.refresh_from_db()
    assert pending.state == State.QR_PENDING


def test_callback_clears_unreachable_mark(client, owner, pending):
    WhatsAppSession.objects.filter(pk=pending.pk).update(
        gateway_unreachable_since=timezone.now()
    )

    post_callback(client, [qr_event(owner.pk, 1)])

    pending.refresh_from_db()
    assert pending.gateway_unreachable_since is None


def test_batch_signed_with_second_secret_is_accepted(client, owner, pending, settings):
    settings.WA_GATEWAY_SECRETS = ["new-secret", "old-secret"]

    response = post_callback(client, [qr_event(owner.pk, 1)], secret="old-secret")

    assert response.status_code == 200


def test_forged_signature_is_rejected(client, owner, pending):
    response = post_callback(client, [qr_event(owner.pk, 1)], secret="guessed-secret")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert_nothing_changed(pending)


def test_expired_signature_is_rejected(client, owner, pending):
    response = post_callback(
        client, [qr_event(owner.pk, 1)], timestamp=int(time.time()) - 301
    )

    assert response.status_code == 401
    assert "server clock" in response.json()["message"]
    assert_nothing_changed(pending)


def test_missing_signature_is_rejected(client, owner, pending):
    body = json.dumps({"events": [qr_event(owner.pk, 1)]}).encode()

    response = client.post(callback_path(), body, content_type="application/json")

    assert response.status_code == 401
    assert "missing" in response.json()["message"]
    assert_nothing_changed(pending)


def test_malformed_signature_header_is_rejected(client, owner, pending):
    response = post_callback(client, [qr_event(owner.pk, 1)], header="sha256=abc")

    assert response.status_code == 401
    assert "malformed" in response.json()["message"]
    assert_nothing_changed(pending)


def test_body_changed_after_signing_is_rejected(client, owner, pending):
    signed_body = json.dumps({"events": [qr_event(owner.pk, 1)]}).encode()
    header = signed_header(signed_body)
    other_body = json.dumps({"events": [connected_event(owner.pk, 1)]}).encode()

    response = post_callback(client, other_body, header=header)

    assert response.status_code == 401
    assert_nothing_changed(pending)


def test_rejected_signature_is_logged_without_secret(
    client, owner, pending, caplog, settings
):
    with caplog.at_level(logging.WARNING, logger="whatsapp_saas.security"):
        post_callback(client, [qr_event(owner.pk, 1)], secret="guessed-secret")

    records = [r for r in caplog.records if r.name == "whatsapp_saas.security"]
    assert len(records) == 1
    assert settings.WA_GATEWAY_SECRETS[0] not in records[0].getMessage()
    assert "guessed-secret" not in records[0].getMessage()


def test_replayed_batch_changes_nothing(client, owner, pending):
    batch = [qr_event(owner.pk, 1)]
    post_callback(client, batch)
    post_callback(client, [connected_event(owner.pk, 2)])

    response = post_callback(client, batch)

    assert response.json() == {"accepted": 0, "duplicates": 1}
    pending.refresh_from_db()
    assert pending.state == State.CONNECTED
    assert GatewayEvent.objects.count() == 2


def test_invalid_json_is_rejected(client, owner, pending):
    response = post_callback(client, b'{"events": [')

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert_nothing_changed(pending)


def test_body_without_events_list_is_rejected(client, owner, pending):
    response = post_callback(client, {"event": qr_event(owner.pk, 1)})

    assert response.status_code == 400
    assert "events" in response.json()["message"]
    assert_nothing_changed(pending)


def test_empty_batch_is_rejected(client, owner, pending):
    response = post_callback(client, [])

    assert response.status_code == 400
    assert "1 to 100" in response.json()["message"]


def test_batch_over_one_hundred_events_is_rejected(client, owner, pending):
    response = post_callback(client, [qr_event(owner.pk, seq) for seq in range(101)])

    assert response.status_code == 400
    assert_nothing_changed(pending)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "not-a-uuid"),
        ("seq", True),
        ("seq", -1),
        ("seq", "7"),
        ("user_id", 0),
        ("type", "Session QR"),
        ("type", "session.qr\n"),
        ("type", "message." + "x" * 56 + "\n"),
        ("occurred_at", "2024-06-21T20:00:00"),
        ("occurred_at", "yesterday"),
        ("data", []),
    ],
)
def test_malformed_event_names_index_and_field(client, owner, pending, field, value):
    bad = qr_event(owner.pk, 2)
    bad[field] = value

    response = post_callback(client, [qr_event(owner.pk, 1), bad])

    body = response.json()
    assert response.status_code == 400
    assert body["extra"] == {"index": 1, "field": field}
    assert f"events[1].{field}" in body["message"]
    assert_nothing_changed(pending)


def test_missing_field_is_reported_as_missing(client, owner, pending):
    bad = qr_event(owner.pk, 1)
    del bad["occurred_at"]

    response = post_callback(client, [bad])

    assert "events[0].occurred_at is missing" in response.json()["message"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            gateway_event(
                1, "session.qr", {"expires_at": "2024-06-21T20:00:20Z"}, seq=1
            ),
            "data.qr",
        ),
        (gateway_event(1, "session.qr", {"qr": "2@x"}, seq=1), "data.expires_at"),
        (
            gateway_event(1, "session.connected", {"phone": "+5511900000009"}, seq=1),
            "data.jid",
        ),
        (
            gateway_event(
                1,
                "session.connected",
                {"jid": "5511900000009@s.whatsapp.net", "phone": "5511"},
                seq=1,
            ),
            "data.phone",
        ),
        (
            gateway_event(1, "session.disconnected", {"reason": "network"}, seq=1),
            "data.will_reconnect",
        ),
        (gateway_event(1, "session.logged_out", {}, seq=1), "data.reason"),
        (gateway_event(1, "session.connected", {"jid": "9" * 129}, seq=1), "data.jid"),
        (gateway_event(1, "session.connected", {"jid": "x"}, seq=1), "data.jid"),
        (
            gateway_event(
                1, "session.connected", {"jid": "120363000000000001@g.us"}, seq=1
            ),
            "data.jid",
        ),
    ],
)
def test_malformed_session_data_names_the_field(client, owner, pending, event, field):
    event["user_id"] = owner.pk

    response = post_callback(client, [event])

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == field
    assert_nothing_changed(pending)


def test_oversized_content_length_is_rejected_before_signature(client, settings):
    settings.WA_CALLBACK_MAX_BYTES = 100
    body = b"x" * 101

    response = client.generic(
        "POST", callback_path(), body, content_type="application/json"
    )

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_oversized_signed_batch_changes_nothing(client, owner, pending, settings):
    settings.WA_CALLBACK_MAX_BYTES = 200

    response = post_callback(client, [qr_event(owner.pk, seq) for seq in range(1, 4)])

    assert response.status_code == 413
    assert_nothing_changed(pending)


def test_body_over_django_upload_limit_is_413(client, owner, pending, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = post_callback(client, [qr_event(owner.pk, seq) for seq in range(1, 4)])

    assert response.status_code == 413
    assert_nothing_changed(pending)


def test_get_is_not_allowed(client):
    response = client.get(callback_path())

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {
        "message": "The gateway callback takes POST, not GET.",
        "code": "method_not_allowed",
        "extra": {},
    }


def test_bad_signature_error_has_api_error_shape(client):
    response = client.post(callback_path(), data=b"{}", content_type="application/json")

    assert response.status_code == 401
    assert set(response.json()) == {"message", "code", "extra"}


def test_event_for_unknown_user_is_recorded_as_ignored(client, owner, pending):
    response = post_callback(client, [qr_event(999_999, 1)])

    record = GatewayEvent.objects.get()
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert record.outcome == GatewayEvent.Outcome.IGNORED
    assert record.user is None
    assert record.gateway_user_id == 999_999


def test_session_event_for_user_without_session_is_ignored(client, outsider):
    post_callback(client, [qr_event(outsider.pk, 1)])

    assert GatewayEvent.objects.get().outcome == GatewayEvent.Outcome.IGNORED
    assert not WhatsAppSession.objects.exists()


def test_unknown_event_type_is_recorded_as_ignored(client, owner, pending):
    response = post_callback(client, [gateway_event(owner.pk, "call.offer", {}, seq=1)])

    assert response.status_code == 200
    assert GatewayEvent.objects.get().outcome == GatewayEvent.Outcome.IGNORED


def test_event_for_one_user_leaves_another_users_session(
    client, owner, outsider, pending, make_session
):
    other = make_session(outsider, State.STARTING)

    post_callback(client, [qr_event(owner.pk, 1)])

    other.refresh_from_db()
    assert other.state == State.STARTING


def test_message_event_goes_to_messaging_with_the_user(client, owner, pending):
    event = message_event(owner.pk, 1)
    with mock.patch(
        "messaging.services.gateway_event_apply", return_value="applied"
    ) as apply:
        post_callback(client, [event])

    apply.assert_called_once_with(user=owner, event=event)


def test_message_text_is_not_stored_in_event_log(client, owner, pending):
    with mock.patch("messaging.services.gateway_event_apply", return_value="applied"):
        post_callback(client, [message_event(owner.pk, 1, text="secret order details")])

    stored = json.dumps(GatewayEvent.objects.get().data)
    assert "secret order details" not in stored
    assert "gateway_message_id" in stored


def test_qr_string_is_not_stored_in_event_log(client, owner, pending):
    event = qr_event(owner.pk, 1)

    post_callback(client, [event])

    assert "qr" not in GatewayEvent.objects.get().data


def test_messaging_rejection_is_recorded_and_batch_continues(client, owner, pending):
    error = ApplicationError("The chat JID is a group.", code="invalid_chat")
    with mock.patch("messaging.services.gateway_event_apply", side_effect=error):
        response = post_callback(
            client, [message_event(owner.pk, 1), qr_event(owner.pk, 2)]
        )

    assert response.status_code == 200
    outcomes = dict(GatewayEvent.objects.values_list("type", "outcome"))
    assert outcomes["message.received"] == GatewayEvent.Outcome.REJECTED
    assert outcomes["session.qr"] == GatewayEvent.Outcome.APPLIED


def test_failure_inside_batch_records_no_event_id(client, owner, pending):
    client.raise_request_exception = True
    batch = [qr_event(owner.pk, 1), message_event(owner.pk, 2)]

    with mock.patch(
        "messaging.services.gateway_event_apply", side_effect=RuntimeError("db down")
    ):
        with pytest.raises(RuntimeError):
            post_callback(client, batch)

    assert_nothing_changed(pending)


def test_event_retried_after_failure_is_applied(client, owner, pending):
    batch = [message_event(owner.pk, 1)]
    with mock.patch(
        "messaging.services.gateway_event_apply", side_effect=RuntimeError("db down")
    ):
        with pytest.raises(RuntimeError):
            post_callback(client, batch)

    with mock.patch("messaging.services.gateway_event_apply", return_value="applied"):
        response = post_callback(client, batch)

    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_repeated_id_in_batch_counts_once(client, owner, pending):
    event_id = str(uuid.uuid4())
    batch = [
        qr_event(owner.pk, 1, event_id=event_id),
        qr_event(owner.pk, 1, event_id=event_id),
    ]

    response = post_callback(client, batch)

    assert response.json() == {"accepted": 1, "duplicates": 1}


def test_applied_event_marks_session_active(client, owner, make_session):
    session = make_session(owner, State.STARTING)
    before = timezone.now() - timedelta(minutes=2)
    WhatsAppSession.objects.filter(pk=session.pk).update(last_activity_at=before)

    post_callback(client, [qr_event(owner.pk, 1)])

    session.refresh_from_db()
    assert session.last_activity_at > before


def test_recent_activity_not_rewritten(client, owner, make_session):
    session = make_session(owner, State.STARTING)
    recent = timezone.now() - timedelta(seconds=30)
    WhatsAppSession.objects.filter(pk=session.pk).update(last_activity_at=recent)

    post_callback(client, [qr_event(owner.pk, 1)])

    session.refresh_from_db()
    assert session.last_activity_at == recent


def test_nul_characters_are_stored_without_failing(client, owner, pending):
    event = connected_event(owner.pk, 1)
    event["data"]["push_name"] = "Shop\x00 Owner"

    response = post_callback(client, [event])

    pending.refresh_from_db()
    assert response.status_code == 200
    assert pending.push_name == "Shop Owner"
    assert GatewayEvent.objects.get().data["push_name"] == "Shop Owner"


def test_long_push_name_is_cut_to_column_size(client, owner, pending):
    event = connected_event(owner.pk, 1)
    event["data"]["push_name"] = "n" * 300

    post_callback(client, [event])

    pending.refresh_from_db()
    assert pending.push_name == "n" * 255


def test_deeply_nested_data_is_rejected(client, owner, pending):
    nested = {}
    for _ in range(40):
        nested = {"inner": nested}
    event = gateway_event(owner.pk, "message.received", nested, seq=1)

    response = post_callback(client, [event])

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "data"


def _nested(levels: int, *, inner=None) -> dict:
    """Return a data object whose objects and lists nest `levels` (2 or more)
    deep: the data object, lists and objects by turns, then `inner`."""
    value = inner if inner is not None else {}
    for level in range(levels - 2):
        value = {"inner": value} if level % 2 else [value]
    return {"outer": value}


def test_data_at_depth_limit_accepted():
    data = _nested(MAX_DATA_DEPTH, inner={"text": "ok\x00"})
    event = gateway_event(1, "test.nested", data, seq=1)

    [validated] = events_validate({"events": [event]})

    assert validated.data == _nested(MAX_DATA_DEPTH, inner={"text": "ok"})


def test_data_past_depth_limit_rejected():
    data = _nested(MAX_DATA_DEPTH + 1)
    event = gateway_event(1, "test.nested", data, seq=1)

    with pytest.raises(EventBatchError) as raised:
        events_validate({"events": [event]})

    assert raised.value.extra["field"] == "data"


def test_json_nested_past_parser_limit_is_400(client, owner, pending):
    body = b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    response = post_callback(client, body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_event_type_longer_than_column_is_rejected(client, owner, pending):
    event = gateway_event(owner.pk, "message." + "x" * 60, {}, seq=1)

    response = post_callback(client, [event])

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "type"


def test_nul_removed_from_message_text(client, owner, pending):
    text = "Oi\x00 \U0001f44b\u200f\u05e9\u05dc\u05d5\u05dd \U0001f468\u200d\U0001f469"
    with mock.patch(
        "messaging.services.gateway_event_apply", return_value="applied"
    ) as apply:
        response = post_callback(client, [message_event(owner.pk, 1, text=text)])

    assert response.status_code == 200
    sent = apply.call_args.kwargs["event"]["data"]
    assert sent["text"] == text.replace("\x00", "")
    assert sent["metadata"]["caption"] == text.replace("\x00", "")


def test_nul_removed_from_keys_and_lists(client, owner, pending):
    event = message_event(owner.pk, 1)
    event["data"]["metadata"] = {"ke\x00y": ["a\x00b", {"c": "\x00"}], "n": 5}

    with mock.patch(
        "messaging.services.gateway_event_apply", return_value="applied"
    ) as apply:
        post_callback(client, [event])

    metadata = apply.call_args.kwargs["event"]["data"]["metadata"]
    assert metadata == {"key": ["ab", {"c": ""}], "n": 5}


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        TypeError("unhashable type"),
        OverflowError("date value out of range"),
    ],
)
def test_raising_event_recorded_as_failed(client, owner, pending, error, caplog):
    batch = [message_event(owner.pk, 1), message_event(owner.pk, 2)]
    failing_id = batch[0]["event_id"]

    def apply(*, user, event):
        if event["event_id"] == failing_id:
            raise error
        return "applied"

    with mock.patch("messaging.services.gateway_event_apply", side_effect=apply):
        response = post_callback(client, batch + [qr_event(owner.pk, 3)])

    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0}
    failed = GatewayEvent.objects.get(event_id=failing_id)
    assert failed.outcome == GatewayEvent.Outcome.FAILED
    assert type(error).__name__ in failed.detail
    others = GatewayEvent.objects.exclude(event_id=failing_id)
    assert set(others.values_list("outcome", flat=True)) == {"applied"}
    pending.refresh_from_db()
    assert pending.state == State.QR_PENDING
    assert failing_id in caplog.text


def test_failed_event_leaves_no_partial_rows(client, owner, pending):
    batch = [message_event(owner.pk, 1)]

    def apply(*, user, event):
        WhatsAppSession.objects.filter(user=user).update(push_name="partial")
        raise ValueError("broken after a write")

    with mock.patch("messaging.services.gateway_event_apply", side_effect=apply):
        response = post_callback(client, batch)

    assert response.status_code == 200
    pending.refresh_from_db()
    assert pending.push_name != "partial"


def test_failed_event_log_names_no_message_text(client, owner, pending, caplog):
    event = message_event(owner.pk, 1, text="secret order details")

    with mock.patch(
        "messaging.services.gateway_event_apply", side_effect=ValueError("x")
    ):
        post_callback(client, [event])

    assert "secret order details" not in caplog.text
    assert str(owner.pk) in caplog.text


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
def test_occurred_at_outside_datetime_range_is_400(client, owner, pending, value):
    event = qr_event(owner.pk, 1)
    event["occurred_at"] = value

    response = post_callback(client, [event])

    assert response.status_code == 400
    assert response.json()["extra"] == {"index": 0, "field": "occurred_at"}


def test_qr_expiry_outside_datetime_range_is_400(client, owner, pending):
    event = qr_event(owner.pk, 1)
    event["data"]["expires_at"] = "0001-01-01T00:00:00+14:00"

    response = post_callback(client, [event])

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "data.expires_at"


def test_integer_too_long_to_parse_is_400(client, owner, pending):
    body = b'{"events": [{"seq": ' + b"9" * 5000 + b"}]}"

    response = post_callback(client, body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_number_is_400(client, owner, pending, number):
    event = json.dumps(qr_event(owner.pk, 1)).encode()
    body = b'{"events": [' + event[:-1] + b', "extra": ' + number + b"}]}"

    response = post_callback(client, body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert_nothing_changed(pending)


MESSAGING_EVENTS = {
    "message.received": {
        "gateway_message_id": "3EB01",
        "chat_jid": "5511900000001@s.whatsapp.net",
        "chat_type": "direct",
        "sender_jid": "5511900000001@s.whatsapp.net",
        "sender_phone": "+5511900000001",
        "sender_lid": None,
        "peer_jid": "5511900000001@s.whatsapp.net",
        "peer_phone": "+5511900000001",
        "peer_lid": None,
        "push_name": "Ana",
        "from_me": False,
        "kind": "text",
        "text": "Oi",
        "quoted_id": None,
        "metadata": {},
        "media": None,
        "offline": False,
    },
    "message.updated": {
        "gateway_message_id": "3EB01",
        "chat_jid": "5511900000001@s.whatsapp.net",
        "change": "edited",
        "text": "Oi!",
    },
    "message.reaction": {
        "gateway_message_id": "3EB01",
        "chat_jid": "5511900000001@s.whatsapp.net",
        "sender_jid": "5511900000001@s.whatsapp.net",
        "emoji": "\U0001f44d",
    },
    "message.status": {
        "gateway_message_id": "3EB01",
        "message_id": None,
        "chat_jid": "5511900000001@s.whatsapp.net",
        "status": "read",
        "error": None,
    },
    "contact.lid_mapped": {
        "lid": "100000000000001@lid",
        "phone": "+5511900000001",
        "jid": "5511900000001@s.whatsapp.net",
    },
}
WRONG_VALUES = [{}, [], 7, 1.5, True, "text"]
MESSAGING_FIELD_CASES = [
    (event_type, field, wrong)
    for event_type, data in MESSAGING_EVENTS.items()
    for field in data
    for wrong in WRONG_VALUES
    if type(wrong) is not type(data[field])
    and not (field in ("from_me", "offline") and wrong is True)
    and not (isinstance(data[field], str | type(None)) and isinstance(wrong, str))
    and not (field in ("metadata", "media") and wrong == {})
]


@pytest.mark.parametrize(("event_type", "field", "wrong"), MESSAGING_FIELD_CASES)
def test_messaging_field_wrong_type_is_400(
    client, owner, pending, event_type, field, wrong
):
    data = dict(MESSAGING_EVENTS[event_type], **{field: wrong})
    batch = [qr_event(owner.pk, 1), gateway_event(owner.pk, event_type, data, seq=2)]

    response = post_callback(client, batch)

    assert response.status_code == 400
    assert response.json()["extra"] == {"index": 1, "field": f"data.{field}"}
    assert f"events[1].data.{field}" in response.json()["message"]
    assert_nothing_changed(pending)


def test_receipt_with_object_status_is_400(client, owner, pending):
    data = dict(MESSAGING_EVENTS["message.status"], status={})

    response = post_callback(
        client, [gateway_event(owner.pk, "message.status", data, seq=1)]
    )

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "data.status"


@pytest.mark.parametrize("event_type", sorted(MESSAGING_EVENTS))
def test_well_typed_messaging_event_is_applied(client, owner, pending, event_type):
    data = MESSAGING_EVENTS[event_type]

    response = post_callback(client, [gateway_event(owner.pk, event_type, data, seq=1)])

    assert response.status_code == 200
    assert GatewayEvent.objects.get().outcome != GatewayEvent.Outcome.FAILED


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("session.qr", "qr"),
        ("session.qr", "expires_at"),
        ("session.connected", "jid"),
        ("session.connected", "phone"),
        ("session.connected", "push_name"),
        ("session.connected", "lid"),
        ("session.disconnected", "reason"),
        ("session.disconnected", "will_reconnect"),
        ("session.logged_out", "reason"),
    ],
)
@pytest.mark.parametrize("wrong", [{}, [], 7, 1.5])
def test_session_field_wrong_type_is_400(
    client, owner, pending, event_type, field, wrong
):
    valid = {
        "session.qr": qr_event(owner.pk, 1)["data"],
        "session.connected": connected_event(owner.pk, 1)["data"],
        "session.disconnected": {"reason": "network", "will_reconnect": True},
        "session.logged_out": {"reason": "requested"},
    }[event_type]
    data = dict(valid, **{field: wrong})

    response = post_callback(client, [gateway_event(owner.pk, event_type, data, seq=1)])

    assert response.status_code == 400
    assert response.json()["extra"] == {"index": 0, "field": f"data.{field}"}


@pytest.mark.parametrize(
    "jid", [f"{OWN_PHONE[1:]}:12@s.whatsapp.net", "100000000000099@lid"]
)
def test_connected_accepts_device_jid_and_lid(client, owner, pending, jid):
    response = post_callback(client, [connected_event(owner.pk, 1, jid=jid)])

    assert response.status_code == 200
    assert WhatsAppSession.objects.get(user=owner).state == State.CONNECTED


@pytest.mark.parametrize(
    "jid",
    [
        f"{OWN_PHONE[1:]}@s.whatsapp.net ",
        f"{OWN_PHONE[1:]}@S.WHATSAPP.NET",
        f"{OWN_PHONE[1:]}@c.us",
        f"{OWN_PHONE}@s.whatsapp.net",
    ],
)
def test_connected_stores_jid_in_one_form(client, owner, pending, jid):
    post_callback(client, [connected_event(owner.pk, 1, jid=jid)])

    session = WhatsAppSession.objects.get(user=owner)
    assert session.jid == f"{OWN_PHONE[1:]}@s.whatsapp.net"
