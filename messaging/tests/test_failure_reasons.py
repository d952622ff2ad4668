"""Failure sentences: stored in English, shown in the page's language."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from messaging.failures import failure_sentence, failure_sentence_stored
from messaging.services.sending import gateway_failure_reason

from .helpers import customer_make, outbound_make, thread_language_kept

NOT_ON_WHATSAPP_ZH = "没有 WhatsApp 账户，因此消息无法送达"


@pytest.fixture
def customer(alice):
    return customer_make(alice, name="Customer A", phone="+5511900000001")


def _failed(alice, customer, code: str, error: str):
    return outbound_make(alice, customer, status="failed", error_code=code, error=error)


def _conversation_in_chinese(client, customer) -> str:
    url = reverse("messaging:conversation", kwargs={"code": customer.code})
    with thread_language_kept():
        response = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
    return response.content.decode()


def test_stored_sentence_stays_english():
    with translation.override("zh-hans"):
        sentence = failure_sentence_stored("not_on_whatsapp", number="+5511900000001")

    assert sentence.startswith("+5511900000001 has no WhatsApp account")


def test_gateway_failure_is_stored_in_english(alice, customer):
    message = outbound_make(alice, customer, status="sending")

    with translation.override("zh-hans"):
        code, sentence = gateway_failure_reason(
            status=422, code="GW_ERR_NOT_ON_WHATSAPP", message=message
        )

    assert code == "not_on_whatsapp"
    assert "has no WhatsApp account" in sentence


def test_page_shows_known_failure_in_chinese(alice_client, alice, customer):
    stored = failure_sentence_stored("not_on_whatsapp", number=customer.phone)
    _failed(alice, customer, "not_on_whatsapp", stored)

    page = _conversation_in_chinese(alice_client, customer)

    assert f"+5511900000001 {NOT_ON_WHATSAPP_ZH}" in page
    assert "has no WhatsApp account" not in page


def test_page_shows_other_failure_as_stored(alice_client, alice, customer):
    stored = "The gateway rejected the message as invalid (GW_ERR_INVALID_BODY)."
    _failed(alice, customer, "invalid_request", stored)

    page = _conversation_in_chinese(alice_client, customer)

    assert "rejected the message as invalid (GW_ERR_INVALID_BODY)" in page


@pytest.mark.parametrize(
    "code",
    [
        "session_not_connected",
        "not_on_whatsapp",
        "invalid_recipient",
        "send_in_doubt",
        "gateway_misconfigured",
        "previous_part_failed",
        "no_recipient",
    ],
)
def test_every_fixed_sentence_is_translated(code):
    english = failure_sentence_stored(code, number="+5511900000001")

    with translation.override("zh-hans"):
        chinese = failure_sentence(code, number="+5511900000001")

    assert chinese != english


def test_api_failure_follows_accept_language(api, alice, customer):
    stored = failure_sentence_stored("not_on_whatsapp", number=customer.phone)
    message = _failed(alice, customer, "not_on_whatsapp", stored)

    with thread_language_kept():
        chinese = api.get(
            f"/api/messages/{message.code}/", HTTP_ACCEPT_LANGUAGE="zh-hans"
        )
    english = api.get(f"/api/messages/{message.code}/", HTTP_ACCEPT_LANGUAGE="en")

    assert NOT_ON_WHATSAPP_ZH in chinese.json()["error"]
    assert english.json()["error"] == stored
    assert chinese.json()["error_code"] == "not_on_whatsapp"
