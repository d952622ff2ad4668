"""A repeated send with the same idempotency key sends one message.

The conversation form carries a new key per render, so a double submit of
one form stores one message; the API takes the key from the
`Idempotency-Key` header. Keys belong to one subscriber.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Customer, DeletedSendKey, Message
from messaging.services import customer_delete, messages_delete
from messaging.tasks import message_deleted_send_keys_purge

from .helpers import customer_make

SEND = "/api/messages/send"


@pytest.fixture
def customer(alice):
    return customer_make(alice, name="Customer A")


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _api_send(client, customer, key, content="Olá"):
    return client.post(
        SEND,
        {"customer_id": str(customer.code), "content": content},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


LONG_TEXT = "👍" * 5000


def _long_send_part_deleted(alice, customer, key: str, part: int):
    """Send LONG_TEXT (three parts) with `key`, then delete from part `part` on."""
    client = _client(alice)
    _api_send(client, customer, key, content=LONG_TEXT)
    parts = list(Message.objects.filter(owner=alice).order_by("pk"))
    messages_delete(message_ids=[parts[part].pk])
    return client


def _form_key(page: str) -> str:
    match = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page)
    assert match, "the send form has no idempotency key"
    return match.group(1)


def _conversation_url(customer, name="conversation"):
    return reverse(f"messaging:{name}", kwargs={"code": customer.code})


def test_form_double_submit_stores_once(alice_client, alice, customer, fake_gateway):
    page = alice_client.get(_conversation_url(customer)).content.decode()
    form = {"content": "Olá", "idempotency_key": _form_key(page)}

    alice_client.post(_conversation_url(customer, "conversation_send"), form)
    second = alice_client.post(_conversation_url(customer, "conversation_send"), form)

    assert second.status_code == 302
    assert Message.objects.filter(owner=alice).count() == 1


def test_form_resent_with_other_text_asks_to_reload(
    alice_client, alice, customer, fake_gateway
):
    page = alice_client.get(_conversation_url(customer)).content.decode()
    key = _form_key(page)
    send_url = _conversation_url(customer, "conversation_send")
    alice_client.post(send_url, {"content": "Olá", "idempotency_key": key})

    again = alice_client.post(send_url, {"content": "Tchau", "idempotency_key": key})

    assert again.status_code == 422
    assert "Reload the page" in again.content.decode()
    assert Message.objects.filter(owner=alice).count() == 1


def test_send_form_gets_a_new_key_each_render(alice_client, customer):
    first = alice_client.get(_conversation_url(customer)).content.decode()
    second = alice_client.get(_conversation_url(customer)).content.decode()

    assert _form_key(first) != _form_key(second)


def test_form_disables_button_while_sending(alice_client, customer):
    page = alice_client.get(_conversation_url(customer)).content.decode()

    assert 'hx-disabled-elt="find button[type=submit]"' in page


def test_htmx_answer_carries_a_fresh_key(alice_client, customer, fake_gateway):
    page = alice_client.get(_conversation_url(customer)).content.decode()
    key = _form_key(page)

    answer = alice_client.post(
        _conversation_url(customer, "conversation_send"),
        {"content": "Olá", "idempotency_key": key},
        HTTP_HX_REQUEST="true",
    )

    assert _form_key(answer.content.decode()) != key


def test_api_repeated_key_returns_first_messages(alice, customer):
    client = _client(alice)

    first = _api_send(client, customer, "order-42")
    second = _api_send(client, customer, "order-42")

    assert second.status_code == 202
    assert second.json()["messages"] == first.json()["messages"]
    assert Message.objects.filter(owner=alice).count() == 1


def test_api_repeated_long_text_returns_parts(alice, customer):
    client = _client(alice)

    first = _api_send(client, customer, "long-1", content="a" * 5000)
    second = _api_send(client, customer, "long-1", content="a" * 5000)

    assert len(second.json()["messages"]) == 2
    assert second.json()["messages"] == first.json()["messages"]
    assert Message.objects.filter(owner=alice).count() == 2


def test_api_sends_without_key_are_separate(alice, customer):
    client = _client(alice)

    client.post(
        SEND, {"customer_id": str(customer.code), "content": "Olá"}, format="json"
    )
    client.post(
        SEND, {"customer_id": str(customer.code), "content": "Olá"}, format="json"
    )

    assert Message.objects.filter(owner=alice).count() == 2


@pytest.mark.parametrize("key", ["", "   "])
def test_api_empty_key_is_rejected(alice, customer, key):
    response = _api_send(_client(alice), customer, key)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert not Message.objects.filter(owner=alice).exists()


def test_api_key_reused_for_another_text_is_422(alice, customer):
    client = _client(alice)
    _api_send(client, customer, "order-42", content="Olá")

    response = _api_send(client, customer, "order-42", content="Tchau")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Message.objects.filter(owner=alice).count() == 1


def test_api_key_after_the_window_sends_again(alice, customer):
    client = _client(alice)
    _api_send(client, customer, "order-42")
    Message.objects.filter(owner=alice).update(
        created_at=Message.objects.get(owner=alice).created_at - timedelta(hours=25)
    )

    response = _api_send(client, customer, "order-42")

    assert response.status_code == 202
    assert Message.objects.filter(owner=alice).count() == 2


def test_same_key_other_subscriber_sends(alice, charlie, customer):
    key = str(uuid.uuid4())
    _api_send(_client(alice), customer, key)
    charlie_customer = customer_make(charlie, phone="+5491100000001")

    response = _api_send(_client(charlie), charlie_customer, key)

    assert response.status_code == 202
    [message] = Message.objects.filter(owner=charlie)
    assert response.json()["messages"][0]["id"] == str(message.code)
    assert Message.objects.filter(owner=alice).count() == 1


def test_api_key_outside_ascii_is_400(alice, customer):
    response = _api_send(_client(alice), customer, "pedido-ü")

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "idempotency_key"
    assert "ASCII" in response.json()["message"]
    assert not Message.objects.filter(owner=alice).exists()


def test_api_key_too_long_is_400(alice, customer):
    response = _api_send(_client(alice), customer, "k" * 65)

    assert response.status_code == 400
    assert response.json()["extra"]["field"] == "idempotency_key"


def test_api_key_with_comma_is_400(alice, customer):
    # What a server makes of two Idempotency-Key headers, k1 and k2.
    response = _api_send(_client(alice), customer, "k1,k2")

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid_idempotency_key"
    assert "'k1,k2' has a comma" in body["message"]
    assert not Message.objects.filter(owner=alice).exists()


@pytest.mark.parametrize("content", [123, 1.5, True, ["Olá"], {"text": "Olá"}])
def test_api_content_must_be_a_json_string(alice, customer, content):
    response = _client(alice).post(
        SEND,
        {"customer_id": str(customer.code), "content": content},
        format="json",
    )

    assert response.status_code == 400
    assert "content" in str(response.json())
    assert not Message.objects.filter(owner=alice).exists()


def _api_send_to(client, to, key, content="Olá"):
    return client.post(
        SEND, {"to": to, "content": content}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_api_key_reused_for_another_number_is_422(alice):
    client = _client(alice)
    _api_send_to(client, "+5511955550001", "order-7")

    response = _api_send_to(client, "+5511955550002", "order-7")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Message.objects.filter(owner=alice).count() == 1


def test_api_key_repeated_for_same_number_replays(alice):
    client = _client(alice)
    first = _api_send_to(client, "+5511955550001", "order-8")

    # The same person, written without the ninth digit.
    second = _api_send_to(client, "+551155550001", "order-8")

    assert second.status_code == 202
    assert second.json()["messages"] == first.json()["messages"]


def test_api_key_from_customer_id_replays_by_number(alice, customer):
    client = _client(alice)
    first = _api_send(client, customer, "order-9")

    second = _api_send_to(client, customer.phone, "order-9")

    assert second.json()["messages"] == first.json()["messages"]


def test_key_after_customer_delete_sends_nothing(alice):
    client = _client(alice)
    _api_send_to(client, "+5511955550001", "order-10")
    customer_delete(customer=Customer.objects.get(owner=alice))

    again = _api_send_to(client, "+5511955550001", "order-10")

    assert again.status_code == 409
    assert again.json()["code"] == "idempotency_key_deleted"
    assert not Message.objects.filter(owner=alice).exists()


def test_key_after_message_delete_sends_nothing(alice, customer):
    client = _client(alice)
    first = _api_send(client, customer, "order-11")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])

    again = _api_send(client, customer, "order-11")

    assert first.status_code == 202
    assert again.status_code == 409
    assert again.json()["code"] == "idempotency_key_deleted"
    assert not Message.objects.filter(owner=alice).exists()


def test_deleted_key_after_the_window_sends_again(alice, customer):
    client = _client(alice)
    _api_send(client, customer, "order-12")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])
    DeletedSendKey.objects.update(used_at=timezone.now() - timedelta(hours=25))

    again = _api_send(client, customer, "order-12")

    assert again.status_code == 202
    assert Message.objects.filter(owner=alice).count() == 1


def test_deleted_key_of_other_subscriber_sends(alice, charlie, customer):
    _api_send(_client(alice), customer, "order-13")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])
    other = customer_make(charlie, phone="+5491100000001")

    response = _api_send(_client(charlie), other, "order-13")

    assert response.status_code == 202


def test_deleted_key_used_again_keeps_new_time(alice, customer):
    client = _client(alice)
    _api_send(client, customer, "order-14")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])
    DeletedSendKey.objects.update(used_at=timezone.now() - timedelta(hours=25))
    _api_send(client, customer, "order-14")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])

    again = _api_send(client, customer, "order-14")

    assert again.status_code == 409


def test_delete_of_later_part_keeps_no_key(alice, customer):
    _long_send_part_deleted(alice, customer, "order-15", 2)

    assert not DeletedSendKey.objects.exists()


def test_form_resent_after_delete_asks_to_reload(
    alice_client, alice, customer, fake_gateway
):
    page = alice_client.get(_conversation_url(customer)).content.decode()
    form = {"content": "Olá", "idempotency_key": _form_key(page)}
    send_url = _conversation_url(customer, "conversation_send")
    alice_client.post(send_url, form)
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])

    again = alice_client.post(send_url, form)

    assert again.status_code == 409
    assert "deleted since" in again.content.decode()
    assert not Message.objects.filter(owner=alice).exists()


def test_deleted_keys_purge_drops_expired_keys(alice, customer):
    _api_send(_client(alice), customer, "order-16")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])
    DeletedSendKey.objects.update(used_at=timezone.now() - timedelta(hours=25))

    assert message_deleted_send_keys_purge() == 1
    assert not DeletedSendKey.objects.exists()


def test_deleted_keys_purge_keeps_recent_keys(alice, customer):
    _api_send(_client(alice), customer, "order-17")
    messages_delete(message_ids=[Message.objects.get(owner=alice).pk])

    assert message_deleted_send_keys_purge() == 0
    assert DeletedSendKey.objects.count() == 1


def test_customer_id_key_after_customer_delete_is_409(alice, customer):
    client = _client(alice)
    _api_send(client, customer, "order-18")
    customer_delete(customer=customer)

    again = _api_send(client, customer, "order-18")

    assert again.status_code == 409
    assert again.json()["code"] == "idempotency_key_deleted"


def test_customer_id_unknown_without_deleted_key_is_404(alice, customer):
    client = _client(alice)
    customer_delete(customer=customer)

    response = _api_send(client, customer, "order-19")

    assert response.status_code == 404


def test_key_after_later_parts_delete_is_409(alice, customer):
    client = _long_send_part_deleted(alice, customer, "order-20", 1)

    again = _api_send(client, customer, "order-20", content=LONG_TEXT)

    assert again.status_code == 409
    assert again.json()["code"] == "idempotency_key_deleted"
    assert Message.objects.filter(owner=alice).count() == 1


def test_other_text_after_part_delete_is_422(alice, customer):
    client = _long_send_part_deleted(alice, customer, "order-21", 1)

    again = _api_send(client, customer, "order-21", content="Other text")

    assert again.status_code == 422
