"""Country choices for the default region of typed phone numbers.

The region codes are the ones the `phonenumbers` library can parse, and the
names come from its bundled locale data, so no list is maintained here.
"""

from __future__ import annotations

import functools

import phonenumbers
from django.utils.translation import get_language
from phonenumbers.geodata.locale import LOCALE_DATA

# Non-geographic entities such as "001" are not countries a user types in.
REGION_CODES = frozenset(
    region for region in phonenumbers.SUPPORTED_REGIONS if region.isalpha()
)

# Regions that phonenumbers 9.0 parses but has no locale name for.
FALLBACK_NAMES = {"AC": "Ascension Island", "TA": "Tristan da Cunha", "XK": "Kosovo"}


def _locale_language() -> str:
    # The locale data is keyed by ISO 639-1 code: "zh-hans" reads "zh".
    language = (get_language() or "en").split("-")[0].lower()
    return language or "en"


def country_name(region: str, language: str | None = None) -> str:
    """Return the display name of `region` in `language`, or the code itself."""
    names = LOCALE_DATA.get(region)
    if not names:
        return FALLBACK_NAMES.get(region, region)

    name = names.get(language or _locale_language()) or names.get("en")
    # An entry "*xx" reuses the spelling stored under language "xx".
    for _ in range(4):
        if not name or not name.startswith("*"):
            break
        name = names.get(name[1:])
    return name or FALLBACK_NAMES.get(region, region)


def country_choices() -> list[tuple[str, str]]:
    """Return (region code, "Name (+code)") pairs sorted by name."""
    return list(_country_choices_for(_locale_language()))


@functools.cache
def _country_choices_for(language: str) -> tuple[tuple[str, str], ...]:
    choices = []
    for region in REGION_CODES:
        calling_code = phonenumbers.country_code_for_region(region)
        label = f"{country_name(region, language)} (+{calling_code})"
        choices.append((region, label))
    return tuple(sorted(choices, key=lambda choice: choice[1].casefold()))
