"""The settings page with the WhatsApp card, and the gateway callback endpoint."""

from __future__ import annotations

import json
import logging
import math

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.forms import DefaultCountryForm
from accounts.selectors import api_token_get_for_user
from accounts.services import subscription_inactive_message
from whatsapp_saas.exceptions import ApplicationError

from . import reasons, selectors, services
from .masking import mask_phone
from .models import WhatsAppSession
from .qr import qr_svg
from .signing import SignatureError, verify_request
from .sim import SIM_SCAN_DEFAULT_PHONE, sim_phone_e164

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("whatsapp_saas.security")

State = WhatsAppSession.State

# Seconds between card refreshes while something is about to change.
POLL_SECONDS_PENDING = 2
POLL_SECONDS_RECONNECTING = 5


def _card_context(request, *, sim_phone: str = "", sim_error: str = "") -> dict:
    user = request.user
    session = selectors.session_get_for_user(user=user)
    state = session.state if session else State.NEW
    error_code = session.last_error_code if session else ""

    context = {
        "session": session,
        "state": state,
        "states": State,
        "error_message": "",
        "qr_svg": "",
        "poll_seconds": None,
        "show_sim": False,
        "sim_phone": sim_phone or SIM_SCAN_DEFAULT_PHONE,
        "sim_error": sim_error,
        "subscription_message": subscription_inactive_message(user),
        "unreachable_message": "",
    }
    if session is not None:
        context["error_message"] = (
            reasons.reason_message(error_code) or session.last_error
        )
    if session is not None and session.gateway_unreachable_since is not None:
        context["unreachable_message"] = reasons.gateway_unreachable_message(
            session.gateway_unreachable_since
        )

    if state in (State.STARTING, State.QR_PENDING):
        context["poll_seconds"] = POLL_SECONDS_PENDING
    elif state == State.DISCONNECTED and error_code in (
        reasons.NETWORK,
        reasons.RESTART,
    ):
        context["poll_seconds"] = POLL_SECONDS_RECONNECTING

    if state == State.QR_PENDING and session.qr:
        context["qr_svg"] = qr_svg(session.qr, title=_("QR code to link WhatsApp"))
        context["show_sim"] = selectors.gateway_engine_get(user=user) == "sim"
    return context


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
@require_GET
def settings_page(request):
    token = api_token_get_for_user(user=request.user)
    context = {
        **_card_context(request),
        "country_form": DefaultCountryForm(
            initial={"default_country": request.user.default_country}
        ),
        "api_token": token,
    }
    return render(request, "sessions_wa/settings.html", context)


@login_required
@require_GET
def card(request):
    """Render the WhatsApp card alone. The page polls it while a change is pending."""
    return render(request, "sessions_wa/_card.html", _card_context(request))


@login_required
@require_POST
def start(request):
    try:
        services.session_start_request(user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)

    if _is_htmx(request):
        return render(request, "sessions_wa/_card.html", _card_context(request))
    return redirect("sessions_wa:settings")


@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request):
    """Ask for confirmation on GET; log the session out on POST."""
    session = selectors.session_get_for_user(user=request.user)
    if session is None:
        raise Http404("No WhatsApp session.")

    if request.method == "GET":
        return render(
            request, "sessions_wa/disconnect_confirm.html", {"session": session}
        )

    services.session_logout_request(user=request.user)
    messages.success(
        request,
        _(
            "WhatsApp is disconnected and this computer is being removed from "
            "your phone's linked devices."
        ),
    )
    return redirect("sessions_wa:settings")


@login_required
@require_POST
def simulate_scan(request):
    """Development only: the sim engine pairs the shown QR code with a number."""
    from .tasks import session_sim_scan

    session = selectors.session_get_for_user(user=request.user)
    if session is None or selectors.gateway_engine_get(user=request.user) != "sim":
        raise Http404("Simulated scans need the gateway's sim engine.")

    raw_phone = request.POST.get("phone", "").strip() or SIM_SCAN_DEFAULT_PHONE
    phone = sim_phone_e164(raw_phone)
    if phone is None:
        error = _(
            "“%(value)s” is not a valid phone number; type it with the country "
            "code, such as +5511900000009."
        ) % {"value": raw_phone}
        if not _is_htmx(request):
            messages.error(request, error)
            return redirect("sessions_wa:settings")
        # htmx swaps only 2xx responses, so the error is returned with a 200.
        context = _card_context(request, sim_phone=raw_phone, sim_error=error)
        return render(request, "sessions_wa/_card.html", context)

    session_sim_scan.apply_async(
        args=[session.pk, phone],
        argsrepr=repr([session.pk, mask_phone(phone)]),
    )
    if _is_htmx(request):
        return render(request, "sessions_wa/_card.html", _card_context(request))
    return redirect("sessions_wa:settings")


def _error(message: str, code: str, status: int) -> JsonResponse:
    # The shape of every API error, with nothing more to add in `extra`.
    return JsonResponse({"message": message, "code": code, "extra": {}}, status=status)


def _json_constant_reject(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


@csrf_exempt
def gateway_callback(request):
    """Receive a signed batch of gateway events.

    Returns 405 for a method other than POST, 413 before reading a body over
    WA_CALLBACK_MAX_BYTES, 401 for a missing or wrong signature, 400 for
    malformed JSON or events (nothing is applied), and 200 {accepted,
    duplicates} once the batch is committed. Errors are JSON in the API's
    shape.
    """
    if request.method != "POST":
        response = _error(
            f"The gateway callback takes POST, not {request.method[:20]}.",
            "method_not_allowed",
            405,
        )
        response["Allow"] = "POST"
        return response

    max_bytes = settings.WA_CALLBACK_MAX_BYTES
    too_large = _error(
        f"The callback body is larger than {max_bytes} bytes; send fewer events "
        "per request.",
        "payload_too_large",
        413,
    )
    try:
        declared_length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error("The Content-Length header is not a number.", "invalid", 400)
    if declared_length > max_bytes:
        return too_large

    try:
        body = request.body
    except RequestDataTooBig:
        return too_large
    if len(body) > max_bytes:
        return too_large

    try:
        verify_request(request)
    except SignatureError as error:
        security_logger.warning(
            "Rejected gateway callback from %s: %s",
            request.META.get("REMOTE_ADDR", "unknown address"),
            error,
        )
        return _error(str(error), "invalid_signature", 401)

    try:
        payload = json.loads(
            body, parse_constant=_json_constant_reject, parse_float=_json_float
        )
    except ValueError as error:
        # Also an integer too long to convert (Python caps them at 4300
        # digits), NaN, Infinity and floats too large to hold.
        return _error(f"The body is not valid JSON: {error}.", "invalid_json", 400)
    except RecursionError:
        return _error("The body's JSON nests too deeply.", "invalid_json", 400)

    try:
        result = services.gateway_events_apply(payload)
    except ApplicationError as error:
        logger.warning("Rejected gateway callback batch: %s", error.message)
        body = {"message": error.message, "code": error.code, "extra": error.extra}
        return JsonResponse(body, status=error.status_code)
    return JsonResponse(result)
