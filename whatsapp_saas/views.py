"""Project-wide views: the 400 and 404 handlers (JSON under /api/, the
styled page elsewhere) and the API's schema and docs."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import JsonResponse
from django.urls import Resolver404, get_resolver
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer

from .exceptions import RequestCheckError, rejected_request_body
from .permissions import QueryParamsRead, UserIdIsCaller

API_PREFIX = "/api/"


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


def bad_request(request, exception):
    """Return a 400 in the API's error shape for API paths, else the 400 page.

    Django calls this for a request it rejects before any view runs, such
    as one with too many query parameters or a Host it does not serve.
    """
    if not is_api_path(request.path_info):
        return defaults.bad_request(request, exception)
    if isinstance(exception, SuspiciousOperation):
        body = rejected_request_body(exception)
    else:
        body = {
            "message": _("The request is malformed; check and send it again."),
            "code": "bad_request",
            "extra": {},
        }
    return JsonResponse(body, status=400)


def page_not_found(request, exception):
    """Return a 404 in the API's error shape for API paths, else the 404 page."""
    if not is_api_path(request.path_info):
        return defaults.page_not_found(request, exception)
    return api_not_found(request)


# API clients authenticate with a token, so a POST to a mistyped path is no
# cross-site form. Without the exemption, Django's CSRF check rejected it
# with its HTML 403 page before this view ran.
@csrf_exempt
def api_not_found(request, path=""):
    """Return the API's JSON 404 for a path that no API endpoint serves.

    The URL map routes every other path under /api/ here, so a client gets
    JSON under DEBUG too, where Django would render its HTML debug page.
    When the path with the trailing slash added or removed is an endpoint,
    the message names it. A POST cannot follow APPEND_SLASH's redirect.
    """
    path_info = request.path_info
    other = path_info[:-1] if path_info.endswith("/") else f"{path_info}/"
    if other and _is_endpoint(other):
        message = _("There is no API endpoint at %(path)s; use %(other)s instead.")
    else:
        message = _(
            "There is no API endpoint at %(path)s; the list of endpoints is at "
            "/api/docs/."
        )
    body = {
        "message": message % {"path": path_info[:200], "other": other[:201]},
        "code": "not_found",
        "extra": {},
    }
    # Compact, as DRF writes the API's other responses.
    return JsonResponse(body, status=404, json_dumps_params={"separators": (",", ":")})


def _is_endpoint(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return match.func is not api_not_found


class _SchemaChecks:
    """Query parameter checks, JSON errors and JSON OPTIONS for the schema
    and docs views, as elsewhere under /api/.

    The schema's own renderers would write an error as if it were the
    schema, and the docs page's HTML renderer only the status line. Its
    OPTIONS response had no template at all and ended in a 500.
    """

    query_params = ("lang",)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        lang = request.query_params.get("lang")
        languages = [code for code, _name in settings.LANGUAGES]
        if lang is not None and lang not in languages:
            message = _(
                "lang %(value)s is not a language of this site; use %(languages)s."
            ) % {"value": repr(lang), "languages": get_text_list(languages, _("or"))}
            raise RequestCheckError(
                message,
                code="invalid_query_parameter",
                extra={"parameter": "lang", "accepted": languages},
            )

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self._render_json()
        return response

    def options(self, request, *args, **kwargs):
        response = super().options(request, *args, **kwargs)
        self._render_json()
        return response

    def _render_json(self):
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type


class SchemaApi(_SchemaChecks, SpectacularAPIView):
    """The OpenAPI schema, with its query parameters checked as the API's are."""

    permission_classes = [
        *SpectacularAPIView.permission_classes,
        UserIdIsCaller,
        QueryParamsRead,
    ]


class DocsPage(_SchemaChecks, SpectacularSwaggerView):
    """Swagger UI, with its query parameters checked as the API's are."""

    permission_classes = [
        *SpectacularSwaggerView.permission_classes,
        UserIdIsCaller,
        QueryParamsRead,
    ]
    query_params = ("lang", "script")
    # The page loads drf-spectacular's script from a bare `?script`.
    query_params_may_be_empty = ("script",)
