"""Checks of an API request's query string against the parameters a view reads.

DRF ignores a parameter that no view reads, so a misspelt filter such as
`?statsu=read` would return the whole list as if it were filtered. A list
endpoint names the parameters it reads, and anything else gets a 400 that
names the parameter and the accepted ones.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from .exceptions import ApplicationError

# Read on every API view: `user_id` by `UserIdIsCaller`, `format` by DRF's
# renderer choice. `_` is the cache-busting parameter that jQuery and other
# clients add with a timestamp, and no view reads it.
ACCEPTED_EVERYWHERE = ("user_id", "format", "_")


def query_params_check(request, accepted: tuple[str, ...]) -> None:
    """Reject a query parameter the view does not read, or one given twice.

    `accepted` lists the parameters the view reads, each once, besides
    ACCEPTED_EVERYWHERE. Raises ApplicationError (400):
    `unknown_query_parameter` naming the unknown parameters and the
    accepted ones, or `repeated_query_parameter` naming the parameter and
    its values.
    """
    names = [*accepted, *ACCEPTED_EVERYWHERE]
    params = request.query_params
    unknown = [name for name in params if name not in names]
    if unknown:
        raise ApplicationError(
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
            raise ApplicationError(
                _("%(name)s is given %(count)s times (%(values)s); give it once.")
                % {
                    "name": name,
                    "count": len(values),
                    "values": ", ".join(repr(value) for value in values),
                },
                code="repeated_query_parameter",
                extra={"parameter": name, "values": values},
            )
