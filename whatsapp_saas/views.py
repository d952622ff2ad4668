"""Project-wide error views: JSON under /api/, the styled pages elsewhere."""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


def page_not_found(request, exception):
    """Return a 404 in the API's error shape for API paths, else the 404 page."""
    if not is_api_path(request.path_info):
        return defaults.page_not_found(request, exception)

    body = {
        "message": (
            f"There is no API endpoint at {request.path_info[:200]}; the list of "
            "endpoints is at /api/docs/."
        ),
        "code": "not_found",
        "extra": {},
    }
    return JsonResponse(body, status=404)
