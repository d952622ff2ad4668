"""DRF's renderer choice, with a clear 400 for a `format` it does not know."""

from __future__ import annotations

from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """Choose the renderer as DRF does; reject an unknown or empty `?format=`.

    For a format that no renderer of the view has, DRF returns a 404, as
    if the path did not exist, and it reads an empty one as none. Here both
    are a 400, as any other bad query parameter is. An unknown format gets
    `invalid_query_parameter` naming the formats the view has, and an empty
    one `empty_query_parameter`. DRF chooses the renderer before it
    authenticates, so a caller without credentials gets this 400 before a
    401. An Accept header that no renderer matches still gets DRF's 406.

    The errors are imported in the methods because DRF reads this class
    while whatsapp_saas.exceptions is still importing rest_framework.views.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        name = self.settings.URL_FORMAT_OVERRIDE
        if name and name in request.query_params and not request.query_params[name]:
            from .query_params import empty_query_parameter_error

            raise empty_query_parameter_error(name)
        return super().select_renderer(request, renderers, format_suffix)

    def filter_renderers(self, renderers, format):
        matching = [renderer for renderer in renderers if renderer.format == format]
        if matching:
            return matching

        from .exceptions import RequestCheckError

        formats = list(dict.fromkeys(renderer.format for renderer in renderers))
        raise RequestCheckError(
            _(
                "The format %(format)s is not available; use %(formats)s, or "
                "leave format out."
            )
            % {"format": repr(format), "formats": get_text_list(formats, _("or"))},
            code="invalid_query_parameter",
            extra={"parameter": "format", "accepted": formats},
        )
