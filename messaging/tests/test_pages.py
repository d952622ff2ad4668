"""The dashboard, customer pages, CSV import and conversations."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from messaging.models import Customer, Message

from .helpers import customer_make, outbound_make, receive, session_connect


def _url(name, customer=None):
    if customer is None:
        return reverse(f"messaging:{name}")
    return reverse(f"messaging:{name}", kwargs={"code": customer.code})


def _inbound(user, customer, body="Oi", **fields):
    fields.setdefault("status", "received")
    fields.setdefault("unread", True)
    return Message.objects.create(
        owner=user,
        customer=customer,
        direction="inbound",
        source="contact",
        kind="text",
        body=body,
        timestamp=timezone.now(),
        **fields,
    )


@pytest.fixture
def customer(alice):
    return customer_make(alice, name="Customer A")


CUSTOMER_PAGES = [
    ("conversation", "get"),
    ("conversation_messages", "get"),
    ("customer_update", "get"),
    ("customer_update", "post"),
    ("customer_delete", "get"),
    ("customer_delete", "post"),
    ("conversation_send", "post"),
]


@pytest.mark.parametrize(("name", "method"), CUSTOMER_PAGES)
def test_customer_pages_are_not_found_for_another_subscriber(
    charlie_client, customer, name, method
):
    data = {"content": "hi", "name": "x", "phone": "+5511900000002"}

    response = getattr(charlie_client, method)(_url(name, customer), data)

    assert response.status_code == 404
    assert b"Customer A" not in response.content
    customer.refresh_from_db()
    assert customer.name == "Customer A"
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    ["dashboard", "customer_list", "customer_create", "customer_import"],
)
def test_pages_need_login(db, name):
    response = Client().get(_url(name))

    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_unknown_customer_code_is_not_found(alice_client):
    response = alice_client.get("/customers/00000000-0000-4000-8000-000000000000/")

    assert response.status_code == 404


def test_customer_pk_in_url_is_not_found(alice_client, customer):
    response = alice_client.get(f"/customers/{customer.pk}/")

    assert response.status_code == 404


def test_dashboard_shows_state_and_recent_conversations(alice_client, alice, customer):
    _inbound(alice, customer, body="Preciso de ajuda")

    response = alice_client.get(_url("dashboard"))

    assert response.status_code == 200
    assert "Connected" in response.content.decode()
    assert "Preciso de ajuda" in response.content.decode()


def test_dashboard_warns_when_not_connected(alice_client, alice):
    session_connect(alice, state="logged_out")

    response = alice_client.get(_url("dashboard"))

    assert "is not connected" in response.content.decode()


def test_dashboard_hides_other_subscribers_conversations(
    charlie_client, alice, customer
):
    _inbound(alice, customer, body="Preciso de ajuda")

    response = charlie_client.get(_url("dashboard"))

    assert "Preciso de ajuda" not in response.content.decode()


def test_customer_list_shows_last_message_and_unread_count(
    alice_client, alice, customer
):
    _inbound(alice, customer, body="first")
    _inbound(alice, customer, body="second")

    response = alice_client.get(_url("customer_list"))

    customers = list(response.context["customers"])
    assert customers[0].last_message_body == "second"
    assert customers[0].unread_count == 2
    assert "second" in response.content.decode()


def test_customer_list_preview_keeps_emoji_whole(alice_client, alice, customer):
    _inbound(alice, customer, body="a" * 58 + "👨‍👩‍👧‍👦" * 3)

    response = alice_client.get(_url("customer_list"))

    assert "a" * 58 + "…" in response.content.decode()


@pytest.mark.parametrize("query", ["custo", "90000", "+55 11 90000-0001"])
def test_customer_list_search_by_name_or_number(alice_client, alice, customer, query):
    customer_make(alice, phone="+5521987654321", name="Other")

    response = alice_client.get(_url("customer_list"), {"q": query})

    assert [c.pk for c in response.context["customers"]] == [customer.pk]


def test_customer_list_hides_other_subscribers(charlie_client, customer):
    response = charlie_client.get(_url("customer_list"))

    assert list(response.context["customers"]) == []


def test_customer_create_redirects_to_conversation(alice_client, alice):
    response = alice_client.post(
        _url("customer_create"), {"name": "Ana", "phone": "(11) 90000-0001"}
    )

    customer = Customer.objects.get(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == _url("conversation", customer)
    assert customer.phone == "+5511900000001"


def test_customer_form_country_example(alice_client, alice):
    alice.default_country = "DE"
    alice.save(update_fields=["default_country"])

    response = alice_client.get(_url("customer_create"))

    assert "With the country code (+49 1512 3456789)" in response.content.decode()


def test_customer_create_shows_invalid_number(alice_client):
    response = alice_client.post(
        _url("customer_create"), {"name": "Ana", "phone": "+55 11 9OOOO-0001"}
    )

    assert response.status_code == 400
    assert "9OOOO" in response.content.decode()
    assert "&#x27;O&#x27;" in response.content.decode()


def test_customer_create_shows_duplicate(alice_client, customer):
    response = alice_client.post(_url("customer_create"), {"phone": "551100000001"})

    assert response.status_code == 400
    assert "already saved" in response.content.decode()


def test_customer_update_saves_changes(alice_client, customer):
    response = alice_client.post(
        _url("customer_update", customer), {"name": "Ana", "phone": "+5511900000001"}
    )

    customer.refresh_from_db()
    assert response.status_code == 302
    assert customer.name == "Ana"


def test_customer_delete_asks_first(alice_client, customer):
    response = alice_client.get(_url("customer_delete", customer))

    assert response.status_code == 200
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_delete_question_isolates_the_name(alice_client, alice):
    # U+202E reverses the text after it, up to the end of its isolate.
    customer = customer_make(alice, name="\u202eevil")

    response = alice_client.get(_url("customer_delete", customer))

    assert "Delete <bdi>\u202eevil</bdi>?" in response.content.decode()


def test_conversation_isolates_whatsapp_name(alice_client, alice):
    customer = customer_make(alice, name="Ana", push_name="\u202eevil")

    response = alice_client.get(_url("conversation", customer))

    assert "“<bdi>\u202eevil</bdi>”" in response.content.decode()


def test_customer_delete_removes_customer(alice_client, customer):
    response = alice_client.post(_url("customer_delete", customer))

    assert response.status_code == 302
    assert not Customer.objects.filter(pk=customer.pk).exists()


def test_import_page_shows_per_row_report(alice_client):
    upload = SimpleUploadedFile(
        "customers.csv",
        b"name,phone\nAna,+5511900000001\nBad,+55 11 9OOOO-0001\n",
        content_type="text/csv",
    )

    response = alice_client.post(_url("customer_import"), {"file": upload})

    text = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was imported" in text
    assert "Rejected:" in text
    assert Customer.objects.count() == 0


def test_import_page_imports_valid_file(alice_client, alice):
    upload = SimpleUploadedFile("c.csv", b"phone\n+5511900000001\n")

    response = alice_client.post(_url("customer_import"), {"file": upload})

    assert "1 customer imported" in response.content.decode()
    assert Customer.objects.filter(owner=alice).count() == 1


def test_import_page_shows_file_error(alice_client):
    upload = SimpleUploadedFile("c.csv", b"first,last\nA,B\n")

    response = alice_client.post(_url("customer_import"), {"file": upload})

    assert response.status_code == 400
    assert "phone" in response.content.decode()


@pytest.mark.parametrize("written", [str.upper, lambda code: code.replace("-", "")])
def test_conversation_takes_api_id_forms(alice_client, customer, written):
    response = alice_client.get(f"/customers/{written(str(customer.code))}/")

    assert response.status_code == 200
    assert customer.name in response.content.decode()


def test_conversation_malformed_id_is_404(alice_client):
    assert alice_client.get(f"/customers/{'-' * 36}/").status_code == 404


def test_conversation_shows_bubbles_in_both_directions(alice_client, alice, customer):
    _inbound(alice, customer, body="Oi")
    outbound_make(alice, customer, status="read", body="Olá!")

    response = alice_client.get(_url("conversation", customer))

    text = response.content.decode()
    assert "bubble-inbound" in text
    assert "bubble-outbound" in text
    assert "tick-read" in text


def test_conversation_marks_inbound_messages_read(alice_client, alice, customer):
    message = _inbound(alice, customer)

    alice_client.get(_url("conversation", customer))

    message.refresh_from_db()
    assert message.unread is False


def test_conversation_polls_for_new_messages(alice_client, customer):
    response = alice_client.get(_url("conversation", customer))

    assert f'hx-get="{_url("conversation_messages", customer)}"' in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("fields", "marker"),
    [
        ({"status": "queued"}, "Waiting to be sent"),
        ({"status": "sent"}, 'title="Sent"'),
        ({"status": "delivered"}, "Delivered"),
        (
            {"status": "failed", "error": "The number has no WhatsApp account."},
            "The number has no WhatsApp account.",
        ),
        ({"status": "sent", "edited": True}, "edited"),
        ({"status": "sent", "revoked_at": timezone.now()}, "deleted for everyone"),
        ({"status": "sent", "reactions": {"5511900000001@s.whatsapp.net": "🙏"}}, "🙏"),
        ({"status": "sent", "source": "phone"}, "sent from the phone"),
    ],
)
def test_conversation_fragment_shows_ticks_and_markers(
    alice_client, alice, customer, fields, marker
):
    outbound_make(alice, customer, **fields)

    response = alice_client.get(_url("conversation_messages", customer))

    assert marker in response.content.decode()


def test_conversation_fragment_shows_new_inbound_message(alice_client, alice, customer):
    receive(alice, gateway_message_id="NEW1", text="chegou agora")

    response = alice_client.get(_url("conversation_messages", customer))

    assert "chegou agora" in response.content.decode()


def test_conversation_explains_undecryptable_message(alice_client, alice, customer):
    receive(alice, gateway_message_id="BM01", kind="undecryptable", text=None)

    response = alice_client.get(_url("conversation_messages", customer))

    assert "could not be decrypted" in response.content.decode()


def test_conversation_pages_back_by_message_code(alice_client, alice, customer):
    for index in range(55):
        _inbound(alice, customer, body=f"message {index}")

    latest = alice_client.get(_url("conversation", customer))
    first_shown = latest.context["history"][0]
    earlier = alice_client.get(
        _url("conversation", customer), {"before": first_shown.code}
    )

    assert [m.body for m in earlier.context["history"]][-1] == "message 4"


def test_send_box_queues_message(alice_client, alice, customer, fake_gateway):
    response = alice_client.post(
        _url("conversation_send", customer), {"content": "Olá"}
    )

    message = Message.objects.get(owner=alice)
    assert response.status_code == 302
    assert message.body == "Olá"
    assert message.source == "dashboard"


def test_send_box_htmx_answer_triggers_refresh(alice_client, customer, fake_gateway):
    response = alice_client.post(
        _url("conversation_send", customer), {"content": "Olá"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert response["HX-Trigger"] == "messages-changed"


def test_send_box_shows_error_when_not_connected(alice_client, alice, customer):
    session_connect(alice, state="qr_expired")

    response = alice_client.post(
        _url("conversation_send", customer), {"content": "Olá"}
    )

    assert response.status_code == 409
    assert "is not connected" in response.content.decode()
    assert not Message.objects.exists()


def test_send_box_htmx_error_is_visible(alice_client, alice, customer):
    session_connect(alice, state="qr_pending")

    response = alice_client.post(
        _url("conversation_send", customer), {"content": "Olá"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "is not connected" in response.content.decode()


def test_send_box_shows_error_when_subscription_inactive(alice_client, alice, customer):
    Subscription.objects.filter(user=alice).update(status="past_due")

    response = alice_client.post(
        _url("conversation_send", customer), {"content": "Olá"}
    )

    assert response.status_code == 403
    assert "payment" in response.content.decode()


def test_send_box_warns_before_sending_when_not_connected(
    alice_client, alice, customer
):
    session_connect(alice, state="logged_out")

    response = alice_client.get(_url("conversation", customer))

    assert "is not connected" in response.content.decode()


def test_send_box_notes_reconnecting_session(alice_client, alice, customer):
    session_connect(alice, state="disconnected")

    response = alice_client.get(_url("conversation", customer))

    assert "WhatsApp is reconnecting" in response.content.decode()


def test_send_box_notes_paced_queue(alice_client, alice, customer, settings):
    settings.WA_SEND_BURST = 5
    settings.WA_SEND_RATE_PER_MINUTE = 20
    for _ in range(45):
        outbound_make(alice, customer)

    response = alice_client.get(_url("conversation", customer))

    page = response.content.decode()
    assert "45 messages are waiting to be sent." in page
    assert "5 messages at once and then 20 a minute" in page
    assert "within about 3 minutes" in page


def test_send_box_quiet_within_burst(alice_client, alice, customer, settings):
    settings.WA_SEND_BURST = 5
    for _ in range(5):
        outbound_make(alice, customer)

    response = alice_client.get(_url("conversation", customer))

    assert "waiting to be sent" not in response.content.decode()


def test_pacing_notice_counts_only_own_queue(alice_client, alice, customer, settings):
    settings.WA_SEND_BURST = 1
    other = subscriber_create("other@example.com")
    other_customer = customer_make(other, name="Other's customer")
    for _ in range(10):
        outbound_make(other, other_customer)
    for status in ("sent", "delivered", "failed"):
        outbound_make(alice, customer, status=status)

    response = alice_client.get(reverse("messaging:dashboard"))

    assert "waiting to be sent" not in response.content.decode()


def test_dashboard_short_queue_one_minute(alice_client, alice, settings):
    settings.WA_SEND_BURST = 0
    settings.WA_SEND_RATE_PER_MINUTE = 20
    outbound_make(alice, customer_make(alice, name="A"))

    response = alice_client.get(reverse("messaging:dashboard"))

    page = response.content.decode()
    assert "1 message is waiting to be sent." in page
    assert "within about 1 minute." in page


def test_pacing_notice_in_chinese(alice_client, alice, customer, settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 20
    for _ in range(2):
        outbound_make(alice, customer)

    response = alice_client.get(
        _url("conversation", customer), HTTP_ACCEPT_LANGUAGE="zh-hans"
    )

    page = response.content.decode()
    assert "有 2 条消息正在等待发送。" in page
    assert "每分钟 20 条" in page


def test_send_box_warns_gateway_unreachable(alice_client, alice, customer):
    session = session_connect(alice)
    session.gateway_unreachable_since = timezone.now()
    session.save(update_fields=["gateway_unreachable_since"])

    response = alice_client.get(_url("conversation", customer))

    assert "has not responded since" in response.content.decode()


def test_dashboard_warns_gateway_unreachable(alice_client, alice):
    session = session_connect(alice)
    session.gateway_unreachable_since = timezone.now()
    session.save(update_fields=["gateway_unreachable_since"])

    response = alice_client.get(_url("dashboard"))

    assert "has not responded since" in response.content.decode()


def test_send_box_rejects_empty_message(alice_client, customer):
    response = alice_client.post(_url("conversation_send", customer), {"content": ""})

    assert response.status_code == 400
    assert "empty" in response.content.decode()


def test_send_box_bad_key_asks_reload(alice_client, alice, customer):
    form = {"content": "short", "idempotency_key": "y9"}

    response = alice_client.post(_url("conversation_send", customer), form)

    assert response.status_code == 400
    assert "This form is out of date" in response.content.decode()
    assert not Message.objects.filter(owner=alice).exists()


def test_import_page_caps_the_rejected_rows_listed(alice_client):
    rows = "".join(f"Bad {n},+55 11 9OOOO-{n:04d}\n" for n in range(1000))
    upload = SimpleUploadedFile("c.csv", ("name,phone\n" + rows).encode())

    response = alice_client.post(_url("customer_import"), {"file": upload})

    text = response.content.decode()
    assert text.count("Rejected:") == 200
    assert "800 more rows are not listed." in text
