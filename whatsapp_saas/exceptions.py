"""One domain exception and one error shape for the whole API."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A business rule rejected the request; the message is shown to the user.

    `code` is a stable snake_case identifier for clients, `extra` carries the
    values the message refers to, and `status_code` is the HTTP status of the
    API response.
    """

    def __init__(self, message, *, code="invalid", extra=None, status_code=400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.status_code = status_code


class RequestCheckError(ApplicationError, exceptions.APIException):
    """An ApplicationError that a permission check raises.

    DRF's browsable API checks the permissions again for each form it may
    draw and catches only APIException there, so a plain ApplicationError
    from a permission would end that page in a 500. The handler below still
    renders this as an ApplicationError.
    """


def invalid_fields_message() -> str:
    """Return the message of a 400 whose `extra.fields` names each error."""
    return _("The request has invalid fields; see extra for each one.")


def payload_too_large_body(limit: int | None) -> dict:
    return {
        "message": (
            f"The request body is larger than {limit} bytes; send a smaller request."
        ),
        "code": "payload_too_large",
        "extra": {"max_bytes": limit},
    }


def rejected_request_body(exc: SuspiciousOperation) -> dict:
    """Return the error body for a request that Django rejected as suspicious.

    Django raises these while it reads the query string, a form or the
    Host header. Without this the client got Django's bare HTML page.
    """
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        message = _(
            "The request has more than %(limit)s query parameters or form "
            "fields; send fewer, or send the data as a JSON body."
        ) % {"limit": limit}
        return {"message": message, "code": "too_many_fields", "extra": {"max": limit}}
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        message = _("The request has more than %(limit)s files; send fewer.") % {
            "limit": limit
        }
        return {"message": message, "code": "too_many_files", "extra": {"max": limit}}
    if isinstance(exc, DisallowedHost):
        message = _(
            "The Host header does not name this server; use its address as "
            "configured in ALLOWED_HOSTS."
        )
        return {"message": message, "code": "disallowed_host", "extra": {}}
    message = _("The request is malformed (%(reason)s); check and send it again.") % {
        "reason": type(exc).__name__
    }
    return {"message": message, "code": "bad_request", "extra": {}}


def _content_type(context) -> str:
    request = context.get("request")
    return getattr(request, "content_type", "") or ""


# The start of DRF's JSONParser ParseError message.
JSON_PARSE_ERROR = "JSON parse error - "

# The start of the PermissionDenied message of DRF's SessionAuthentication
# when Django's CSRF check fails; the reason follows.
CSRF_FAILED = "CSRF Failed: "


def _request_header(context, key: str) -> str:
    """Return a header of the view's request by its META key, or ""."""
    request = context.get("request")
    return request.META.get(key, "") if request is not None else ""


def _authorization_scheme(context) -> str:
    """Return the scheme of the request's Authorization header, or ""."""
    parts = _request_header(context, "HTTP_AUTHORIZATION").split()
    return parts[0][:20] if parts else ""


def _clearer_detail(exc, context) -> tuple[dict, dict] | None:
    """Return (detail, extra) for DRF errors whose own message gives the
    client no next step, or None to keep DRF's."""
    view = context.get("view")
    default_detail = str(exceptions.NotAuthenticated.default_detail)
    if isinstance(exc, exceptions.NotAuthenticated) and exc.detail == default_detail:
        scheme = _authorization_scheme(context)
        if scheme:
            # DRF treats any scheme but Token, such as Basic, as no credentials.
            message = _(
                "The Authorization header uses the %(scheme)s scheme, which "
                "this API does not take; send 'Authorization: Token <token>' "
                "instead."
            ) % {"scheme": scheme}
        else:
            message = _(
                "The request has no credentials. Send your API token as "
                "'Authorization: Token <token>'; create one on the Settings page."
            )
        return {"detail": message}, {}

    if isinstance(exc, exceptions.NotAcceptable):
        accept = _request_header(context, "HTTP_ACCEPT")
        message = _(
            "The Accept header %(accept)s names no format this endpoint "
            "returns; accept application/json, or leave the header out."
        ) % {"accept": repr(accept[:200])}
        return {"detail": message}, {}

    if isinstance(exc, exceptions.UnsupportedMediaType):
        accepted = [parser.media_type for parser in view.get_parsers()] if view else []
        message = _(
            "The Content-Type %(type)s is not accepted here; send the body as "
            "JSON with 'Content-Type: application/json'."
        ) % {"type": repr(_content_type(context))}
        return {"detail": message}, {"accepted": accepted}

    if isinstance(exc, exceptions.MethodNotAllowed) and view is not None:
        allowed = [method for method in view.allowed_methods if method != "OPTIONS"]
        message = _("%(method)s is not allowed here; use %(allowed)s.") % {
            "method": context["request"].method,
            "allowed": get_text_list(allowed, _("or")),
        }
        return {"detail": message}, {"allowed": allowed}

    if isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith(
        CSRF_FAILED
    ):
        reason = str(exc.detail).removeprefix(CSRF_FAILED).rstrip(".")
        if "Origin" in reason or "Referer" in reason:
            message = _(
                "The request is signed in by the session cookie but its CSRF "
                "check failed (%(reason)s). Send it from this site's own "
                "pages, or authenticate with 'Authorization: Token <token>' "
                "instead of the cookie."
            ) % {"reason": reason}
        else:
            message = _(
                "The request is signed in by the session cookie but its CSRF "
                "check failed (%(reason)s). Send the csrftoken cookie's value "
                "in the X-CSRFToken header, or authenticate with "
                "'Authorization: Token <token>' instead of the cookie."
            ) % {"reason": reason}
        return {"detail": message}, {}

    if isinstance(exc, exceptions.ParseError) and str(exc.detail).startswith(
        JSON_PARSE_ERROR
    ):
        message = _(
            "The body is not valid JSON (%(error)s). Send one JSON object "
            "with the fields this endpoint reads; /api/docs/ lists them."
        ) % {"error": str(exc.detail).removeprefix(JSON_PARSE_ERROR)}
        return {"detail": message}, {}
    return None


def api_exception_handler(exc, context):
    """Render every API error as `{"message", "code", "extra"}`."""
    if isinstance(exc, ApplicationError):
        body = {"message": exc.message, "code": exc.code, "extra": exc.extra}
        return Response(body, status=exc.status_code)

    if isinstance(exc, RequestDataTooBig):
        # Raised while DRF reads a body over DATA_UPLOAD_MAX_MEMORY_SIZE;
        # Django alone would return an HTML 400 page.
        body = payload_too_large_body(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return Response(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)

    if isinstance(exc, SuspiciousOperation):
        # Logged as Django logs one it handles itself, where operators and
        # the admins' mail handler look for such requests.
        logging.getLogger(f"django.security.{type(exc).__name__}").error(
            str(exc),
            exc_info=exc,
            extra={"status_code": 400, "request": context.get("request")},
        )
        return Response(rejected_request_body(exc), status=status.HTTP_400_BAD_REQUEST)

    response = exception_handler(exc, context)
    if response is None:
        return None

    detail, extra = _clearer_detail(exc, context) or (response.data, {})
    if isinstance(exc, Http404):
        code = exceptions.NotFound.default_code
    elif isinstance(exc, PermissionDenied):
        code = exceptions.PermissionDenied.default_code
    else:
        code = getattr(exc, "default_code", "error")
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        message = str(detail["detail"])
    elif isinstance(detail, list):
        message = " ".join(str(item) for item in detail)
        extra = {}
    else:
        message = invalid_fields_message()
        extra = {"fields": detail}
    if response.status_code == status.HTTP_400_BAD_REQUEST and code == "error":
        code = "invalid"
    response.data = {"message": message, "code": code, "extra": extra}
    return response
