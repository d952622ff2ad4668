"""Phone numbers and WhatsApp JIDs: parse, normalise and match one person.

Every public function returns its result or raises Django's
`ValidationError` with a message that names the rejected value. None raises
anything else, whatever it is given, so forms, the API and the callback path
can rely on one exception.

Only three JID servers identify a person who can become a customer:
``s.whatsapp.net`` and its legacy spelling ``c.us`` (phone numbers), and
``lid`` (WhatsApp's privacy ids). Groups, status broadcasts, channels
(``newsletter``) and any server not on that list never do.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

PN_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
BROADCAST_SERVER = "broadcast"
NEWSLETTER_SERVER = "newsletter"

# Legacy and current spellings of the phone-number server.
# NOTE: Baileys 7 also has "hosted" and "hosted.lid" servers for hosted
# business accounts; they are not on the allow-list, so such senders are
# ignored until the gateway maps them to a phone or LID JID.
_PN_SERVERS = frozenset({PN_SERVER, "c.us"})

# E.164 allows at most 15 digits including the country code. The shortest
# numbers in use (Niue, Saint Helena) have 7.
E164_MIN_DIGITS = 7
E164_MAX_DIGITS = 15

# Typed input longer than this is not a phone number, whatever it contains.
_MAX_TYPED_LENGTH = 64

# Separators people type inside numbers, beside spaces: hyphen and dash
# variants, dots, slashes and parentheses.
PHONE_SEPARATORS = frozenset("-‐‑‒–—.()/")

# user[_agent|.agent][:device] for the phone and LID servers.
# Matched with fullmatch, because "$" would also accept a trailing newline.
_ADDRESS_USER_RE = re.compile(
    r"\+?(?P<digits>[0-9]{1,24})(?:[._](?P<agent>[0-9]{1,3}))?"
    r"(?::(?P<device>[0-9]{1,4}))?"
)
_SERVER_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")
_OTHER_USER_RE = re.compile(r"[^\s@]{1,128}")


class JidKind:
    """Kinds of address a JID can be."""

    PHONE = "phone"
    LID = "lid"
    GROUP = "group"
    BROADCAST = "broadcast"
    NEWSLETTER = "newsletter"
    OTHER = "other"


def jid_kind_label(kind: str) -> str:
    """Return how an error message names an address of `kind`, translated."""
    labels = {
        JidKind.PHONE: _("a WhatsApp phone address"),
        JidKind.LID: _("a WhatsApp LID address"),
        JidKind.GROUP: _("a WhatsApp group address"),
        JidKind.BROADCAST: _("a WhatsApp broadcast address"),
        JidKind.NEWSLETTER: _("a WhatsApp channel address"),
    }
    return labels.get(kind, _("an address outside WhatsApp"))


@dataclass(frozen=True)
class Jid:
    """A parsed JID: the user part without device suffix, and its server."""

    user: str
    server: str
    device: int | None = None

    @property
    def kind(self) -> str:
        if self.server == PN_SERVER:
            return JidKind.PHONE
        if self.server == LID_SERVER:
            return JidKind.LID
        if self.server == GROUP_SERVER:
            return JidKind.GROUP
        if self.server == BROADCAST_SERVER:
            return JidKind.BROADCAST
        if self.server == NEWSLETTER_SERVER:
            return JidKind.NEWSLETTER
        return JidKind.OTHER

    @property
    def is_customer(self) -> bool:
        """Whether this JID is a person who may become a customer."""
        return self.kind in (JidKind.PHONE, JidKind.LID)

    def __str__(self) -> str:
        return f"{self.user}@{self.server}"


def _invalid_jid(value, reason: str) -> ValidationError:
    return ValidationError(
        _("%(value)s is not a valid WhatsApp JID: %(reason)s"),
        code="invalid_jid",
        params={"value": value_shown(value), "reason": reason},
    )


def value_shown(value) -> str:
    """Quote a rejected value for an error message, cut to a readable size."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def jid_parse(value) -> Jid:
    """Parse a JID, dropping device and agent suffixes.

    ``c.us`` becomes ``s.whatsapp.net``, and a ``+`` typed before the digits
    of a phone JID is dropped.
    """
    if not isinstance(value, str):
        raise _invalid_jid(
            value, _("expected text such as 5511912345678@s.whatsapp.net.")
        )

    text = value.strip()
    if text.count("@") != 1:
        raise _invalid_jid(value, _("it must contain exactly one @."))

    user, server = text.split("@")
    server = server.lower()
    if not _SERVER_RE.fullmatch(server):
        raise _invalid_jid(value, _("the server after @ is missing or malformed."))

    if server in _PN_SERVERS or server == LID_SERVER:
        match = _ADDRESS_USER_RE.fullmatch(user)
        if not match:
            raise _invalid_jid(value, _("the part before @ must be digits."))
        digits = match["digits"]
        device = int(match["device"]) if match["device"] else None
        if server == LID_SERVER:
            return Jid(user=digits, server=LID_SERVER, device=device)
        if digits.startswith("0") or len(digits) > E164_MAX_DIGITS:
            raise _invalid_jid(
                value, _("a phone JID holds 1 to 15 digits with no leading 0.")
            )
        return Jid(user=digits, server=PN_SERVER, device=device)

    if not _OTHER_USER_RE.fullmatch(user):
        raise _invalid_jid(value, _("the part before @ is empty or contains spaces."))
    return Jid(user=user, server=server)


def normalize_jid(value) -> str:
    """Return the canonical form of a JID, e.g. ``5511912345678@s.whatsapp.net``."""
    return str(jid_parse(value))


def jid_kind(value) -> str:
    """Return the `JidKind` of a JID; raise ValidationError when malformed."""
    return jid_parse(value).kind


def is_customer_jid(value) -> bool:
    """Return True for a well-formed JID of a person (phone or LID)."""
    try:
        return jid_parse(value).is_customer
    except ValidationError:
        return False


def is_group_jid(value) -> bool:
    """Return True for a well-formed group JID (``...@g.us``)."""
    try:
        return jid_parse(value).kind == JidKind.GROUP
    except ValidationError:
        return False


def jid_to_phone(value) -> str | None:
    """Return the E.164 number of a phone JID, or None for any other kind.

    A LID's digits are never a phone number, so a LID gives None.
    """
    jid = jid_parse(value)
    if jid.kind != JidKind.PHONE:
        return None
    return _e164_from_digits(jid.user)


def phone_to_jid(value) -> str:
    """Return the phone JID for an E.164 number: digits only, never ``+``."""
    return f"{_e164_digits(value)}@{PN_SERVER}"


# Every inbound message reads its sender's number, and a chat's messages
# repeat it, so the results for the last 4,096 numbers are kept.
@lru_cache(maxsize=4096)
def _e164_from_digits(digits: str) -> str | None:
    if not (E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS):
        return None
    if digits.startswith("0"):
        return None
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.region_code_for_country_code(number.country_code):
        return None
    return "+" + digits


def _e164_digits(value) -> str:
    """Return the digits of an E.164 number given as ``+55...`` or digits."""
    if not isinstance(value, str):
        raise _invalid_phone(value, _("expected text such as +5511912345678."))
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    if not text.isascii() or not text.isdigit():
        raise _invalid_phone(value, _("an E.164 number is + followed by digits only."))
    if not (E164_MIN_DIGITS <= len(text) <= E164_MAX_DIGITS):
        raise _invalid_phone(
            value,
            _("an E.164 number has %(min)s to %(max)s digits.")
            % {"min": E164_MIN_DIGITS, "max": E164_MAX_DIGITS},
        )
    if text.startswith("0"):
        raise _invalid_phone(value, _("a country code never starts with 0."))
    return text


def _invalid_phone(value, reason: str) -> ValidationError:
    return ValidationError(
        _("%(value)s is not a valid phone number: %(reason)s"),
        code="invalid_phone",
        params={"value": value_shown(value), "reason": reason},
    )


def _region(default_region) -> str | None:
    if not isinstance(default_region, str):
        return None
    region = default_region.strip().upper()
    if region in phonenumbers.SUPPORTED_REGIONS:
        return region
    return None


# The example number of error messages when the country has none.
DEFAULT_EXAMPLE = "+55 11 91234-5678"


@lru_cache(maxsize=64)
def region_example(region: str | None) -> str:
    """Return an example mobile number of `region` in international format."""
    region = _region(region)
    if region is None:
        return DEFAULT_EXAMPLE
    number = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.MOBILE
    )
    if number is None:
        return DEFAULT_EXAMPLE
    return phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )


def _ascii_digits(text: str) -> str:
    # str.isdecimal() accepts digits of any script (e.g. Arabic-Indic);
    # phonenumbers reads them too, but the candidates built here need ASCII.
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


# Mexico dropped its mobile and long-distance dialing prefixes on 3 August
# 2019: the 1 after +52 in front of a mobile number, and 044, 045 and 01 in
# front of a national one. phonenumbers now rejects numbers typed with them,
# and numbers copied from older contact lists may still have them.
_MX_INTERNATIONAL_PREFIX_RE = re.compile(r"\+521(\d{10})")
_MX_NATIONAL_PREFIX_RE = re.compile(r"(?:044|045|01)(\d{10})")


def _candidates(
    text: str, digits: str, region: str | None
) -> list[tuple[str, str | None]]:
    """List (number, region) readings of typed input, most likely first."""
    if text.startswith("+"):
        return [("+" + digits, None)]
    if digits.startswith("00"):
        # The 00 international prefix, read before the national reading
        # because phonenumbers treats 00 followed by a Brazilian carrier code
        # (e.g. 0055) as a domestic long-distance call.
        return [("+" + digits[2:], None), (digits, region)]
    if region is None:
        # Without a default country, digits are E.164 without the +, the way
        # numbers are often copied from WhatsApp itself.
        return [("+" + digits, None)]
    # A national number first, then the same digits as E.164 without the +.
    return [(digits, region), ("+" + digits, None)]


def _without_mexican_prefix(
    candidates: list[tuple[str, str | None]],
) -> list[tuple[str, str | None]]:
    """Add, after each Mexican reading, the same number without a retired prefix.

    Later readings must be valid numbers, so a prefix is dropped only where
    the rest is a valid Mexican number.
    """
    readings = []
    for number, region in candidates:
        readings.append((number, region))
        if region is None:
            match = _MX_INTERNATIONAL_PREFIX_RE.fullmatch(number)
            if match:
                readings.append(("+52" + match.group(1), None))
        elif region == "MX":
            match = _MX_NATIONAL_PREFIX_RE.fullmatch(number)
            if match:
                readings.append((match.group(1), region))
    return readings


def phone_parse(value, *, default_region=None) -> str:
    """Parse a typed phone number and return it in E.164 form.

    Accepts spaces, dashes, dots, parentheses, a leading ``+`` or ``00``, a
    ``tel:`` prefix, a trunk ``0`` (``+44 (0)7700 ...``), national formats
    read in `default_region` (an ISO 3166 code such as ``"AR"``), and a phone
    JID. A number is accepted when phonenumbers finds it valid. It is also
    accepted when the input, read as typed, has a possible length for a
    mobile or fixed-line number of its country, because new ranges and the
    ranges kept for fiction (UK 07700 900xxx) are not in the validity
    tables of phonenumbers. A length that is possible only for a local call
    (seven digits after +1, eight or nine in Brazil) is rejected, and so is
    an Argentine number typed with the local mobile prefix 15 instead of
    its area code. A Mexican number typed with a prefix that Mexico dropped
    in 2019 (+52 1, or 044, 045 and 01 at home) is read without it.
    """
    if not isinstance(value, str):
        raise _invalid_phone(
            value,
            _("expected text such as %(example)s.") % {"example": DEFAULT_EXAMPLE},
        )

    text = value.strip()
    if len(text) > _MAX_TYPED_LENGTH:
        raise _invalid_phone(
            value,
            _("it is longer than %(max)s characters.") % {"max": _MAX_TYPED_LENGTH},
        )
    if text[:4].lower() == "tel:":
        text = text[4:].strip()

    if "@" in text:
        return _phone_from_typed_jid(value, text)

    for char in text:
        if not (
            char.isdecimal()
            or char.isspace()
            or char in PHONE_SEPARATORS
            or char == "+"
        ):
            raise _invalid_phone(
                value,
                _(
                    "it contains %(char)s; use only digits, spaces, dashes, dots, "
                    "parentheses and a leading +."
                )
                % {"char": repr(char)},
            )
    if text.count("+") > 1 or ("+" in text and not text.startswith("+")):
        raise _invalid_phone(value, _("a + may only stand at the start."))

    digits = _ascii_digits(text)
    if not digits:
        raise _invalid_phone(value, _("it contains no digits."))
    if len(digits) > E164_MAX_DIGITS + 4:
        raise _invalid_phone(value, _("it has too many digits."))

    region = _region(default_region)
    possible = None
    local_only_country = None
    candidates = _without_mexican_prefix(_candidates(text, digits, region))
    for index, (candidate, candidate_region) in enumerate(candidates):
        try:
            number = phonenumbers.parse(candidate, candidate_region)
        except phonenumbers.NumberParseException:
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if _e164_from_digits(e164[1:]) is None or not _e164_stable(e164):
            continue
        if phonenumbers.is_valid_number(number):
            return e164
        # Only the first reading may be merely of a possible length. A second
        # reading of the same digits must be valid, because otherwise
        # "11 90000-0001" without a region would become +1 190 000 0001.
        # A length possible only for a local call lacks the area code, and
        # WhatsApp needs the whole international number.
        if index == 0:
            lengths = _phone_lengths(number)
            if _local_mobile_prefix(number):
                local_only_country = number.country_code
            elif phonenumbers.ValidationResult.IS_POSSIBLE in lengths:
                possible = e164
            elif phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY in lengths:
                local_only_country = number.country_code
    if possible is not None:
        return possible

    # Without a + or a default country, the first digits were read as a
    # country code, so the missing country code is the likelier fault.
    if local_only_country is not None and (region or text.startswith("+")):
        country = phonenumbers.region_code_for_country_code(local_only_country)
        reason = _(
            "it is a local number without its area code; add the area code, "
            "for example %(example)s."
        ) % {"example": region_example(country)}
    elif region and not text.startswith("+"):
        reason = _(
            "it is neither a valid number in %(region)s nor a valid "
            "international number; check the digits or add the country code, "
            "for example %(example)s."
        ) % {"region": region, "example": region_example(region)}
    elif not text.startswith("+"):
        reason = _(
            "it has no country code and no default country is set to read it "
            "in; add the country code, for example %(example)s."
        ) % {"example": DEFAULT_EXAMPLE}
    else:
        reason = _(
            "the country code or the number of digits is wrong; check it "
            "against the format +<country code> <number>."
        )
    raise _invalid_phone(value, reason)


# The kinds of number a WhatsApp account can be on. A number whose length
# fits only other kinds, as nine digits do in Brazil and India, is not
# taken for a range missing from the validity tables.
_ACCOUNT_NUMBER_TYPES = (
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
)


def _phone_lengths(number) -> set:
    """Return how the number's length fits each kind of account number."""
    return {
        phonenumbers.is_possible_number_for_type_with_reason(number, kind)
        for kind in _ACCOUNT_NUMBER_TYPES
    }


def _local_mobile_prefix(number) -> bool:
    """Return whether the number starts with Argentina's local mobile 15.

    Within an area, Argentine mobiles are dialled as 15 and the subscriber
    number. So "15 4444-5556" has the length of a whole number but lacks
    its area code, and "+54 9 15 4444 5556" lacks it too, because no area
    code starts with 15.
    """
    if number.country_code != 54:
        return False
    national = str(number.national_number)
    # Also after the 9 that Argentine mobiles carry in international form.
    return (national.startswith("15") and len(national) == 10) or (
        national.startswith("915") and len(national) == 11
    )


def _e164_stable(e164: str) -> bool:
    """Return True when phonenumbers reads `e164` back as itself.

    Numbers made of leading zeros (``+31000000``) lose some of them on each
    round trip, so storing one would change it the next time it is read.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == e164
    )


def _phone_from_typed_jid(value, text: str) -> str:
    try:
        jid = jid_parse(text)
    except ValidationError:
        raise _invalid_phone(
            value, _("it looks like a WhatsApp JID but is malformed.")
        ) from None
    if jid.kind != JidKind.PHONE:
        raise _invalid_phone(
            value,
            _("it is %(kind)s, not a phone number.")
            % {"kind": jid_kind_label(jid.kind)},
        )
    phone = _e164_from_digits(jid.user)
    if phone is None:
        raise _invalid_phone(value, _("the digits before @ are not a phone number."))
    return phone


def match_key(value) -> str:
    """Return the key under which one person's number is stored once.

    Two spellings WhatsApp uses for the same account give one key:

    - Brazil: a mobile number with the ninth digit (55 + area code + 9 +
      8 digits) and the same number without it, as accounts registered
      before 2016 still appear. The key is 55 + area code + the last 8
      digits, for every area code. A landline and a pre-2016 mobile with
      the same 8 digits share a key, as they share a JID on WhatsApp.
    - Argentina: mobiles are 54 9 + 10 digits; without the 9 they are the
      same account.
    - Mexico: the mobile prefix 1 (52 1 + 10 digits), retired in 2019 but
      still found in old JIDs.

    Every other number is keyed by its E.164 digits. Accepts ``+...``,
    digits, or a phone JID.
    """
    if isinstance(value, str) and "@" in value:
        phone = jid_to_phone(value)
        if phone is None:
            raise _invalid_phone(value, _("only a phone JID has a phone number."))
        value = phone

    digits = _e164_digits(value)
    if len(digits) == 13:
        if digits.startswith("55") and digits[4] == "9":
            return digits[:4] + digits[5:]
        if digits.startswith("549"):
            return "54" + digits[3:]
        if digits.startswith("521"):
            return "52" + digits[3:]
    return digits


def phone_mask(value) -> str:
    """Mask a number or JID for logs: the first 3 and last 4 digits stay."""
    if not isinstance(value, str):
        return "?"
    user = value.split("@", 1)[0]
    digits = "".join(char for char in user if char.isascii() and char.isdigit())
    if len(digits) <= 7:
        return "*" * len(digits) or "?"
    masked = digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if "@" in value:
        return masked + "@" + value.split("@", 1)[1]
    return "+" + masked
