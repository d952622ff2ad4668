"""Every URL of the project, requested by one subscriber with another's ids.

The test walks the whole URL configuration (pages, API and admin), fills
each path parameter with an object that belongs to the *owner*, and sends
GET and every write method as the *outsider*, a second logged-in
subscriber. The outsider must get 404 for the owner's objects (never 403,
which would confirm that the id exists), 405 for methods a URL does not
take, and never any of the owner's data in a body or a redirect. The
owner's rows must not change.

`MATRIX` has one entry per URL pattern. A pattern without an entry fails
`test_every_url_pattern_has_a_matrix_entry`, so a new URL cannot ship
without saying how outsiders are treated. Admin URLs share one rule: a
subscriber is not staff, so every admin URL but the login page redirects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import phonenumbers
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from accounts.tests.factories import subscriber_create
from messaging.models import Customer, Message, PendingMessageUpdate
from messaging.phones import match_key
from sessions_wa.models import GatewayEvent, WhatsAppSession

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
EVERY_METHOD = METHODS

# What the outsider may get back.
NOT_FOUND = "404 not found"
OWN = "any answer below 500 about the outsider's own account"
REJECTED = "400 rejected"
UNSIGNED = "401 missing signature"
NOT_ALLOWED = "405 method not allowed"
ADMIN_REDIRECT = "302 redirect into the admin login"

OWNER_EMAIL = "owner-isolation-7731@example.com"
OWNER_CUSTOMER_NAME = "Zeta Owner Customer"
OWNER_CUSTOMER_PUSH_NAME = "Zeta Push Handle"
OWNER_CUSTOMER_PHONE = "+5511977770001"
OWNER_CUSTOMER_LID = "100000000000078@lid"
OWNER_MESSAGE_TEXT = "owner secret message body 7f3a"
OWNER_GATEWAY_ID = "3EB0OWNERSECRET7F3A"
OWNER_QR = "2@OwnerQrSecret7f3a,aGVsbG8=,d29ybGQ=,Zm9v"
OWNER_JID = "5511977770009@s.whatsapp.net"
OWNER_PHONE = "+5511977770009"
OWNER_LID = "100000000000077@lid"
OWNER_PUSH_NAME = "Owner Push Zeta"


@dataclass
class OwnerData:
    """The owner's rows whose ids go into URLs, and the texts that must not leak."""

    user: object
    customer: Customer
    message: Message
    session: WhatsAppSession
    event: GatewayEvent
    pending: PendingMessageUpdate
    group: Group
    token: Token
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """How the outsider is treated at one URL pattern.

    `expect` maps each method the URL takes to the allowed outcome; every
    other method must return 405. `params` maps path parameters to a
    function of the owner's data; `payload` and `query` build the request
    data.
    """

    expect: dict[str, str]
    params: dict[str, Callable[[OwnerData], str]] = field(default_factory=dict)
    payload: Callable[[OwnerData], dict] | None = None
    query: Callable[[OwnerData], dict] | None = None
    json: bool = False
    # Texts the outsider sends itself, so they may come back in its response.
    typed: tuple[str, ...] = ()


# A failed login shows the typed address again, so it is not the owner's.
WRONG_LOGIN = {"username": "nobody-isolation@example.com", "password": "wrong"}


def _same(outcome: str, methods=EVERY_METHOD) -> dict[str, str]:
    return dict.fromkeys(methods, outcome)


def _customer_code(owner: OwnerData) -> str:
    return str(owner.customer.code)


CUSTOMER_CODE = {"code": _customer_code}


def _customer_fields(owner: OwnerData) -> dict:
    return {"name": "Renamed by outsider", "phone": "+5511900000077"}


def _owner_number(owner: OwnerData) -> dict:
    # The owner's customer's number is free for the outsider to add as
    # their own customer; the response must not name the owner's customer.
    return {"name": "Outsider's own contact", "phone": OWNER_CUSTOMER_PHONE}


OWNER_NUMBER_TYPED = (OWNER_CUSTOMER_PHONE, OWNER_CUSTOMER_PHONE[1:])


def _owner_user_id(owner: OwnerData) -> dict:
    return {"user_id": owner.user.pk}


MATRIX: dict[str, Entry] = {
    # messaging pages
    "": Entry(_same(OWN)),
    "customers/": Entry(
        _same(OWN), query=lambda owner: {"q": OWNER_CUSTOMER_NAME.split()[0]}
    ),
    "customers/add/": Entry(
        _same(OWN, ("GET", "POST")), payload=_owner_number, typed=OWNER_NUMBER_TYPED
    ),
    "customers/import/": Entry(_same(OWN, ("GET", "POST"))),
    "customers/<code:code>/": Entry(_same(NOT_FOUND), params=CUSTOMER_CODE),
    "customers/<code:code>/messages/": Entry(_same(NOT_FOUND), params=CUSTOMER_CODE),
    "customers/<code:code>/send/": Entry(
        {"POST": NOT_FOUND},
        params=CUSTOMER_CODE,
        payload=lambda owner: {"content": "Hello from the outsider"},
    ),
    "customers/<code:code>/edit/": Entry(
        _same(NOT_FOUND, ("GET", "POST")),
        params=CUSTOMER_CODE,
        payload=_customer_fields,
    ),
    "customers/<code:code>/delete/": Entry(
        _same(NOT_FOUND, ("GET", "POST")), params=CUSTOMER_CODE
    ),
    # accounts pages
    # A logged-in subscriber is sent away from signup, whatever the method.
    "accounts/signup/": Entry(_same(OWN)),
    # Django's form views read PUT like POST.
    "accounts/login/": Entry(_same(OWN), payload=lambda owner: WRONG_LOGIN),
    "accounts/logout/": Entry(_same(OWN, ("POST",))),
    # The response is the same whether or not the address has an account.
    "accounts/password-reset/": Entry(
        _same(OWN, ("GET", "POST", "PUT")), payload=lambda owner: {"email": OWNER_EMAIL}
    ),
    "accounts/password-reset/sent/": Entry(_same(OWN, ("GET",))),
    "accounts/password-reset/<uidb64>/<token>/": Entry(
        _same(OWN),
        params={
            "uidb64": lambda owner: urlsafe_base64_encode(force_bytes(owner.user.pk)),
            "token": lambda owner: "c0ffee-0123456789abcdef",
        },
        payload=lambda owner: {"new_password1": "x", "new_password2": "x"},
    ),
    "accounts/password-reset/complete/": Entry(_same(OWN, ("GET",))),
    "accounts/settings/country/": Entry(
        {"POST": OWN}, payload=lambda owner: {"default_country": "AR"}
    ),
    "accounts/settings/api-token/": Entry({"POST": OWN}),
    # the outsider's own WhatsApp settings
    "settings/": Entry(_same(OWN, ("GET",))),
    "settings/whatsapp/card/": Entry(_same(OWN, ("GET",))),
    "settings/whatsapp/start/": Entry({"POST": OWN}),
    "settings/whatsapp/disconnect/": Entry(_same(OWN, ("GET", "POST"))),
    "settings/whatsapp/simulate-scan/": Entry(
        {"POST": OWN}, payload=lambda owner: {"phone": OWNER_PHONE}
    ),
    "i18n/setlang/": Entry(_same(OWN), payload=lambda owner: {"language": "en"}),
    "admin/login/": Entry(_same(OWN), payload=lambda owner: WRONG_LOGIN),
    # API
    "api/settings/whatsapp/session": Entry(
        {"GET": OWN, "POST": REJECTED}, payload=_owner_user_id, json=True
    ),
    "api/settings/whatsapp/session/logout": Entry(
        {"POST": REJECTED}, payload=_owner_user_id, json=True
    ),
    "api/settings/whatsapp/session/update": Entry(
        {"POST": UNSIGNED},
        payload=lambda owner: {
            "events": [
                {
                    "event_id": "5b0c7a52-8f0e-4f57-9a55-0d3c2b1e9f10",
                    "seq": 10**9,
                    "type": "session.logged_out",
                    "user_id": owner.user.pk,
                    "occurred_at": timezone.now().isoformat(),
                    "data": {"reason": "requested"},
                }
            ]
        },
        json=True,
    ),
    "api/auth/token/rotate": Entry({"POST": OWN}, json=True),
    "api/messages/send": Entry(
        {"POST": NOT_FOUND},
        payload=lambda owner: {"customer_id": _customer_code(owner), "content": "Hi"},
        json=True,
    ),
    "api/messages/": Entry(
        {"GET": OWN},
        query=lambda owner: {"customer": _customer_code(owner), "status": "received"},
    ),
    "api/^messages/(?P<code>[0-9a-fA-F-]{32,36})/$": Entry(
        _same(NOT_FOUND, ("GET",)),
        params={"code": lambda owner: str(owner.message.code)},
    ),
    # A body naming another user is rejected; the page form above covers
    # adding the owner's customer's number as the outsider's own.
    "api/^customers/$": Entry(
        {"GET": OWN, "POST": REJECTED},
        query=lambda owner: {"search": OWNER_CUSTOMER_NAME.split()[0]},
        payload=lambda owner: {**_owner_number(owner), **_owner_user_id(owner)},
        json=True,
        typed=OWNER_NUMBER_TYPED,
    ),
    "api/^customers/(?P<code>[0-9a-fA-F-]{32,36})/$": Entry(
        _same(NOT_FOUND, ("GET", "PUT", "PATCH", "DELETE")),
        params=CUSTOMER_CODE,
        payload=_customer_fields,
        json=True,
    ),
    "api/schema/": Entry(_same(OWN, ("GET",))),
    "api/docs/": Entry(_same(OWN, ("GET",))),
    # Every other path under /api/ gets the API's JSON 404.
    "api": Entry(_same(NOT_FOUND)),
    "^api/(?P<path>.*)$": Entry(
        _same(NOT_FOUND), params={"path": lambda owner: "no-such-endpoint/"}
    ),
}

ADMIN_PREFIX = "admin/"


def _admin_object_id(route: str, owner: OwnerData) -> str:
    """Return the pk of the owner's row of the model an admin route names."""
    if route.startswith("admin/r/"):
        return str(owner.customer.pk)
    parts = route.split("/")
    model = apps.get_model(parts[1], parts[2])
    rows = {
        "accounts.user": owner.user.pk,
        "accounts.subscription": owner.user.subscription.pk,
        "authtoken.tokenproxy": owner.user.pk,
        "auth.group": owner.group.pk,
        "sessions_wa.whatsappsession": owner.session.pk,
        "sessions_wa.gatewayevent": owner.event.pk,
        "messaging.customer": owner.customer.pk,
        "messaging.message": owner.message.pk,
        "messaging.pendingmessageupdate": owner.pending.pk,
    }
    label = model._meta.label_lower
    assert label in rows, (
        f"The admin route {route!r} is for {label}, which has no owner row in "
        "_admin_object_id; add one."
    )
    return str(rows[label])


def _admin_entry(route: str) -> Entry:
    params = {
        "object_id": lambda owner: _admin_object_id(route, owner),
        "id": lambda owner: str(owner.user.pk),
        "content_type_id": lambda owner: str(
            ContentType.objects.get_for_model(Customer).pk
        ),
        "app_label": lambda owner: "messaging",
        "url": lambda owner: f"no-such-page/{owner.customer.pk}/",
    }
    return Entry(_same(ADMIN_REDIRECT), params=params, payload=_customer_fields)


def _walk(resolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route


def url_routes() -> list[str]:
    """Every URL pattern of the project as its full route text."""
    return list(dict.fromkeys(_walk(get_resolver())))


def entry_for(route: str) -> Entry | None:
    if route in MATRIX:
        return MATRIX[route]
    if route.startswith(ADMIN_PREFIX):
        return _admin_entry(route)
    return None


_CONVERTER_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _replace_regex_groups(route: str, values: dict[str, str]) -> str:
    """Replace each (?P<name>...) group, nested parentheses included."""
    result = []
    index = 0
    while index < len(route):
        if route.startswith("(?P<", index):
            name_end = route.index(">", index)
            name = route[index + 4 : name_end]
            depth = 0
            end = index
            while True:
                char = route[end]
                if char == "\\":
                    end += 2
                    continue
                if char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            result.append(values[name])
            index = end + 1
        else:
            result.append(route[index])
            index += 1
    return "".join(result)


def route_path(route: str, values: dict[str, str]) -> str:
    """Return the URL path of `route` with its parameters filled in."""
    path = _replace_regex_groups(route, values)
    path = _CONVERTER_RE.sub(lambda match: values[match["name"]], path)
    return "/" + path.replace("^", "").replace("$", "")


def _route_parameters(route: str) -> set[str]:
    groups = set(re.findall(r"\(\?P<([^>]+)>", route))
    without_groups = _replace_regex_groups(route, {name: "" for name in groups})
    return groups | {match["name"] for match in _CONVERTER_RE.finditer(without_groups)}


@pytest.fixture
def owner_data(db) -> OwnerData:
    user = subscriber_create(OWNER_EMAIL)
    session = WhatsAppSession.objects.create(
        user=user,
        session_key=WhatsAppSession.key_for_user_id(user.pk),
        state=WhatsAppSession.State.CONNECTED,
        connected=True,
        qr=OWNER_QR,
        jid=OWNER_JID,
        phone=OWNER_PHONE,
        lid=OWNER_LID,
        push_name=OWNER_PUSH_NAME,
    )
    customer = Customer.objects.create(
        owner=user,
        name=OWNER_CUSTOMER_NAME,
        push_name=OWNER_CUSTOMER_PUSH_NAME,
        phone=OWNER_CUSTOMER_PHONE,
        match_key=match_key(OWNER_CUSTOMER_PHONE),
        wa_jid=f"{OWNER_CUSTOMER_PHONE[1:]}@s.whatsapp.net",
        lid=OWNER_CUSTOMER_LID,
    )
    message = Message.objects.create(
        owner=user,
        customer=customer,
        direction=Message.Direction.INBOUND,
        source=Message.Source.CONTACT,
        body=OWNER_MESSAGE_TEXT,
        status=Message.Status.RECEIVED,
        gateway_message_id=OWNER_GATEWAY_ID,
        chat_jid=customer.wa_jid,
        timestamp=timezone.now(),
        unread=True,
    )
    event = GatewayEvent.objects.create(
        event_id="0f0e0d0c-0b0a-4909-8807-060504030201",
        user=user,
        gateway_user_id=user.pk,
        seq=1,
        type="message.received",
        occurred_at=timezone.now(),
        data={"chat_jid": customer.wa_jid, "push_name": OWNER_CUSTOMER_PUSH_NAME},
        outcome=GatewayEvent.Outcome.APPLIED,
    )
    pending = PendingMessageUpdate.objects.create(
        owner=user,
        gateway_message_id="3EB0OWNERPENDING7F3A",
        kind=PendingMessageUpdate.Kind.STATUS,
        payload={"status": "read"},
    )
    token, _created = Token.objects.get_or_create(user=user)
    number = phonenumbers.parse(OWNER_CUSTOMER_PHONE, None)
    secrets = [
        OWNER_EMAIL,
        OWNER_CUSTOMER_NAME,
        OWNER_CUSTOMER_PUSH_NAME,
        OWNER_CUSTOMER_PHONE,
        OWNER_CUSTOMER_PHONE[1:],
        phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        OWNER_CUSTOMER_LID,
        OWNER_MESSAGE_TEXT,
        OWNER_GATEWAY_ID,
        OWNER_QR,
        OWNER_JID,
        OWNER_PHONE,
        OWNER_LID,
        OWNER_PUSH_NAME,
        token.key,
    ]
    return OwnerData(
        user=user,
        customer=customer,
        message=message,
        session=session,
        event=event,
        pending=pending,
        group=Group.objects.create(name="Owner isolation group"),
        token=token,
        secrets=secrets,
    )


@pytest.fixture
def outsider(db):
    return subscriber_create("outsider-isolation@example.com", default_country="BR")


def _owner_snapshot(owner: OwnerData) -> dict:
    user = type(owner.user).objects.get(pk=owner.user.pk)
    session = WhatsAppSession.objects.get(pk=owner.session.pk)
    return {
        "user": (user.email, user.default_country, user.password, user.is_active),
        "customers": sorted(
            Customer.objects.filter(owner=user).values_list("code", "name", "phone")
        ),
        "messages": sorted(
            Message.objects.filter(owner=user).values_list("pk", "body", "status")
        ),
        "session": (session.state, session.qr, session.jid, session.last_event_seq),
        "token": Token.objects.filter(user=user).values_list("key", flat=True).first(),
        "pending": PendingMessageUpdate.objects.filter(owner=user).count(),
    }


def _outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def _send(client: Client, method: str, path: str, entry: Entry, owner: OwnerData):
    query = entry.query(owner) if entry.query else {}
    payload = entry.payload(owner) if entry.payload else {}
    if method == "GET":
        return client.get(path, query)
    if entry.json:
        return client.generic(
            method, path, json.dumps(payload), content_type="application/json"
        )
    if method == "POST":
        return client.post(path, payload)
    return client.generic(
        method,
        path,
        urlencode(payload),
        content_type="application/x-www-form-urlencoded",
    )


def _response_text(response) -> str:
    if getattr(response, "streaming", False):
        body = b"".join(response.streaming_content)
    else:
        body = response.content
    return body.decode("utf-8", errors="replace") + "\n" + response.get("Location", "")


def _outcome_problem(outcome: str, response) -> str | None:
    status = response.status_code
    location = response.get("Location", "")
    if outcome == NOT_FOUND and status != 404:
        return f"expected 404, got {status}"
    if outcome == OWN and status >= 500:
        return f"expected an answer below 500, got {status}"
    if outcome == REJECTED and status != 400:
        return f"expected 400, got {status}"
    if outcome == UNSIGNED and status != 401:
        return f"expected 401, got {status}"
    if outcome == NOT_ALLOWED and status != 405:
        return f"expected 405, got {status}"
    if outcome == ADMIN_REDIRECT and not (
        status == 302 and location.startswith("/admin/")
    ):
        return f"expected a redirect into /admin/, got {status} to {location!r}"
    return None


def test_every_url_pattern_has_a_matrix_entry():
    missing = [route for route in url_routes() if entry_for(route) is None]

    assert not missing, (
        "These URL patterns have no entry in MATRIX of "
        "tests/isolation/test_url_isolation.py; add one saying what another "
        f"subscriber gets there: {missing}"
    )


def test_every_matrix_entry_names_a_url_pattern():
    routes = set(url_routes())
    stale = [route for route in MATRIX if route not in routes]

    assert not stale, f"MATRIX entries for URL patterns that no longer exist: {stale}"


def test_every_parameter_has_a_value():
    unfilled = []
    for route in url_routes():
        entry = entry_for(route)
        if entry is None:
            continue
        missing = _route_parameters(route) - set(entry.params)
        if missing:
            unfilled.append((route, sorted(missing)))

    assert not unfilled, (
        f"Routes with path parameters the matrix does not fill: {unfilled}"
    )


@pytest.mark.parametrize("route", [r for r in url_routes() if entry_for(r)])
def test_outsider_gets_nothing_of_owner(route, owner_data, outsider):
    entry = entry_for(route)
    values = {name: entry.params[name](owner_data) for name in _route_parameters(route)}
    path = route_path(route, values)
    resolved = resolve(path).route.replace("^", "")
    assert resolved == route.replace("^", ""), f"{path} resolves to {resolved}"
    before = _owner_snapshot(owner_data)
    problems = []

    for method in METHODS:
        outcome = entry.expect.get(method, NOT_ALLOWED)
        response = _send(_outsider_client(outsider), method, path, entry, owner_data)

        problem = _outcome_problem(outcome, response)
        if problem:
            problems.append(f"{method} {path}: {problem}")
        text = _response_text(response)
        leaked = [
            secret
            for secret in owner_data.secrets
            if secret in text and secret not in entry.typed
        ]
        if leaked:
            problems.append(f"{method} {path} ({response.status_code}) leaked {leaked}")
        if _owner_snapshot(owner_data) != before:
            problems.append(f"{method} {path} changed the owner's data")
            before = _owner_snapshot(owner_data)

    assert not problems, "\n".join(problems)
