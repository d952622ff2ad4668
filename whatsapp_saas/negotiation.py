"""DRF's renderer choice, with a clear 400 for a `format` it does not know."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """Choose the renderer as DRF does; reject an unknown `?format=`.

    For a format that no renderer of the view has, DRF returns a 404, as
    if the path did not exist. Here it is a 400 `invalid_query_parameter`,
    as any other bad query parameter is, naming the value and the formats
    the view has. DRF chooses the renderer before it authenticates, so a
    caller without credentials gets this 400 before a 401. An Accept header
    that no renderer matches still gets DRF's 406.
    """

    def filter_renderers(self, renderers, format):
        matching = [renderer for renderer in renderers if renderer.format == format]
        if matching:
            return matching
        # Imported here: DRF reads this class while whatsapp_saas.exceptions
        # is still importing rest_framework.views.
        from .exceptions import RequestCheckError

        formats = list(dict.fromkeys(renderer.format for renderer in renderers))
        raise RequestCheckError(
            _(
                "The format %(format)s is not available; use %(formats)s, or "
                "leave format out."
            )
            % {"format": repr(format), "formats": " or ".join(formats)},
            code="invalid_query_parameter",
            extra={"parameter": "format", "accepted": formats},
        )
