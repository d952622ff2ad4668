"""Project-wide views: the 404s (JSON under /api/, the styled page
elsewhere) and the API's schema and docs."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import Resolver404, get_resolver
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer

from .permissions import QueryParamsRead

API_PREFIX = "/api/"


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


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


class SchemaApi(SpectacularAPIView):
    """The OpenAPI schema, with its query parameters checked as the API's are."""

    permission_classes = [*SpectacularAPIView.permission_classes, QueryParamsRead]
    query_params = ("lang", "version")


class DocsPage(SpectacularSwaggerView):
    """Swagger UI, with its query parameters checked as the API's are."""

    permission_classes = [*SpectacularSwaggerView.permission_classes, QueryParamsRead]
    query_params = ("lang", "version", "script")
    # The page loads drf-spectacular's script from a bare `?script`.
    query_params_may_be_empty = ("script",)

    def handle_exception(self, exc):
        # The page's HTML renderer would write only the status line, so an
        # error comes as JSON, as elsewhere under /api/.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
