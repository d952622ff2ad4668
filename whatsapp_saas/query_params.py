"""Checks of an API request's query string against the parameters a view reads.

DRF ignores a parameter that no view reads, so a misspelt filter such as
`?statsu=read` would return the whole list as if it were filtered. A list
endpoint names the parameters it reads, and anything else gets a 400 that
names the parameter and the accepted ones.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from .exceptions import RequestCheckError

# Read on every API view: `user_id` by `UserIdIsCaller`, `format` by DRF's
# renderer choice. `_` is the cache-busting parameter that jQuery and other
# clients add with a timestamp, and no view reads it.
ACCEPTED_EVERYWHERE = ("user_id", "format", "_")


def query_params_check(
    request, accepted: tuple[str, ...], *, may_be_empty: tuple[str, ...] = ()
) -> None:
    """Reject a query parameter the view does not read, given twice, or empty.

    `accepted` lists the parameters the view reads, each once, besides
    ACCEPTED_EVERYWHERE. An empty value of one of them is rejected unless
    `may_be_empty` names it: a filter such as `?customer_id=`, sent by a
    client whose variable was unset, would otherwise return the whole list.
    A NUL character in a value is rejected too: PostgreSQL rejects it in a
    query, and no stored text has one. Raises RequestCheckError (400):
    `unknown_query_parameter` naming the unknown parameters and the
    accepted ones, `repeated_query_parameter` naming the parameter and its
    values, `invalid_query_parameter` for a NUL, or `empty_query_parameter`.
    """
    names = [*accepted, *ACCEPTED_EVERYWHERE]
    params = request.query_params
    unknown = [name for name in params if name not in names]
    if unknown:
        raise RequestCheckError(
            _(
                "Unknown query parameter %(unknown)s; this endpoint accepts "
                "%(accepted)s. Check the spelling, or leave it out."
            )
            % {
                "unknown": ", ".join(repr(name) for name in unknown),
                "accepted": ", ".join(names),
            },
            code="unknown_query_parameter",
            extra={"parameters": unknown, "accepted": names},
        )

    for name in names:
        values = params.getlist(name)
        if len(values) > 1:
            raise RequestCheckError(
                _("%(name)s is given %(count)s times (%(values)s); give it once.")
                % {
                    "name": name,
                    "count": len(values),
                    "values": ", ".join(repr(value) for value in values),
                },
                code="repeated_query_parameter",
                extra={"parameter": name, "values": values},
            )

    for name in names:
        if "\x00" in params.get(name, ""):
            raise RequestCheckError(
                _(
                    "%(name)s contains a NUL character (\\x00), which no stored "
                    "text contains; remove it from the value."
                )
                % {"name": name},
                code="invalid_query_parameter",
                extra={"parameter": name},
            )

    for name in accepted:
        if name in params and name not in may_be_empty and not params[name].strip():
            raise empty_query_parameter_error(name)


def empty_query_parameter_error(name: str) -> RequestCheckError:
    """Return the 400 `empty_query_parameter` error for parameter `name`."""
    return RequestCheckError(
        _("%(name)s is empty; give it a value, or leave it out.") % {"name": name},
        code="empty_query_parameter",
        extra={"parameter": name},
    )
