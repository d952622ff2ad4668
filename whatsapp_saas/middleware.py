"""Request checks that run before Django reads a request."""

from __future__ import annotations

import logging

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)


class LengthRequiredMiddleware:
    """Middleware that rejects a request body sent in chunks with 411.

    Django reads a body only up to its Content-Length. A chunked body has
    none, so Django read an empty body: a PATCH returned 200 without
    changing anything, and a send failed on a missing field. WSGI servers
    differ in whether they pass such a body on at all, so it is rejected,
    and the error asks the client to send a Content-Length.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        encoding = request.META.get("HTTP_TRANSFER_ENCODING", "")
        if "chunked" not in encoding.lower():
            return self.get_response(request)

        logger.info(
            "Rejected a chunked request body: %s %s", request.method, request.path
        )
        message = _(
            "The request body was sent in chunks (Transfer-Encoding: chunked), "
            "which this server does not read; send it with a Content-Length "
            "header instead."
        )
        if request.path.startswith("/api/"):
            body = {"message": message, "code": "length_required", "extra": {}}
            return JsonResponse(body, status=411)
        return HttpResponse(
            message, status=411, content_type="text/plain; charset=utf-8"
        )
