"""Page numbers for the API's lists, with errors that name the page."""

from __future__ import annotations

from django.core.paginator import EmptyPage, PageNotAnInteger
from django.utils.translation import gettext as _
from rest_framework import pagination

from .exceptions import ApplicationError


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's `?page=` pagination (PAGE_SIZE items a page), with clearer errors.

    A page that is not a whole number of 1 or more is a client error (400)
    that names the value. A page past the last one is 404 and names the
    last page. DRF returns 404 "Invalid page." for both.
    """

    def get_schema_operation_parameters(self, view):
        """Describe `page` as a number or 'last', which DRF's schema omits."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["description"] = (
                    "A page number from 1, or 'last' for the last page."
                )
                parameter["schema"] = {
                    "oneOf": [
                        {"type": "integer", "minimum": 1},
                        {"type": "string", "enum": ["last"]},
                    ]
                }
        return parameters

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        page_size = self.get_page_size(request)
        if not page_size:
            return None

        paginator = self.django_paginator_class(queryset, page_size)
        number = self.get_page_number(request, paginator)
        try:
            self.page = paginator.page(number)
        except PageNotAnInteger:
            raise _page_invalid(number) from None
        except EmptyPage:
            # Django's paginator has read the number as an int already.
            page = int(number)
            if page < 1:
                raise _page_invalid(number) from None
            pages = paginator.num_pages
            raise ApplicationError(
                _(
                    "Page %(page)s does not exist: the last page is %(pages)s, "
                    "with %(size)s items a page. Ask for page 1 to %(pages)s, "
                    "or 'last'."
                )
                % {"page": page, "pages": pages, "size": page_size},
                code="not_found",
                extra={"page": page, "pages": pages},
                status_code=404,
            ) from None

        if paginator.num_pages > 1 and self.template is not None:
            self.display_page_controls = True
        return list(self.page)


def _page_invalid(number) -> ApplicationError:
    return ApplicationError(
        _(
            "page must be a whole number of 1 or more, or 'last'; "
            "%(value)r is not. Leave it out for the first page."
        )
        % {"value": number},
        code="invalid_page",
        extra={"field": "page", "value": number},
    )
