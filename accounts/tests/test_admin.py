import pytest
from django.urls import reverse

from accounts.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = User.objects.create_superuser(email="admin@example.com", password="x")
    client.force_login(admin)
    return client


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
