import re

import pytest
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-secret-42"


def request_reset(client, email):
    return client.post(reverse("accounts:password_reset"), {"email": email})


def reset_link(message) -> str:
    return re.search(r"https?://[^/]+(/\S+)", message.body).group(1)


def test_password_reset_sends_email_with_link(client, owner):
    response = request_reset(client, owner.email)

    assert response["Location"] == reverse("accounts:password_reset_done")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [owner.email]
    assert "/accounts/password-reset/" in mail.outbox[0].body


def test_password_reset_for_unknown_email_sends_nothing(client, owner):
    response = request_reset(client, "nobody@example.com")

    assert response.status_code == 302
    assert mail.outbox == []


def test_password_reset_link_sets_new_password(client, owner):
    request_reset(client, owner.email)
    link = reset_link(mail.outbox[0])

    form_page = client.get(link, follow=True)
    client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_password_reset_link_works_once(client, owner):
    request_reset(client, owner.email)
    link = reset_link(mail.outbox[0])
    form_page = client.get(link, follow=True)
    client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    second = client.get(link, follow=True)

    assert "This link no longer works" in second.content.decode()
