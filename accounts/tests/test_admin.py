import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.urls import reverse
from rest_framework.authtoken.models import Token

from accounts.admin import token_key_masked
from accounts.models import User
from accounts.services import api_token_rotate

pytestmark = pytest.mark.django_db


def test_admin_user_list_loads_with_filters(admin_client, owner):
    url = reverse("admin:accounts_user_changelist")

    response = admin_client.get(url, {"subscription__status__exact": "trialing"})

    assert response.status_code == 200
    assert owner.email in response.content.decode()


def test_admin_user_page_shows_subscription_inline(admin_client, owner):
    url = reverse("admin:accounts_user_change", args=[owner.pk])

    response = admin_client.get(url)

    assert response.status_code == 200
    assert "subscription-0-status" in response.content.decode()


def test_admin_add_user_page_loads(admin_client):
    response = admin_client.get(reverse("admin:accounts_user_add"))

    assert response.status_code == 200


def test_admin_subscription_list_loads(admin_client, owner):
    response = admin_client.get(reverse("admin:accounts_subscription_changelist"))

    assert response.status_code == 200


@pytest.fixture
def token(owner):
    return api_token_rotate(user=owner)


def _token_url(name, token):
    # The token admin addresses a token by its user's id, not by its key.
    return reverse(f"admin:authtoken_tokenproxy_{name}", args=[token.user_id])


def test_token_list_hides_key(admin_client, token):
    response = admin_client.get(reverse("admin:authtoken_tokenproxy_changelist"))

    assert response.status_code == 200
    assert token.key not in response.content.decode()


def test_token_list_shows_prefix_and_owner(admin_client, token):
    response = admin_client.get(reverse("admin:authtoken_tokenproxy_changelist"))

    page = response.content.decode()
    assert token_key_masked(token.key) in page
    assert token.user.email in page


@pytest.mark.parametrize("page", ["change", "history", "delete"])
def test_token_page_hides_key(admin_client, token, page):
    response = admin_client.get(_token_url(page, token))

    assert response.status_code == 200
    assert token.key not in response.content.decode()


def test_token_page_user_not_editable(admin_client, token):
    response = admin_client.get(_token_url("change", token))

    assert 'name="user"' not in response.content.decode()


def test_token_delete_revokes_token(admin_client, token):
    admin_client.post(_token_url("delete", token), {"post": "yes"})

    assert not Token.objects.filter(key=token.key).exists()


def test_token_delete_message_hides_key(admin_client, token):
    response = admin_client.post(
        _token_url("delete", token), {"post": "yes"}, follow=True
    )

    assert response.status_code == 200
    assert token.key not in response.content.decode()


def test_token_delete_log_hides_key(admin_client, token):
    admin_client.post(_token_url("delete", token), {"post": "yes"})

    entry = LogEntry.objects.get(action_flag=DELETION)
    assert entry.object_repr == token_key_masked(token.key)


def test_token_add_page_is_forbidden(admin_client):
    response = admin_client.get(reverse("admin:authtoken_tokenproxy_add"))

    assert response.status_code == 403


def test_token_cannot_move_to_other_user(admin_client, token, outsider):
    admin_client.post(_token_url("change", token), {"user": outsider.pk})

    assert Token.objects.get(key=token.key).user_id == token.user_id


def test_subscription_cannot_move_to_other_user(admin_client, owner, outsider):
    outsider.subscription.delete()
    subscription = owner.subscription
    url = reverse("admin:accounts_subscription_change", args=[subscription.pk])
    data = {
        "user": outsider.pk,
        "plan": "pro",
        "status": "active",
        "daily_message_quota": 1000,
    }

    response = admin_client.post(url, data)

    subscription.refresh_from_db()
    assert response.status_code == 302
    assert subscription.plan == "pro"
    assert subscription.user == owner


def _user_add_data(email: str, **subscription_forms) -> dict:
    return {
        "email": email,
        "usable_password": "true",
        "password1": "correct-horse-battery-9",
        "password2": "correct-horse-battery-9",
        "subscription-TOTAL_FORMS": "0",
        "subscription-INITIAL_FORMS": "0",
        **subscription_forms,
    }


def test_user_add_rejects_email_case_variant(admin_client, owner):
    data = _user_add_data("OWNER@example.com")

    response = admin_client.post(reverse("admin:accounts_user_add"), data)

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert User.objects.filter(email__iexact=owner.email).count() == 1


def test_user_add_lowercases_email(admin_client):
    data = _user_add_data("New.Person@Example.com")

    admin_client.post(reverse("admin:accounts_user_add"), data)

    assert User.objects.filter(email="new.person@example.com").exists()


def test_user_delete_page_masks_token_key(admin_client, token):
    url = reverse("admin:accounts_user_delete", args=[token.user_id])

    page = admin_client.get(url).content.decode()

    assert token.key not in page
    assert token_key_masked(token.key) in page


def test_user_delete_action_masks_key(admin_client, token):
    response = admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_selected", "_selected_action": [token.user_id]},
    )

    page = response.content.decode()
    assert token.key not in page
    assert token_key_masked(token.key) in page


def test_user_added_without_plan_gets_trial(admin_client):
    admin_client.post(
        reverse("admin:accounts_user_add"), _user_add_data("trial@example.com")
    )

    subscription = User.objects.get(email="trial@example.com").subscription
    assert subscription.plan == "starter"
    assert subscription.status == "trialing"


def test_user_added_with_plan_keeps_it(admin_client):
    data = _user_add_data(
        "paying@example.com",
        **{
            "subscription-TOTAL_FORMS": "1",
            "subscription-0-plan": "business",
            "subscription-0-status": "active",
            "subscription-0-daily_message_quota": "5000",
        },
    )

    admin_client.post(reverse("admin:accounts_user_add"), data)

    subscription = User.objects.get(email="paying@example.com").subscription
    assert subscription.plan == "business"
    assert subscription.status == "active"
