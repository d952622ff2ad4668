"""Project-wide error views: JSON under /api/, the styled pages elsewhere."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import Resolver404, get_resolver
from django.views import defaults

API_PREFIX = "/api/"


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


def page_not_found(request, exception):
    """Return a 404 in the API's error shape for API paths, else the 404 page."""
    if not is_api_path(request.path_info):
        return defaults.page_not_found(request, exception)
    return api_not_found(request)


def api_not_found(request, path=""):
    """Return the API's JSON 404 for a path that no API endpoint serves.

    The URL map routes every other path under /api/ here, so a client gets
    JSON under DEBUG too, where Django would render its HTML debug page.
    A path that exists with a trailing slash gets that path in the message,
    instead of the redirect a browser would get.
    """
    path_shown = request.path_info[:200]
    slashed = f"{request.path_info}/"
    if not request.path_info.endswith("/") and _is_endpoint(slashed):
        hint = f"use {slashed[:201]} instead"
    else:
        hint = "the list of endpoints is at /api/docs/"
    body = {
        "message": f"There is no API endpoint at {path_shown}; {hint}.",
        "code": "not_found",
        "extra": {},
    }
    return JsonResponse(body, status=404)


def _is_endpoint(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return match.func is not api_not_found
