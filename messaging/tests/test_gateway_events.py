"""Gateway message and contact events: who the customer is, what is stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.utils import timezone

from messaging.models import Customer, Message, PendingMessageUpdate
from messaging.selectors import ignored_event_counts
from whatsapp_saas.exceptions import ApplicationError

from .helpers import (
    CUSTOMER_JID,
    CUSTOMER_PHONE,
    apply,
    customer_make,
    outbound_make,
    receive,
)

LID = "100000000000001@lid"
LID_2 = "100000000000002@lid"
REFERENCE = datetime(2024, 6, 21, 20, 0, tzinfo=UTC)


def lid_message(**overrides):
    """A message.received whose chat is addressed by LID, phone unknown."""
    data = {
        "chat_jid": LID,
        "sender_jid": LID,
        "sender_phone": None,
        "sender_lid": LID,
        "peer_jid": LID,
        "peer_phone": None,
        "peer_lid": LID,
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def clear_counters():
    cache.clear()


# JID formats


def test_lid_chat_with_known_phone_stores_both(alice):
    receive(
        alice, **lid_message(peer_phone=CUSTOMER_PHONE, sender_phone=CUSTOMER_PHONE)
    )

    customer = Customer.objects.get(owner=alice)
    assert customer.phone == CUSTOMER_PHONE
    assert customer.lid == LID


def test_lid_only_sender_has_no_phone(alice):
    receive(alice, **lid_message())

    customer = Customer.objects.get(owner=alice)
    assert customer.phone is None
    assert customer.phone_unresolved is True
    assert customer.lid == LID


def test_lid_only_sender_gets_lid_as_whatsapp_jid(alice):
    receive(alice, **lid_message())

    assert Customer.objects.get(owner=alice).wa_jid == LID


def test_lid_digits_sent_as_phone_are_dropped(alice):
    receive(alice, **lid_message(peer_phone="+100000000000001"))

    customer = Customer.objects.get(owner=alice)
    assert customer.phone is None
    assert customer.phone_unresolved is True


def test_lid_customer_gains_phone_on_later_message(alice):
    receive(alice, **lid_message(gateway_message_id="A1"))

    receive(
        alice,
        **lid_message(gateway_message_id="A2", peer_phone=CUSTOMER_PHONE),
    )

    customer = Customer.objects.get(owner=alice)
    assert Customer.objects.filter(owner=alice).count() == 1
    assert customer.phone == CUSTOMER_PHONE
    assert customer.phone_unresolved is False
    assert customer.messages.count() == 2


def test_lid_mapping_resolves_lid_only_customer(alice):
    receive(alice, **lid_message())

    outcome = apply(
        alice,
        "contact.lid_mapped",
        {"lid": LID, "phone": CUSTOMER_PHONE, "jid": CUSTOMER_JID},
    )

    customer = Customer.objects.get(owner=alice)
    assert outcome == "applied"
    assert customer.phone == CUSTOMER_PHONE
    assert customer.match_key == "551100000001"


def test_lid_mapping_merges_into_known_phone_customer(alice):
    known = customer_make(alice, name="Customer A")
    outbound_make(alice, known, status="sent", gateway_message_id="OUT1")
    receive(alice, **lid_message(gateway_message_id="AC0001", text="Ok"))

    apply(alice, "contact.lid_mapped", {"lid": LID, "phone": CUSTOMER_PHONE})

    assert list(Customer.objects.filter(owner=alice)) == [known]
    known.refresh_from_db()
    assert known.lid == LID
    assert known.messages.count() == 2


def test_lid_mapping_accepts_bare_lid_digits(alice):
    receive(alice, **lid_message())

    apply(
        alice, "contact.lid_mapped", {"lid": "100000000000001", "phone": CUSTOMER_PHONE}
    )

    assert Customer.objects.get(owner=alice).phone == CUSTOMER_PHONE


def test_lid_mapping_without_customer_creates_nothing(alice):
    outcome = apply(alice, "contact.lid_mapped", {"lid": LID, "phone": CUSTOMER_PHONE})

    assert outcome == "ignored"
    assert not Customer.objects.filter(owner=alice).exists()


def test_lid_mapping_rejects_lid_digits_phone(alice):
    with pytest.raises(ApplicationError):
        apply(alice, "contact.lid_mapped", {"lid": LID, "phone": "+100000000000001"})


def test_lid_reply_joins_c_us_thread(alice):
    # Sent to 5511900000001@c.us; the reply comes from a LID with the phone.
    customer = customer_make(alice, wa_jid="5511900000001@s.whatsapp.net")

    receive(
        alice,
        **lid_message(
            gateway_message_id="AC0001", peer_phone=CUSTOMER_PHONE, text="Ok"
        ),
    )

    assert list(Customer.objects.filter(owner=alice)) == [customer]
    assert customer.messages.get().body == "Ok"


def test_c_us_and_pn_jid_one_customer(alice):
    receive(
        alice,
        gateway_message_id="A1",
        chat_jid="5511900000001@c.us",
        peer_jid="5511900000001@c.us",
        peer_phone=None,
        sender_phone=None,
    )
    receive(alice, gateway_message_id="A2")

    assert Customer.objects.filter(owner=alice).count() == 1


@pytest.mark.parametrize(
    "suffixed",
    [
        "5511900000001:3@s.whatsapp.net",
        "5511900000001:0@s.whatsapp.net",
        "5511900000001:3@c.us",
        "5511900000001:75@s.whatsapp.net",
    ],
)
def test_device_suffix_never_joins_the_number(alice, suffixed):
    receive(
        alice,
        chat_jid=suffixed,
        peer_jid=suffixed,
        sender_jid=suffixed,
        peer_phone=None,
        sender_phone=None,
    )

    customer = Customer.objects.get(owner=alice)
    assert customer.phone == CUSTOMER_PHONE
    assert customer.wa_jid == CUSTOMER_JID


def test_device_suffix_on_lid_is_stripped(alice):
    receive(
        alice,
        **lid_message(
            chat_jid="100000000000001:38@lid",
            peer_jid="100000000000001:38@lid",
            peer_lid=None,
        ),
    )

    assert Customer.objects.get(owner=alice).lid == LID


def test_status_with_device_suffixed_chat_updates_message(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sent", gateway_message_id="3EB0X1")

    apply(
        alice,
        "message.status",
        {
            "gateway_message_id": "3EB0X1",
            "message_id": None,
            "chat_jid": "5511900000001:3@s.whatsapp.net",
            "status": "delivered",
            "error": None,
            "timestamp": None,
        },
    )

    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize(
    ("chat_jid", "reason"),
    [
        ("status@broadcast", "broadcast"),
        ("120363000000000001@newsletter", "newsletter"),
        ("5511900000001@call", "other"),
        ("5511900000001@hosted.example", "other"),
    ],
)
def test_non_person_chats_are_ignored_and_counted(alice, chat_jid, reason):
    outcome = receive(alice, chat_jid=chat_jid, peer_jid=chat_jid)

    assert outcome == "ignored"
    assert not Customer.objects.filter(owner=alice).exists()
    assert not Message.objects.filter(owner=alice).exists()
    assert ignored_event_counts(user=alice) == {reason: 1}


def test_status_post_does_not_upsert_participant(alice):
    receive(
        alice,
        chat_jid="status@broadcast",
        sender_jid=CUSTOMER_JID,
        peer_jid=CUSTOMER_JID,
        kind="image",
        text="Promo hoje!",
    )

    assert not Customer.objects.filter(owner=alice).exists()


@pytest.mark.parametrize(
    ("chat_jid", "sender"),
    [
        ("120363000000000002@g.us", "100000000000003@lid"),
        ("5511900000004-1500000000@g.us", "5511900000004-1500000000@g.us"),
    ],
)
def test_group_messages_create_no_customer(alice, chat_jid, sender):
    outcome = receive(
        alice,
        chat_jid=chat_jid,
        chat_type="group",
        sender_jid=sender,
        sender_phone="+5511900000003",
        peer_jid=None,
        peer_phone=None,
    )

    assert outcome == "ignored"
    assert not Customer.objects.filter(owner=alice).exists()
    assert ignored_event_counts(user=alice) == {"group": 1}


def test_group_jid_marked_direct_is_still_ignored(alice):
    outcome = receive(alice, chat_jid="120363000000000002@g.us", chat_type="direct")

    assert outcome == "ignored"


@pytest.mark.parametrize(
    "overrides",
    [
        {"gateway_message_id": ""},
        {"gateway_message_id": None},
        {"gateway_message_id": "x" * 200},
        {"chat_jid": "@s.whatsapp.net"},
        {"chat_jid": ""},
        {"chat_jid": None},
    ],
)
def test_malformed_message_is_rejected_without_rows(alice, overrides):
    with pytest.raises(ApplicationError):
        receive(alice, **overrides)

    assert not Customer.objects.filter(owner=alice).exists()


def test_event_without_data_object_is_rejected(alice):
    with pytest.raises(ApplicationError):
        apply(alice, "message.received", ["not", "an", "object"])


def test_unknown_message_event_type_is_ignored(alice):
    assert apply(alice, "message.poll_vote", {"x": 1}) == "ignored"


# Country quirks


def test_brazil_jid_without_ninth_digit_finds_typed_customer(alice):
    customer = customer_make(alice, phone="+5511900000001")

    receive(
        alice,
        chat_jid="551100000001@s.whatsapp.net",
        peer_jid="551100000001@s.whatsapp.net",
        peer_phone="+551100000001",
    )

    assert list(Customer.objects.filter(owner=alice)) == [customer]
    customer.refresh_from_db()
    assert customer.wa_jid == "551100000001@s.whatsapp.net"
    assert customer.phone == "+5511900000001"


def test_brazil_ninth_digit_jid_finds_customer(alice):
    customer = customer_make(alice, phone="+551187654321")

    receive(
        alice,
        chat_jid="5511987654321@s.whatsapp.net",
        peer_jid="5511987654321@s.whatsapp.net",
        peer_phone="+5511987654321",
    )

    assert list(Customer.objects.filter(owner=alice)) == [customer]


def test_argentina_with_and_without_nine_is_one_customer(charlie):
    receive(
        charlie,
        gateway_message_id="A1",
        chat_jid="5491100000001@s.whatsapp.net",
        peer_jid="5491100000001@s.whatsapp.net",
        peer_phone="+5491100000001",
    )
    receive(
        charlie,
        gateway_message_id="A2",
        chat_jid="541100000001@s.whatsapp.net",
        peer_jid="541100000001@s.whatsapp.net",
        peer_phone="+541100000001",
    )

    customer = Customer.objects.get(owner=charlie)
    assert customer.messages.count() == 2
    assert customer.wa_jid == "541100000001@s.whatsapp.net"


def test_argentina_national_format_customer_matches_inbound(charlie):
    from messaging.services import customer_create

    typed = customer_create(owner=charlie, phone="011 15 0000-0001")

    receive(
        charlie,
        chat_jid="5491100000001@s.whatsapp.net",
        peer_jid="5491100000001@s.whatsapp.net",
        peer_phone="+5491100000001",
    )

    assert list(Customer.objects.filter(owner=charlie)) == [typed]


def test_mexico_old_mobile_prefix_is_one_customer(alice):
    customer = customer_make(alice, phone="+525500000001")

    receive(
        alice,
        chat_jid="5215500000001@s.whatsapp.net",
        peer_jid="5215500000001@s.whatsapp.net",
        peer_phone="+5215500000001",
    )

    assert list(Customer.objects.filter(owner=alice)) == [customer]


def test_same_number_stays_apart_across_subscribers(alice, charlie):
    receive(alice)
    receive(charlie)

    assert Customer.objects.filter(phone=CUSTOMER_PHONE).count() == 2


# Message content shapes


@pytest.mark.parametrize(
    "text", ["hello", "see https://example.com", "hi", "Olá 👋🏽 👨‍👩‍👧‍👦 مرحبا\u200f!"]
)
def test_text_body_round_trips_exactly(alice, text):
    receive(alice, text=text)

    assert Message.objects.get(owner=alice).body == text


def test_quoted_reply_keeps_reply_text_and_quoted_id(alice):
    receive(
        alice,
        text="see https://example.com",
        quoted_id="Q1",
        metadata={"is_ephemeral": True},
    )

    message = Message.objects.get(owner=alice)
    assert message.body == "see https://example.com"
    assert message.quoted_id == "Q1"


def test_long_inbound_text_is_stored_whole(alice):
    receive(alice, text="a" * 5000)

    assert len(Message.objects.get(owner=alice).body) == 5000


@pytest.mark.parametrize(
    ("kind", "text", "metadata", "media"),
    [
        ("text", "disappearing hi", {"is_ephemeral": True}, None),
        (
            "image",
            "look once",
            {"is_view_once": True},
            {"mimetype": "image/jpeg", "filename": None, "size": 1, "sha256": "x"},
        ),
        (
            "document",
            "Segue a nota",
            {"filename": "invoice.pdf"},
            {
                "mimetype": "application/pdf",
                "filename": "invoice.pdf",
                "size": 9,
                "sha256": "y",
            },
        ),
        (
            "audio",
            None,
            {"is_ephemeral": True, "is_view_once": True},
            {"mimetype": "audio/ogg", "filename": None, "size": 3, "sha256": "z"},
        ),
    ],
)
def test_wrapped_content_keeps_kind_caption_and_flags(
    alice, kind, text, metadata, media
):
    receive(alice, kind=kind, text=text, metadata=metadata, media=media)

    message = Message.objects.get(owner=alice)
    assert message.kind == kind
    assert message.body == (text or "")
    assert {key: message.metadata[key] for key in metadata} == metadata
    assert message.metadata.get("media") == media


@pytest.mark.parametrize(
    ("text", "selected_id"),
    [
        ("Yes, confirm", "btn_yes"),
        ("Plan B", "row_b"),
        ("Track order", "tpl_1"),
        ("Option 2", "opt2"),
    ],
)
def test_interactive_reply_keeps_choice(alice, text, selected_id):
    receive(
        alice,
        kind="interactive_reply",
        text=text,
        metadata={"selected_id": selected_id},
    )

    message = Message.objects.get(owner=alice)
    assert message.kind == "interactive_reply"
    assert message.body == text
    assert message.metadata["selected_id"] == selected_id


def test_unknown_kind_is_stored_as_unknown_with_original(alice):
    receive(alice, kind="poll_creation", text="Which day?")

    message = Message.objects.get(owner=alice)
    assert message.kind == "unknown"
    assert message.metadata["gateway_kind"] == "poll_creation"


def test_empty_text_becomes_placeholder(alice):
    receive(alice, kind="text", text="")

    message = Message.objects.get(owner=alice)
    assert message.kind == "unavailable"
    assert message.unread is False


def test_stub_absent_from_node_is_one_placeholder(alice):
    receive(
        alice,
        gateway_message_id="VO01",
        kind="unavailable",
        text=None,
        metadata={"reason": "absent_from_node"},
    )

    message = Message.objects.get(owner=alice)
    assert message.kind == "unavailable"
    assert message.body == ""
    assert message.metadata["reason"] == "absent_from_node"


def test_revoke_marks_original_without_new_row(alice):
    receive(alice, gateway_message_id="MSG_A", text="secret")

    apply(
        alice,
        "message.updated",
        {"gateway_message_id": "MSG_A", "chat_jid": CUSTOMER_JID, "change": "revoked"},
        occurred_at="2024-06-21T20:01:00Z",
    )

    message = Message.objects.get(owner=alice)
    assert message.revoked_at == datetime(2024, 6, 21, 20, 1, tzinfo=UTC)
    assert message.body == "secret"


def test_revoke_before_message_leaves_tombstone(alice):
    outcome = apply(
        alice,
        "message.updated",
        {"gateway_message_id": "MSG_A", "chat_jid": CUSTOMER_JID, "change": "revoked"},
    )

    receive(alice, gateway_message_id="MSG_A")

    assert outcome == "held"
    assert Message.objects.get(owner=alice).revoked_at is not None
    assert not PendingMessageUpdate.objects.exists()


def test_edit_replaces_body_and_keeps_history(alice):
    receive(alice, gateway_message_id="MSG_A", text="first text")

    apply(
        alice,
        "message.updated",
        {
            "gateway_message_id": "MSG_A",
            "chat_jid": CUSTOMER_JID,
            "change": "edited",
            "text": "corrected text",
        },
    )

    message = Message.objects.get(owner=alice)
    assert message.body == "corrected text"
    assert message.edited is True
    assert message.edit_history[0]["body"] == "first text"
    assert message.direction == "inbound"


def test_edit_replayed_changes_nothing_more(alice):
    receive(alice, gateway_message_id="MSG_A", text="first text")
    edit = {
        "gateway_message_id": "MSG_A",
        "chat_jid": CUSTOMER_JID,
        "change": "edited",
        "text": "corrected text",
    }
    apply(alice, "message.updated", edit)

    outcome = apply(alice, "message.updated", edit)

    assert outcome == "duplicate"
    assert len(Message.objects.get(owner=alice).edit_history) == 1


def test_undecryptable_edit_marks_content_unavailable(alice):
    receive(alice, gateway_message_id="MSG_A", text="first text")

    apply(
        alice,
        "message.updated",
        {
            "gateway_message_id": "MSG_A",
            "chat_jid": CUSTOMER_JID,
            "change": "edit_undecryptable",
        },
    )

    message = Message.objects.get(owner=alice)
    assert message.edited_content_unavailable is True
    assert message.body == "first text"
    assert Message.objects.filter(owner=alice).count() == 1


def test_edit_before_message_is_applied_on_arrival(alice):
    apply(
        alice,
        "message.updated",
        {
            "gateway_message_id": "MSG_A",
            "chat_jid": CUSTOMER_JID,
            "change": "edited",
            "text": "corrected text",
        },
    )

    receive(alice, gateway_message_id="MSG_A", text="first text")

    assert Message.objects.get(owner=alice).body == "corrected text"


def test_reaction_updates_target_only(alice):
    receive(alice, gateway_message_id="MSG_A")

    apply(
        alice,
        "message.reaction",
        {
            "gateway_message_id": "MSG_A",
            "chat_jid": CUSTOMER_JID,
            "sender_jid": "5511900000001:2@s.whatsapp.net",
            "emoji": "👍",
        },
    )

    assert Message.objects.filter(owner=alice).count() == 1
    assert Message.objects.get(owner=alice).reactions == {CUSTOMER_JID: "👍"}


def test_reaction_with_empty_emoji_removes_it(alice):
    receive(alice, gateway_message_id="MSG_A")
    reaction = {
        "gateway_message_id": "MSG_A",
        "chat_jid": CUSTOMER_JID,
        "sender_jid": CUSTOMER_JID,
        "emoji": "👍",
    }
    apply(alice, "message.reaction", reaction)

    apply(alice, "message.reaction", {**reaction, "emoji": ""})

    assert Message.objects.get(owner=alice).reactions == {}


def test_reaction_before_message_is_applied_on_arrival(alice):
    apply(
        alice,
        "message.reaction",
        {
            "gateway_message_id": "MSG_A",
            "chat_jid": CUSTOMER_JID,
            "sender_jid": CUSTOMER_JID,
            "emoji": "❤️",
        },
    )

    receive(alice, gateway_message_id="MSG_A")

    assert Message.objects.get(owner=alice).reactions == {CUSTOMER_JID: "❤️"}


# Events


def test_offline_replay_is_stored_at_message_time(alice):
    receive(
        alice,
        gateway_message_id="OFF1",
        text="are you open?",
        timestamp="2024-06-21T19:43:20Z",
        offline=True,
    )

    message = Message.objects.get(owner=alice)
    assert message.timestamp == datetime(2024, 6, 21, 19, 43, 20, tzinfo=UTC)
    assert message.timestamp_estimated is False
    assert message.metadata["offline"] is True


def test_replayed_message_creates_nothing(alice):
    receive(alice, gateway_message_id="OFF1")

    outcome = receive(alice, gateway_message_id="OFF1")

    assert outcome == "duplicate"
    assert Message.objects.filter(owner=alice).count() == 1


@pytest.mark.parametrize(
    "value",
    [
        1719000000,
        "1719000000",
        1719000000000,
        {"low": 1719000000, "high": 0, "unsigned": True},
    ],
)
def test_numeric_timestamps_are_read(alice, value):
    receive(alice, timestamp=value)

    assert Message.objects.get(owner=alice).timestamp == REFERENCE


def test_missing_timestamp_uses_receive_time_and_marks_estimate(alice):
    before = timezone.now()

    receive(alice, timestamp=None)

    message = Message.objects.get(owner=alice)
    assert message.timestamp_estimated is True
    assert message.timestamp >= before


def test_phone_typed_message_is_outbound_in_peer_conversation(alice):
    receive(
        alice,
        gateway_message_id="3A0000000000000001",
        from_me=True,
        chat_jid="5511900000001@c.us",
        sender_jid="5511900000009@s.whatsapp.net",
        sender_phone="+5511900000009",
        peer_jid="5511900000001@c.us",
        peer_phone=CUSTOMER_PHONE,
        push_name="Alice",
        text="On my way",
    )

    message = Message.objects.get(owner=alice)
    assert message.direction == "outbound"
    assert message.source == "phone"
    assert message.customer.phone == CUSTOMER_PHONE
    assert message.status == "sent"


def test_phone_typed_message_never_makes_subscriber_a_customer(alice):
    receive(
        alice,
        from_me=True,
        sender_jid="5511900000009@s.whatsapp.net",
        sender_phone="+5511900000009",
        push_name="Alice",
    )

    assert list(Customer.objects.values_list("phone", flat=True)) == [CUSTOMER_PHONE]
    assert Customer.objects.get(owner=alice).push_name == ""


def test_message_to_own_number_is_ignored(alice):
    own = "5511900000009@s.whatsapp.net"

    outcome = receive(
        alice, from_me=True, chat_jid=own, peer_jid=own, peer_phone="+5511900000009"
    )

    assert outcome == "ignored"
    assert not Customer.objects.exists()


def test_message_from_own_number_without_9_is_ignored(alice):
    own = "551100000009@s.whatsapp.net"

    outcome = receive(alice, chat_jid=own, peer_jid=own, peer_phone="+551100000009")

    assert outcome == "ignored"


def test_echo_of_api_message_creates_no_second_row(alice):
    customer = customer_make(alice)
    outbound_make(alice, customer, status="sent", gateway_message_id="3EB0OUT1")

    outcome = receive(alice, gateway_message_id="3EB0OUT1", from_me=True, text="Hello")

    assert outcome == "duplicate"
    assert Message.objects.filter(owner=alice).count() == 1


def test_stub_then_real_content_twice_is_one_row(alice):
    receive(
        alice,
        gateway_message_id="DUP1",
        kind="undecryptable",
        text=None,
        metadata={"reason": "No session record"},
    )
    receive(alice, gateway_message_id="DUP1", text="hi")
    receive(alice, gateway_message_id="DUP1", text="hi")

    message = Message.objects.get(owner=alice)
    assert message.kind == "text"
    assert message.body == "hi"
    assert message.unread is True
    assert "reason" not in message.metadata


def test_bad_mac_stubs_one_silent_placeholder(alice):
    for _ in range(3):
        receive(
            alice,
            gateway_message_id="BM01",
            kind="undecryptable",
            text=None,
            metadata={"reason": "Bad MAC"},
        )

    message = Message.objects.get(owner=alice)
    assert message.kind == "undecryptable"
    assert message.unread is False


def test_real_content_after_bad_mac_upgrades_placeholder(alice):
    receive(alice, gateway_message_id="BM01", kind="undecryptable", text=None)

    outcome = receive(alice, gateway_message_id="BM01", text="real text")

    assert outcome == "applied"
    assert Message.objects.get(owner=alice).body == "real text"


def test_placeholder_never_replaces_real_content(alice):
    receive(alice, gateway_message_id="BM01", text="real text")

    receive(alice, gateway_message_id="BM01", kind="undecryptable", text=None)

    assert Message.objects.get(owner=alice).body == "real text"


def test_status_for_inbound_message_never_changes_it(alice):
    receive(alice, gateway_message_id="IN1")

    outcome = apply(
        alice,
        "message.status",
        {
            "gateway_message_id": "IN1",
            "message_id": None,
            "chat_jid": CUSTOMER_JID,
            "status": "failed",
            "error": "-1",
            "timestamp": None,
        },
    )

    message = Message.objects.get(owner=alice)
    assert outcome == "ignored"
    assert message.status == "received"
    assert message.failed_at is None


def test_unknown_status_value_is_ignored(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sent", gateway_message_id="X1")

    outcome = apply(
        alice, "message.status", {"gateway_message_id": "X1", "status": "-7"}
    )

    message.refresh_from_db()
    assert outcome == "ignored"
    assert message.status == "sent"


def test_receipt_before_message_is_applied_on_insert(alice):
    apply(
        alice,
        "message.status",
        {
            "gateway_message_id": "3EB0X3",
            "message_id": None,
            "chat_jid": CUSTOMER_JID,
            "status": "delivered",
            "error": None,
            "timestamp": 1719000200,
        },
    )

    receive(
        alice,
        gateway_message_id="3EB0X3",
        from_me=True,
        text="Thanks",
        timestamp=1719000100,
    )

    message = Message.objects.get(owner=alice)
    assert message.status == "delivered"
    assert message.timestamp == datetime(2024, 6, 21, 20, 1, 40, tzinfo=UTC)
    assert message.delivered_at == datetime(2024, 6, 21, 20, 3, 20, tzinfo=UTC)


def test_status_by_django_message_id_records_gateway_id(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sending")

    apply(
        alice,
        "message.status",
        {
            "gateway_message_id": "3EB0NEW",
            "status": "sent",
            "message_id": str(message.code),
        },
    )

    message.refresh_from_db()
    assert message.gateway_message_id == "3EB0NEW"
    assert message.status == "sent"


def test_status_by_another_owners_message_id_changes_nothing(alice, charlie):
    customer = customer_make(charlie)
    message = outbound_make(charlie, customer, status="sent", gateway_message_id="C1")

    outcome = apply(
        alice,
        "message.status",
        {"gateway_message_id": "C1", "status": "read", "message_id": str(message.code)},
    )

    message.refresh_from_db()
    assert outcome == "held"
    assert message.status == "sent"


def test_read_status_after_message_is_applied(alice):
    receive(alice, gateway_message_id="M1", from_me=True)

    outcome = apply(
        alice, "message.status", {"gateway_message_id": "M1", "status": "read"}
    )

    assert outcome == "applied"
    assert Message.objects.get(owner=alice).status == "read"


def test_played_receipt_counts_as_read(alice):
    receive(alice, gateway_message_id="M1", from_me=True)

    apply(alice, "message.status", {"gateway_message_id": "M1", "status": "played"})

    assert Message.objects.get(owner=alice).status == "read"


def test_failed_receipt_stores_readable_reason(alice):
    receive(alice, gateway_message_id="M1", from_me=True)

    apply(
        alice,
        "message.status",
        {"gateway_message_id": "M1", "status": "failed", "error": "479"},
    )

    message = Message.objects.get(owner=alice)
    assert message.status == "failed"
    assert "could not be delivered" in message.error
    assert "479" in message.error
