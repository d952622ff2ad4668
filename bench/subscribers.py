"""Subscribers for a bench run: account, active plan, API token, customers
and a connected WhatsApp session on the gateway's `sim` engine.

Runs in the bench process with Django set up against the bench database.
Accounts are written through the ORM without a password, because Django
5.2 hashes one with 1,000,000 PBKDF2 iterations, which is not what the bench
measures. Customers go through `messaging.services.customers.customer_create`.
Sessions are started through the product's API and paired through the
gateway's `/sim/scan`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.load import http
from bench.signed import signed_post

# Messages a subscriber may send a day in the bench; far above any run.
BENCH_DAILY_QUOTA = 10_000_000


@dataclass
class Subscriber:
    user_id: int
    token: str
    phone: str
    customer_codes: list[str]
    customer_phones: list[str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def _own_phone(index: int) -> str:
    # Brazilian mobile numbers: +55, area 11, then 9 and eight digits.
    return f"+55119{80_000_000 + index:08d}"


def _customer_phone(index: int, number: int) -> str:
    return f"+55119{70_000_000 + index * 100 + number:08d}"


def subscribers_create(*, count: int, customers_each: int, first_index: int):
    """Create `count` subscribers with `customers_each` customers each."""
    from rest_framework.authtoken.models import Token

    from accounts.models import Subscription, User
    from messaging.services.customers import customer_create

    subscribers = []
    for index in range(first_index, first_index + count):
        user = User.objects.create_user(
            email=f"bench-{index}@example.com", password=None, default_country="BR"
        )
        Subscription.objects.create(
            user=user,
            plan=Subscription.Plan.BUSINESS,
            status=Subscription.Status.ACTIVE,
            current_period_end=None,
            daily_message_quota=BENCH_DAILY_QUOTA,
        )
        token = Token.objects.create(user=user)
        customers = [
            customer_create(owner=user, phone=_customer_phone(index, number))
            for number in range(customers_each)
        ]
        subscribers.append(
            Subscriber(
                user_id=user.pk,
                token=token.key,
                phone=_own_phone(index),
                customer_codes=[str(customer.code) for customer in customers],
                customer_phones=[customer.phone for customer in customers],
            )
        )
    return subscribers


def _session_states(user_ids: list[int]) -> dict[int, str]:
    from sessions_wa.models import WhatsAppSession

    return dict(
        WhatsAppSession.objects.filter(user_id__in=user_ids).values_list(
            "user_id", "state"
        )
    )


def _wait_for_state(user_ids: list[int], state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = _session_states(user_ids)
        behind = [uid for uid in user_ids if states.get(uid) != state]
        if not behind:
            return
        if time.monotonic() >= deadline:
            sample = {uid: states.get(uid) for uid in behind[:5]}
            raise RuntimeError(
                f"{len(behind)} of {len(user_ids)} sessions did not reach "
                f"{state!r} within {timeout:.0f} s; for example {sample}."
            )
        time.sleep(0.2)


def sessions_connect(stack, subscribers: list[Subscriber], timeout=120.0) -> None:
    """Start each subscriber's session through the API and pair it by scan."""
    for subscriber in subscribers:
        response = http().post(
            f"{stack.web_url}/api/settings/whatsapp/session",
            json={},
            headers=subscriber.auth,
            timeout=30,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(
                f"Starting the session of user {subscriber.user_id} failed: "
                f"{response.status_code} {response.text[:300]}"
            )

    user_ids = [subscriber.user_id for subscriber in subscribers]
    _wait_for_state(user_ids, "qr_pending", timeout)

    for subscriber in subscribers:
        response = signed_post(
            stack.gateway_url,
            "/sim/scan",
            {"user_id": subscriber.user_id, "phone": subscriber.phone},
            secret=stack.gateway_secret,
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"/sim/scan for user {subscriber.user_id} failed: "
                f"{response.status_code} {response.text[:300]}"
            )
    _wait_for_state(user_ids, "connected", timeout)
