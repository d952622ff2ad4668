"""Path converters shared by the pages' URL patterns."""

from __future__ import annotations

import uuid


class CodeConverter:
    """A row's public UUID in a page's path, in any case, hyphens optional.

    Django's `uuid` converter takes only the lower-case hyphenated form, so
    an id written in upper case, or without hyphens as the API accepts it,
    would get 404. Reversing writes the usual form.
    """

    regex = "[0-9a-fA-F-]{32,36}"

    def to_python(self, value: str) -> uuid.UUID:
        # A ValueError makes Django try the next pattern, so it ends in 404.
        return uuid.UUID(value)

    def to_url(self, value) -> str:
        return str(value)
