"""API-wide checks that run before every DRF view."""

from __future__ import annotations

from django.http import QueryDict
from django.utils.translation import gettext as _
from rest_framework.permissions import BasePermission


def _user_id_values(request) -> list:
    values = list(request.query_params.getlist("user_id"))
    data = request.data
    if isinstance(data, QueryDict):
        values.extend(data.getlist("user_id"))
    elif isinstance(data, dict) and data.get("user_id") is not None:
        values.append(data["user_id"])
    return values


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def user_id_check(request) -> None:
    """Reject a `user_id` in the query string or body that is not the caller's.

    Raises RequestCheckError (400, code `invalid_user_id`) naming the value.
    """
    # Imported here: DRF imports this module while whatsapp_saas.exceptions
    # is still importing rest_framework.views.
    from .exceptions import RequestCheckError

    for value in _user_id_values(request):
        number = _as_int(value)
        if number is None:
            message = _(
                "user_id must be an integer; leave it out, every request acts "
                "for the authenticated user."
            )
        elif number != request.user.pk:
            message = _(
                "user_id %(number)s is not the authenticated user; leave it "
                "out, every request acts for the authenticated user."
            ) % {"number": number}
        else:
            continue
        raise RequestCheckError(
            message,
            code="invalid_user_id",
            extra={"fields": {"user_id": [message]}},
        )


def _handled(request, view) -> bool:
    # A method the view does not handle gets its 405 from DRF.
    return getattr(view, request.method.lower(), None) is not None


class UserIdIsCaller(BasePermission):
    """Runs user_id_check for authenticated callers of every API view.

    An optional `user_id` is accepted only when it is the caller's own id,
    the same way on every endpoint, so a client bug can never look like it
    acted for another account.
    """

    def has_permission(self, request, view) -> bool:
        if (
            _handled(request, view)
            and request.user is not None
            and request.user.is_authenticated
        ):
            user_id_check(request)
        return True


class QueryParamsRead(BasePermission):
    """Runs query_params_check with the query parameters the view reads.

    A view names them in `query_params`, and those that may be empty in
    `query_params_may_be_empty`. A view whose actions read different ones
    defines `query_params_for(request)`, which returns both. A view that
    names none reads only those of every endpoint, so a DELETE with
    `?dry_run=1` gets 400 instead of deleting. drf-spectacular's schema and
    docs views set their own permission classes, so `SchemaApi` and
    `DocsPage` in whatsapp_saas.views add this one to them.
    """

    def has_permission(self, request, view) -> bool:
        if _handled(request, view) and request.query_params:
            # Imported here for the same reason as in user_id_check.
            from .query_params import query_params_check

            read_by = getattr(view, "query_params_for", None)
            if read_by is not None:
                accepted, may_be_empty = read_by(request)
            else:
                accepted = getattr(view, "query_params", ())
                may_be_empty = getattr(view, "query_params_may_be_empty", ())
            query_params_check(request, accepted, may_be_empty=may_be_empty)
        return True
