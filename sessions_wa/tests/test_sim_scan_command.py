"""manage.py sim_scan: a signed /sim/scan call for a session showing its QR code."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.tests.factories import subscriber_create
from sessions_wa.models import WhatsAppSession

pytestmark = pytest.mark.django_db


def sim_scan(*args):
    out = StringIO()
    call_command("sim_scan", *args, stdout=out)
    return out.getvalue()


def _waiting_for_scan(email: str):
    user = subscriber_create(email)
    WhatsAppSession.objects.create(
        user=user, state=WhatsAppSession.State.QR_PENDING, session_key="scan-1"
    )
    return user


def test_posts_signed_scan(fake_gateway):
    user = _waiting_for_scan("owner@example.com")
    fake_gateway.reply("/sim/scan", (200, {"ok": True}))

    output = sim_scan("--email", "owner@example.com", "--phone", "+5511988887777")

    [call] = fake_gateway.calls("/sim/scan")
    assert call["signed"] is True
    assert call["json"] == {"user_id": user.pk, "phone": "+5511988887777"}
    assert "+5511988887777" in output


def test_default_phone_matches_settings_page(fake_gateway):
    _waiting_for_scan("owner@example.com")
    fake_gateway.reply("/sim/scan", (200, {"ok": True}))

    sim_scan("--email", "owner@example.com")

    [call] = fake_gateway.calls("/sim/scan")
    assert call["json"]["phone"] == "+5511900000009"


def test_invalid_phone_is_an_error(fake_gateway):
    _waiting_for_scan("owner@example.com")

    with pytest.raises(CommandError, match="'12' is not a valid phone number"):
        sim_scan("--email", "owner@example.com", "--phone", "12")

    assert fake_gateway.requests == []


def test_session_without_qr_rejected(fake_gateway):
    subscriber_create("owner@example.com")

    with pytest.raises(CommandError, match=r"shows no QR code \(state: not started\)"):
        sim_scan("--email", "owner@example.com")

    assert fake_gateway.requests == []


def test_connected_session_is_reported(fake_gateway):
    owner = subscriber_create("owner@example.com")
    WhatsAppSession.objects.create(
        user=owner,
        session_key=WhatsAppSession.key_for_user_id(owner.pk),
        state=WhatsAppSession.State.CONNECTED,
    )

    with pytest.raises(CommandError, match="is already connected"):
        sim_scan("--email", "owner@example.com")

    assert fake_gateway.requests == []


def test_unknown_email_is_an_error(fake_gateway):
    with pytest.raises(CommandError, match="No subscriber has the email x@example"):
        sim_scan("--email", "x@example.com")

    assert fake_gateway.requests == []


def test_gateway_error_names_the_sim_engine(fake_gateway):
    _waiting_for_scan("owner@example.com")
    fake_gateway.reply(
        "/sim/scan", (404, {"code": "GW_ERR_NOT_FOUND", "message": "No such route."})
    )

    with pytest.raises(CommandError, match="No such route. The gateway must run"):
        sim_scan("--email", "owner@example.com")


def test_calls_the_session_gateway_node(fake_gateway, unreachable_gateway):
    # The web process started the session on the node in gateway_url; this
    # shell's WA_GATEWAY_URL names a port nothing listens on.
    user = _waiting_for_scan("owner@example.com")
    WhatsAppSession.objects.filter(user=user).update(gateway_url=fake_gateway.url)
    fake_gateway.reply("/sim/scan", (200, {"ok": True}))

    sim_scan("--email", "owner@example.com")

    assert len(fake_gateway.calls("/sim/scan")) == 1
