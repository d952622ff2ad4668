"""manage.py sim_inbound: a signed /sim/inbound call to the gateway."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.tests.factories import subscriber_create
from messaging.tests.helpers import session_connect
from sessions_wa.models import WhatsAppSession

pytestmark = pytest.mark.django_db

CUSTOMER = "+5511900000001"


def sim_inbound(*args):
    out = StringIO()
    call_command("sim_inbound", *args, stdout=out)
    return out.getvalue()


def test_posts_signed_inbound_message(fake_gateway):
    user = subscriber_create("owner@example.com")
    fake_gateway.reply("/sim/inbound", (202, {"gateway_message_id": "SIM1"}))

    output = sim_inbound(
        "--email", "owner@example.com", "--from", CUSTOMER, "--text", "Hi"
    )

    [call] = fake_gateway.calls("/sim/inbound")
    assert call["signed"] is True
    assert call["json"] == {"user_id": user.pk, "from": CUSTOMER, "text": "Hi"}
    assert "SIM1" in output


def test_passes_the_push_name(fake_gateway):
    subscriber_create("owner@example.com")
    fake_gateway.reply("/sim/inbound", (202, {"gateway_message_id": "SIM1"}))

    sim_inbound(
        "--email", "owner@example.com", "--from", CUSTOMER, "--text", "Hi",
        "--push-name", "Ana",
    )  # fmt: skip

    [call] = fake_gateway.calls("/sim/inbound")
    assert call["json"]["push_name"] == "Ana"


# The second spelling lacks the ninth digit, as older Brazilian JIDs do.
@pytest.mark.parametrize("typed", ["+55 11 90000-0009", "+55 11 0000-0009"])
def test_own_number_is_an_error(fake_gateway, typed):
    user = subscriber_create("owner@example.com")
    session_connect(user, phone="+5511900000009")

    with pytest.raises(CommandError, match="own WhatsApp number"):
        sim_inbound("--email", "owner@example.com", "--from", typed, "--text", "Hi")

    assert fake_gateway.requests == []


def test_empty_text_is_an_error(fake_gateway):
    subscriber_create("owner@example.com")

    with pytest.raises(CommandError, match="--text is empty"):
        sim_inbound("--email", "owner@example.com", "--from", CUSTOMER, "--text", " ")

    assert fake_gateway.requests == []


def test_unknown_email_is_an_error(fake_gateway):
    with pytest.raises(CommandError, match="No subscriber has the email x@example"):
        sim_inbound("--email", "x@example.com", "--from", CUSTOMER, "--text", "Hi")

    assert fake_gateway.requests == []


def test_gateway_error_explains_what_to_check(fake_gateway):
    subscriber_create("owner@example.com")
    fake_gateway.reply(
        "/sim/inbound",
        (409, {"code": "GW_ERR_CLIENT_NOT_READY", "message": "Not connected."}),
    )

    with pytest.raises(
        CommandError, match="Not connected. The gateway must run with WA_ENGINE"
    ):
        sim_inbound("--email", "owner@example.com", "--from", CUSTOMER, "--text", "Hi")


def test_invalid_sender_names_the_from_option(fake_gateway):
    subscriber_create("owner@example.com")
    fake_gateway.reply(
        "/sim/inbound",
        (400, {"code": "GW_ERR_INVALID_RECIPIENT", "message": "Invalid recipient."}),
    )

    with pytest.raises(CommandError) as raised:
        sim_inbound(
            "--email", "owner@example.com", "--from", "123@g.us", "--text", "Hi"
        )

    message = str(raised.value)
    assert message.startswith("--from '123@g.us' is not a number or JID")
    assert "WA_ENGINE" not in message


# A mobile and a landline, typed as a Brazilian subscriber would.
@pytest.mark.parametrize(
    ("typed", "e164"),
    [("11 91234-5678", "+5511912345678"), ("(11) 3456-7890", "+551134567890")],
)
def test_national_number_sent_in_e164(fake_gateway, typed, e164):
    subscriber_create("owner@example.com", default_country="BR")
    fake_gateway.reply("/sim/inbound", (202, {"gateway_message_id": "SIM1"}))

    sim_inbound("--email", "owner@example.com", "--from", typed, "--text", "Hi")

    [call] = fake_gateway.calls("/sim/inbound")
    assert call["json"]["from"] == e164


def test_invalid_number_is_an_error(fake_gateway):
    subscriber_create("owner@example.com", default_country="BR")

    with pytest.raises(CommandError, match="--from: '12' is not a valid phone number"):
        sim_inbound("--email", "owner@example.com", "--from", "12", "--text", "Hi")

    assert fake_gateway.requests == []


def test_calls_the_session_gateway_node(fake_gateway, unreachable_gateway):
    # As in sim_scan: the session's node, not this shell's WA_GATEWAY_URL.
    user = subscriber_create("owner@example.com")
    session_connect(user)
    WhatsAppSession.objects.filter(user=user).update(gateway_url=fake_gateway.url)
    fake_gateway.reply("/sim/inbound", (202, {"gateway_message_id": "SIM2"}))

    sim_inbound("--email", "owner@example.com", "--from", CUSTOMER, "--text", "Hi")

    assert len(fake_gateway.calls("/sim/inbound")) == 1
