"""Creating, changing and deleting customers."""

from __future__ import annotations

import pytest

from messaging.models import Customer, Message
from messaging.services import (
    customer_create,
    customer_delete,
    customer_update,
    message_send,
)
from whatsapp_saas.exceptions import ApplicationError

from .helpers import customer_make, outbound_make, sent_today


def test_customer_create_stores_e164_and_key(alice):
    customer = customer_create(owner=alice, phone="(11) 90000-0001", name="Customer A")

    assert customer.phone == "+5511900000001"
    assert customer.match_key == "551100000001"
    assert customer.phone_unresolved is False


def test_customer_create_reads_number_in_owner_country(charlie):
    customer = customer_create(owner=charlie, phone="011 15 0000-0001")

    assert customer.phone == "+5491100000001"


def test_customer_create_collapses_whitespace_in_name(alice):
    customer = customer_create(
        owner=alice, phone="+5511900000001", name="  Ana \n Maria "
    )

    assert customer.name == "Ana Maria"


def test_customer_create_invalid_phone_names_field_and_value(alice):
    with pytest.raises(ApplicationError) as raised:
        customer_create(owner=alice, phone="+55 11 9OOOO-0001")

    assert raised.value.code == "invalid_phone"
    assert raised.value.extra == {"field": "phone", "value": "+55 11 9OOOO-0001"}
    assert "'+55 11 9OOOO-0001'" in raised.value.message


def test_customer_create_rejects_long_name(alice):
    with pytest.raises(ApplicationError) as raised:
        customer_create(owner=alice, phone="+5511900000001", name="x" * 201)

    assert raised.value.extra["field"] == "name"


def test_customer_create_rejects_other_spelling_of_same_number(alice):
    existing = customer_create(owner=alice, phone="+55 11 9 0000-0001")

    with pytest.raises(ApplicationError) as raised:
        customer_create(owner=alice, phone="551100000001")

    assert raised.value.code == "duplicate_customer"
    assert raised.value.status_code == 409
    assert raised.value.extra["customer_id"] == str(existing.code)


def test_customer_create_same_number_for_two_owners(alice, charlie):
    customer_create(owner=alice, phone="+5511900000001")
    customer_create(owner=charlie, phone="+5511900000001")

    assert Customer.objects.filter(phone="+5511900000001").count() == 2


def test_customer_update_changes_name_only(alice):
    customer = customer_make(alice, wa_jid="551100000001@s.whatsapp.net")

    customer_update(customer=customer, name="Ana")

    customer.refresh_from_db()
    assert customer.name == "Ana"
    assert customer.wa_jid == "551100000001@s.whatsapp.net"


def test_customer_update_other_spelling_keeps_whatsapp_jid(alice):
    customer = customer_make(alice, wa_jid="551100000001@s.whatsapp.net")

    customer_update(customer=customer, phone="+55 11 0000-0001")

    customer.refresh_from_db()
    assert customer.wa_jid == "551100000001@s.whatsapp.net"


def test_customer_update_new_number_clears_whatsapp_jid(alice):
    customer = customer_make(alice, wa_jid="551100000001@s.whatsapp.net")

    customer_update(customer=customer, phone="+5511900000002")

    customer.refresh_from_db()
    assert customer.phone == "+5511900000002"
    assert customer.wa_jid == ""


def test_customer_update_resolves_lid_only_customer(alice):
    customer = Customer.objects.create(
        owner=alice, lid="100000000000001@lid", phone_unresolved=True
    )

    customer_update(customer=customer, phone="+5511900000001")

    customer.refresh_from_db()
    assert customer.phone_unresolved is False


def test_customer_update_rejects_number_of_another_customer(alice):
    customer_make(alice, phone="+5511900000001")
    other = customer_make(alice, phone="+5511900000002", name="B")

    with pytest.raises(ApplicationError) as raised:
        customer_update(customer=other, phone="+5511900000001")

    assert raised.value.code == "duplicate_customer"


def test_customer_delete_removes_conversation(alice):
    customer = customer_make(alice)
    outbound_make(alice, customer)

    customer_delete(customer=customer)

    assert not Customer.objects.filter(owner=alice).exists()
    assert not Message.objects.filter(owner=alice).exists()


def test_customer_delete_refunds_queued_parts(
    alice, django_capture_on_commit_callbacks
):
    customer = customer_make(alice)
    message_send(user=alice, customer_code=customer.code, content="Queued")
    (sent,) = message_send(user=alice, customer_code=customer.code, content="Sent")
    Message.objects.filter(pk=sent.pk).update(status=Message.Status.SENT)

    with django_capture_on_commit_callbacks(execute=True):
        customer_delete(customer=customer)

    assert sent_today(alice) == 1


def test_customer_delete_keeps_other_counts(alice, django_capture_on_commit_callbacks):
    other = customer_make(alice, phone="+5511900000002")
    deleted = customer_make(alice, phone="+5511900000003")
    message_send(user=alice, customer_code=other.code, content="Stays queued")

    with django_capture_on_commit_callbacks(execute=True):
        customer_delete(customer=deleted)

    assert sent_today(alice) == 1
