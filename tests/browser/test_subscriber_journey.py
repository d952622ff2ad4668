"""A new subscriber's first conversation, clicked through in Chromium.

Real processes: the live server, the Node gateway with its sim engine (acks
after 20, 40 and 60 ms) and a Celery worker. The subscriber signs up
through the form (which starts the free trial), links WhatsApp by QR code,
adds a customer, sends a message and watches its ticks reach "read", and
gets the customer's reply, all without reloading a page. A second
subscriber in another browser context then gets 404 at every URL of the
first one's customer and finds none of their data in their own pages.
"""

from __future__ import annotations

import re
import secrets
import uuid

import pytest

from accounts.models import User

from ..harness import poll_until

pytestmark = [pytest.mark.browser, pytest.mark.processes]

SCANNING_PHONE = "+5511900000009"
CUSTOMER_NAME = "Ana Journey"
CUSTOMER_PHONE = "+5511900000001"
OUTBOUND_TEXT = "Hello from the dashboard, your order is ready"
REPLY_TEXT = "Thanks! I will pick it up today"

STATUS_RANK = ["queued", "sending", "sent", "delivered", "read"]
# Milliseconds to wait for something the page changes by itself: the card
# and the conversation refresh every 2 and 3 s.
PAGE_CHANGE_TIMEOUT_MS = 30_000

# Records every data-status the outbound bubbles show, in order, so the test
# can check that the ticks only ever move forward.
RECORD_TICKS_JS = """
() => {
  window.__ticks = [];
  const record = () => {
    document.querySelectorAll("li.bubble-outbound").forEach((bubble) => {
      const status = bubble.dataset.status;
      if (window.__ticks[window.__ticks.length - 1] !== status) {
        window.__ticks.push(status);
      }
    });
  };
  record();
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-status"],
  });
}
"""


def _sign_up(page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/signup/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/settings/$"))


def _log_in(page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.locator("input[type=email], input[name=username]").first.fill(email)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/settings/$"))


def test_new_subscriber_first_conversation(
    chromium,
    screenshot,
    live_server,
    gateway_process,
    celery_worker_process,
    e2e_subscriber,
):
    base_url = live_server.url
    email = f"journey-{uuid.uuid4().hex[:10]}@example.com"
    password = secrets.token_urlsafe(16)
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_CHANGE_TIMEOUT_MS)

    # Sign up: the form starts the free trial and lands on the settings page.
    _sign_up(page, base_url, email, password)
    assert page.get_by_text("free trial has started").is_visible()
    user = User.objects.get(email=email)
    assert user.subscription.allows_whatsapp
    screenshot(page, "signed-up")

    # Link WhatsApp: the QR code appears in the card without a reload.
    page.get_by_role("button", name="Get my QR code").click()
    qr = page.locator("#whatsapp-card .qr-frame svg")
    qr.wait_for(state="visible")
    assert qr.locator("path").count() >= 1
    screenshot(page, "qr-code")

    page.locator("#sim-phone").fill(SCANNING_PHONE)
    page.get_by_role("button", name="Simulate scan").click()
    badge = page.locator("#whatsapp-card .badge")
    badge.filter(has_text="Connected").wait_for()
    card_text = page.locator("#whatsapp-card").inner_text()
    assert re.sub(r"\D", "", SCANNING_PHONE) in re.sub(r"\D", "", card_text)
    screenshot(page, "connected")

    # Add a customer through the form; saving opens the conversation.
    page.get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="Add customer").click()
    page.get_by_label("Name").fill(CUSTOMER_NAME)
    page.get_by_label("Phone number").fill(CUSTOMER_PHONE)
    screenshot(page, "customer-form")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/customers/[0-9a-f-]{36}/$"))
    conversation_path = page.url.removeprefix(base_url)
    assert page.get_by_role("heading", name=CUSTOMER_NAME).is_visible()
    screenshot(page, "conversation-empty")

    # Send, and watch the ticks move to "read" without a reload.
    page.evaluate(RECORD_TICKS_JS)
    page.locator("#send-box textarea").fill(OUTBOUND_TEXT)
    page.locator("#send-box").get_by_role("button", name="Send").click()
    outbound = page.locator("li.bubble-outbound", has_text=OUTBOUND_TEXT)
    outbound.wait_for()
    page.locator('li.bubble-outbound[data-status="read"]').wait_for()
    assert outbound.locator(".tick-read").is_visible()
    ticks = page.evaluate("window.__ticks")
    assert ticks[-1] == "read", ticks
    ranks = [STATUS_RANK.index(status) for status in ticks]
    assert ranks == sorted(ranks), f"the ticks moved backwards: {ticks}"
    screenshot(page, "message-read")

    # The customer replies through the gateway; the reply appears by itself.
    reply = gateway_process.request(
        "POST",
        "/sim/inbound",
        payload={"user_id": user.pk, "from": CUSTOMER_PHONE, "text": REPLY_TEXT},
    )
    assert reply.status_code == 202, reply.text
    inbound = page.locator("li.bubble-inbound", has_text=REPLY_TEXT)
    inbound.wait_for()
    assert page.url.removeprefix(base_url) == conversation_path
    screenshot(page, "reply-received")

    # Another subscriber gets none of it.
    outsider = chromium.new_context(viewport={"width": 1200, "height": 900})
    other = outsider.new_page()
    _log_in(other, base_url, e2e_subscriber.email, e2e_subscriber.password)
    other.goto(f"{base_url}/customers/")
    listing = other.content()
    assert CUSTOMER_NAME not in listing
    assert CUSTOMER_PHONE not in listing
    screenshot(other, "outsider-customers")

    code = conversation_path.strip("/").split("/")[-1]
    foreign_paths = [
        conversation_path,
        f"{conversation_path}messages/",
        f"{conversation_path}edit/",
        f"{conversation_path}delete/",
        f"/api/customers/{code}/",
    ]
    for path in foreign_paths:
        response = other.goto(f"{base_url}{path}")
        body = other.content()
        assert response.status == 404, f"GET {path} gave {response.status}"
        assert OUTBOUND_TEXT not in body, f"GET {path} shows the owner's message"
        assert REPLY_TEXT not in body, f"GET {path} shows the customer's reply"
        assert CUSTOMER_NAME not in body, f"GET {path} shows the customer's name"
        if path == conversation_path:
            screenshot(other, "outsider-404")

    filtered = other.request.get(f"{base_url}/api/messages/?customer={code}")
    assert filtered.status == 404, filtered.text()
    assert OUTBOUND_TEXT not in filtered.text()
    assert CUSTOMER_NAME not in filtered.text()

    for path in (f"{conversation_path}send/", f"{conversation_path}delete/"):
        response = other.request.post(
            f"{base_url}{path}",
            form={"content": "Not yours"},
            headers={"X-CSRFToken": _csrf_token(outsider), "Referer": base_url + "/"},
        )
        assert response.status == 404, f"POST {path} gave {response.status}"

    # The owner's conversation is intact after the outsider's attempts.
    page.reload()
    assert page.locator("li.bubble", has_text=OUTBOUND_TEXT).count() == 1
    assert page.locator("li.bubble", has_text=REPLY_TEXT).count() == 1
    poll_until(
        lambda: celery_worker_process.task_lines("messaging.message_send"),
        timeout=5,
        message="the send task in the worker log",
    )
    context.close()
    outsider.close()


def _csrf_token(context) -> str:
    cookies = {cookie["name"]: cookie["value"] for cookie in context.cookies()}
    return cookies.get("csrftoken", "")
