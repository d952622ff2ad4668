import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

URL = reverse("accounts:default_country_update")


def test_default_country_update_saves_choice(client, owner):
    client.force_login(owner)

    client.post(URL, {"default_country": "GB"})

    owner.refresh_from_db()
    assert owner.default_country == "GB"


def test_default_country_update_rejects_unknown_code(client, owner):
    client.force_login(owner)

    response = client.post(URL, {"default_country": "XX"}, follow=True)

    owner.refresh_from_db()
    assert owner.default_country == "BR"
    assert "was not changed" in response.content.decode()


def test_settings_page_lists_countries_with_calling_codes(client, owner):
    client.force_login(owner)

    response = client.get(reverse("sessions_wa:settings"))

    assert "Argentina (+54)" in response.content.decode()
