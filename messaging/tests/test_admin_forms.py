"""Admin pages for customers and messages: rendering and tenant checks."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from messaging.models import Customer, Message
from messaging.services import message_send

from .helpers import customer_make, outbound_make, sent_today

pytestmark = pytest.mark.django_db


@pytest.fixture
def lid_customer(alice):
    """A customer known only by a LID: no phone, no name, no WhatsApp name."""
    return Customer.objects.create(
        owner=alice, lid="123@lid", wa_jid="123@lid", phone_unresolved=True
    )


def _message_form_data(owner, customer, **overrides) -> dict:
    now = timezone.localtime()
    data = {
        "owner": owner.pk,
        "customer": customer.pk,
        "direction": Message.Direction.OUTBOUND,
        "source": Message.Source.DASHBOARD,
        "kind": Message.Kind.TEXT,
        "body": "Hello",
        "metadata": "{}",
        "status": Message.Status.QUEUED,
        "timestamp_0": now.strftime("%Y-%m-%d"),
        "timestamp_1": now.strftime("%H:%M:%S"),
        "edit_history": "[]",
        "reactions": "{}",
    }
    data.update(overrides)
    return data


def test_lid_customer_str_is_str(lid_customer):
    assert type(str(lid_customer)) is str


def test_lid_customer_str_in_chinese(lid_customer):
    with translation.override("zh-hans"):
        label = lid_customer.__str__()

    assert type(label) is str


def test_customer_list_with_lid_customer(admin_client, lid_customer):
    response = admin_client.get(reverse("admin:messaging_customer_changelist"))

    assert response.status_code == 200


def test_message_list_with_lid_customer(admin_client, alice, lid_customer):
    outbound_make(alice, lid_customer)

    response = admin_client.get(reverse("admin:messaging_message_changelist"))

    assert response.status_code == 200


def test_lid_customer_change_page_loads(admin_client, lid_customer):
    url = reverse("admin:messaging_customer_change", args=[lid_customer.pk])

    response = admin_client.get(url)

    assert response.status_code == 200


def test_message_add_accepts_own_customer(admin_client, alice):
    customer = customer_make(alice)
    url = reverse("admin:messaging_message_add")

    response = admin_client.post(url, _message_form_data(alice, customer))

    assert response.status_code == 302
    assert Message.objects.get().customer == customer


def test_message_add_rejects_foreign_customer(admin_client, alice, charlie):
    charlies_customer = customer_make(charlie)
    url = reverse("admin:messaging_message_add")

    response = admin_client.post(url, _message_form_data(alice, charlies_customer))

    assert response.status_code == 200
    assert "customer" in response.context["adminform"].form.errors
    assert not Message.objects.exists()


def test_message_add_error_names_both_owners(admin_client, alice, charlie):
    charlies_customer = customer_make(charlie)
    url = reverse("admin:messaging_message_add")

    response = admin_client.post(url, _message_form_data(alice, charlies_customer))

    error = response.context["adminform"].form.errors["customer"][0]
    assert "charlie@example.com" in error
    assert "alice@example.com" in error


def test_message_add_rejects_foreign_previous_part(admin_client, alice, charlie):
    charlies_message = outbound_make(charlie, customer_make(charlie))
    data = _message_form_data(
        alice, customer_make(alice), previous_part=charlies_message.pk
    )

    response = admin_client.post(reverse("admin:messaging_message_add"), data)

    assert response.status_code == 200
    assert "previous_part" in response.context["adminform"].form.errors
    assert Message.objects.filter(owner=alice).count() == 0


def test_message_change_rejects_foreign_customer(admin_client, alice, charlie):
    message = outbound_make(alice, customer_make(alice))
    charlies_customer = customer_make(charlie)
    url = reverse("admin:messaging_message_change", args=[message.pk])

    response = admin_client.post(url, _message_form_data(alice, charlies_customer))

    message.refresh_from_db()
    assert response.status_code == 200
    assert "customer" in response.context["adminform"].form.errors
    assert message.customer.owner == alice


def test_message_change_keeps_owner(admin_client, alice, charlie):
    message = outbound_make(alice, customer_make(alice))
    url = reverse("admin:messaging_message_change", args=[message.pk])
    data = _message_form_data(charlie, customer_make(charlie))

    admin_client.post(url, data)

    message.refresh_from_db()
    assert message.owner == alice


def test_customer_change_keeps_owner(admin_client, alice, charlie):
    customer = customer_make(alice)
    url = reverse("admin:messaging_customer_change", args=[customer.pk])
    data = {"owner": charlie.pk, "name": "Renamed", "wa_jid": "", "push_name": ""}

    response = admin_client.post(url, data)

    customer.refresh_from_db()
    assert response.status_code == 302
    assert customer.name == "Renamed"
    assert customer.owner == alice


def _admin_delete_page(admin_client, row):
    admin_client.post(
        reverse(f"admin:messaging_{row._meta.model_name}_delete", args=[row.pk]),
        {"post": "yes"},
    )


def _admin_delete_action(admin_client, row):
    admin_client.post(
        reverse(f"admin:messaging_{row._meta.model_name}_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [row.pk],
            "post": "yes",
        },
    )


@pytest.mark.parametrize("delete", [_admin_delete_page, _admin_delete_action])
def test_admin_delete_refunds_queued_parts(
    admin_client, alice, django_capture_on_commit_callbacks, delete
):
    customer = customer_make(alice)
    message_send(user=alice, customer_code=customer.code, content="Queued")

    with django_capture_on_commit_callbacks(execute=True):
        delete(admin_client, customer)

    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert sent_today(alice) == 0


@pytest.mark.parametrize("delete", [_admin_delete_page, _admin_delete_action])
def test_admin_message_delete_refunds_quota(
    admin_client, alice, django_capture_on_commit_callbacks, delete
):
    customer = customer_make(alice)
    parts = message_send(user=alice, customer_code=customer.code, content="👍" * 5000)

    with django_capture_on_commit_callbacks(execute=True):
        delete(admin_client, parts[0])

    assert not Message.objects.filter(owner=alice).exists()
    assert sent_today(alice) == 0


def _message_change(admin_client, message, status):
    url = reverse("admin:messaging_message_change", args=[message.pk])
    data = _message_form_data(message.owner, message.customer, status=status)
    data["timestamp_0"] = timezone.localtime(message.timestamp).strftime("%Y-%m-%d")
    return admin_client.post(url, data)


def test_admin_failing_queued_message_refunds_quota(
    admin_client, alice, django_capture_on_commit_callbacks
):
    (message,) = message_send(
        user=alice, customer_code=customer_make(alice).code, content="Queued"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = _message_change(admin_client, message, Message.Status.FAILED)

    assert response.status_code == 302
    assert sent_today(alice) == 0


def test_admin_failing_sent_message_keeps_quota(
    admin_client, alice, django_capture_on_commit_callbacks
):
    (message,) = message_send(
        user=alice, customer_code=customer_make(alice).code, content="Sent"
    )
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT)
    message.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        _message_change(admin_client, message, Message.Status.FAILED)

    assert sent_today(alice) == 1
