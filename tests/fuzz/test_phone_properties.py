"""Properties of phone and JID normalisation in `messaging.phones`.

Typed numbers and JIDs come from forms, the API and the gateway, so every
public function must be total: it returns a value or raises Django's
ValidationError, whatever text it gets. A normalised value is a fixed point,
a JID built for sending never carries ``+``, spaces or a device suffix, and
every spelling of one person's number has one `match_key`.
"""

from __future__ import annotations

import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from hypothesis import assume, example, given
from hypothesis import strategies as st

from messaging.phones import (
    E164_MAX_DIGITS,
    E164_MIN_DIGITS,
    JidKind,
    is_customer_jid,
    is_group_jid,
    jid_kind,
    jid_parse,
    jid_to_phone,
    match_key,
    normalize_jid,
    phone_mask,
    phone_parse,
    phone_to_jid,
)

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
JID_SERVERS = [
    "s.whatsapp.net",
    "c.us",
    "lid",
    "g.us",
    "broadcast",
    "newsletter",
    "call",
]

regions = st.one_of(st.none(), st.sampled_from(REGIONS), st.text(max_size=4))
# Characters that phone and JID parsers treat specially, mixed into text so
# the examples reach past the first character check.
phone_alphabet = st.sampled_from("0123456789+ -.()/@:_tel٠١٢٣٤٥٦٧٨٩\u00a0\u200b")
phone_like_text = st.text(alphabet=phone_alphabet, max_size=40)
any_text = st.one_of(st.text(max_size=80), phone_like_text)
non_text = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers()),
)


@st.composite
def jid_like_text(draw):
    """Text shaped like user[:device]@server, often close to a valid JID."""
    user = draw(
        st.one_of(
            st.from_regex(
                r"\+?[0-9]{1,18}([._][0-9]{1,3})?(:[0-9]{1,4})?", fullmatch=True
            ),
            st.from_regex(r"[0-9]{6,18}-[0-9]{6,12}", fullmatch=True),
            st.text(max_size=20),
        )
    )
    server = draw(
        st.one_of(
            st.sampled_from(JID_SERVERS),
            st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True),
            st.text(max_size=12),
        )
    )
    server = draw(st.sampled_from([server, server.upper(), f" {server} "]))
    return f"{user}@{server}"


jids = st.one_of(jid_like_text(), jid_like_text(), any_text)

# JIDs of a person as engines spell them: a + typed before the digits, an
# agent or device suffix, the legacy c.us server, any letter case.
customer_jids = st.builds(
    lambda plus, digits, agent, device, server: (
        f"{plus}{digits}{agent}{device}@{server}"
    ),
    st.sampled_from(["", "+"]),
    st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True),
    st.sampled_from(["", "_1", ".0", "_12"]),
    st.one_of(st.just(""), st.integers(min_value=0, max_value=9999).map(":{}".format)),
    st.sampled_from(["s.whatsapp.net", "c.us", "lid", "S.WHATSAPP.NET", "C.us", "LID"]),
)
other_jids = st.builds(
    "{}@{}".format,
    st.text(
        alphabet=st.characters(
            exclude_categories=["Zs", "Cc", "Cs"], exclude_characters="@"
        ),
        min_size=1,
        max_size=30,
    ),
    st.one_of(
        st.sampled_from(["g.us", "broadcast", "newsletter", "call"]),
        st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True),
    ),
)
plausible_jids = st.one_of(customer_jids, other_jids, jid_like_text())


@st.composite
def valid_numbers(draw):
    """A phonenumbers-valid number, as (E.164, region of the number)."""
    region = draw(st.sampled_from(REGIONS))
    number_type = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberType.MOBILE,
                phonenumbers.PhoneNumberType.FIXED_LINE,
            ]
        )
    )
    example_number = phonenumbers.example_number_for_type(region, number_type)
    assume(example_number is not None)

    national = str(example_number.national_number)
    tail = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    national = national[:-3] + tail
    number = phonenumbers.parse(f"+{example_number.country_code}{national}", None)
    assume(phonenumbers.is_valid_number(number))
    assume(phonenumbers.region_code_for_number(number) == region)
    return phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164
    ), region


@st.composite
def typed_numbers(draw):
    """Digits a person might type: separators, a + or 00 prefix, a tel: URI."""
    digits = draw(
        st.one_of(
            valid_numbers().map(lambda number: number[0][1:]),
            st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True),
            st.from_regex(r"0[0-9]{6,12}", fullmatch=True),
        )
    )
    separators = draw(st.lists(st.sampled_from(" -.()/\u00a0"), max_size=len(digits)))
    characters = list(digits)
    for separator in separators:
        position = draw(st.integers(min_value=1, max_value=len(characters)))
        characters.insert(position, separator)
    prefix = draw(st.sampled_from(["", "+", "00", "tel:+", " +"]))
    return prefix + "".join(characters)


def _result_or_validation_error(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except ValidationError:
        return None


# Totality: nothing but ValidationError, whatever the input.


@given(value=st.one_of(any_text, typed_numbers(), non_text), region=regions)
@example(value="+55 11 9OOOO-0001", region="BR")
@example(value="٠٥٥١١٩٠٠٠٠٠٠٠١", region="BR")
@example(value="tel:", region=None)
@example(value="@", region=None)
def test_phone_parse_raises_only_validation_error(value, region):
    _result_or_validation_error(phone_parse, value, default_region=region)


@given(value=st.one_of(jids, non_text))
@example(value="5511900000001:3@s.whatsapp.net")
@example(value="100000000000001:38@lid")
@example(value="5511900000004-1500000000@g.us")
@example(value="@s.whatsapp.net")
def test_jid_functions_raise_only_validation_error(value):
    _result_or_validation_error(jid_parse, value)
    _result_or_validation_error(normalize_jid, value)
    _result_or_validation_error(jid_kind, value)
    _result_or_validation_error(jid_to_phone, value)


@given(value=st.one_of(jids, phone_like_text, non_text))
def test_jid_predicates_return_booleans(value):
    assert is_customer_jid(value) in (True, False)
    assert is_group_jid(value) in (True, False)


@given(value=st.one_of(any_text, jids, non_text))
def test_match_key_raises_only_validation_error(value):
    _result_or_validation_error(match_key, value)


@given(value=st.one_of(any_text, non_text))
def test_phone_to_jid_raises_only_validation_error(value):
    _result_or_validation_error(phone_to_jid, value)


@given(value=st.one_of(any_text, jids, non_text))
def test_phone_mask_returns_text(value):
    assert isinstance(phone_mask(value), str)


# Normalised values are fixed points.


@given(value=typed_numbers(), region=regions, other_region=regions)
@example(value="0811 000 001", region="ID", other_region="BR")
@example(value="00405249643", region="AU", other_region=None)
@example(value="+44 (0)7700 900001", region=None, other_region="GB")
def test_phone_parse_twice_equals_once(value, region, other_region):
    once = _result_or_validation_error(phone_parse, value, default_region=region)
    assume(once is not None)

    assert phone_parse(once, default_region=region) == once
    assert phone_parse(once, default_region=other_region) == once


@given(value=typed_numbers(), region=regions)
def test_phone_parse_returns_e164(value, region):
    phone = _result_or_validation_error(phone_parse, value, default_region=region)
    assume(phone is not None)

    assert phone.startswith("+")
    assert phone[1:].isascii()
    assert phone[1:].isdigit()
    assert E164_MIN_DIGITS <= len(phone) - 1 <= E164_MAX_DIGITS
    assert not phone.startswith("+0")


@given(value=plausible_jids)
@example(value="5511900000001:3@C.US")
@example(value="+5511900000001@s.whatsapp.net")
def test_normalize_jid_twice_equals_once(value):
    once = _result_or_validation_error(normalize_jid, value)
    assume(once is not None)

    assert normalize_jid(once) == once


@given(value=plausible_jids)
def test_normalized_jid_has_no_whitespace(value):
    jid = _result_or_validation_error(normalize_jid, value)
    assume(jid is not None)

    assert not any(char.isspace() for char in jid)
    assert jid.count("@") == 1


@given(value=customer_jids)
@example(value="+5511900000001:3@c.us")
@example(value="100000000000001:38@lid")
@example(value="5511900000001_1:2@s.whatsapp.net")
def test_customer_jid_has_no_plus_or_device_suffix(value):
    jid = normalize_jid(value)

    user, server = jid.split("@")
    assert server in ("s.whatsapp.net", "lid")
    assert user.isascii()
    assert user.isdigit(), f"{value!r} normalised to {jid!r}"


@given(value=typed_numbers(), region=regions)
def test_phone_jid_round_trips_to_the_same_phone(value, region):
    phone = _result_or_validation_error(phone_parse, value, default_region=region)
    assume(phone is not None)
    jid = phone_to_jid(phone)

    assert "+" not in jid
    assert jid == f"{phone[1:]}@s.whatsapp.net"
    assert jid_to_phone(jid) == phone
    assert jid_kind(jid) == JidKind.PHONE


@given(digits=st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True))
def test_lid_digits_are_never_a_phone(digits):
    assert jid_to_phone(f"{digits}@lid") is None
    assert jid_to_phone(f"{digits}:12@lid") is None


# One person, one match key.


@given(number=valid_numbers(), device=st.integers(min_value=0, max_value=99))
@example(number=("+5511900000001", "BR"), device=3)
@example(number=("+447700900001", "GB"), device=0)
@example(number=("+62811000001", "ID"), device=1)
def test_spellings_of_one_number_parse_to_one_phone(number, device):
    e164, region = number
    digits = e164[1:]
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.NATIONAL
    )
    # Where phonenumbers' own metadata does not read its national format
    # back (Gabon's old 7-digit numbers gain a 0), no parser built on it can.
    assume(phonenumbers.parse(national, region) == parsed)
    spellings = {
        "E.164": (e164, None),
        "international format": (
            phonenumbers.format_number(
                parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            ),
            None,
        ),
        "00 prefix": ("00 " + digits, None),
        "tel: URI": ("tel:" + e164, None),
        "digits without +": (digits, None),
        "national format in its region": (national, region),
        "dotted": (".".join([digits[:2], digits[2:6], digits[6:]]), None),
        "phone JID": (f"{digits}@s.whatsapp.net", None),
        "legacy JID with device": (f"{digits}:{device}@c.us", None),
    }

    for name, (spelling, default_region) in spellings.items():
        result = _result_or_validation_error(
            phone_parse, spelling, default_region=default_region
        )
        assert result == e164, (
            f"{name} {spelling!r} (region {default_region}) gave {result!r}"
        )
        assert match_key(result) == match_key(e164)


@given(number=valid_numbers(), device=st.integers(min_value=0, max_value=99))
def test_match_key_is_equal_for_number_and_jids(number, device):
    e164, _region = number
    digits = e164[1:]
    key = match_key(e164)

    assert match_key(digits) == key
    assert match_key(f"{digits}@s.whatsapp.net") == key
    assert match_key(f"{digits}:{device}@s.whatsapp.net") == key
    assert match_key(f"{digits}@c.us") == key


@given(
    area=st.integers(min_value=11, max_value=99).filter(lambda n: n % 10 != 0),
    subscriber=st.from_regex(r"[0-9]{8}", fullmatch=True),
)
@example(area=11, subscriber="00000001")
def test_brazil_ninth_digit_shares_match_key(area, subscriber):
    with_ninth = f"+55{area}9{subscriber}"
    without_ninth = f"+55{area}{subscriber}"

    assert match_key(with_ninth) == match_key(without_ninth)
    assert match_key(f"55{area}{subscriber}@s.whatsapp.net") == match_key(with_ninth)


@given(subscriber=st.from_regex(r"[0-9]{8}", fullmatch=True))
@example(subscriber="00000001")
def test_argentina_mobile_spellings_share_match_key(subscriber):
    key = match_key(f"+54911{subscriber}")
    spellings = [
        (f"54911{subscriber}@s.whatsapp.net", None),
        (f"5411{subscriber}@s.whatsapp.net", None),
        (f"+54 9 11 {subscriber[:4]}-{subscriber[4:]}", None),
        (f"011 15 {subscriber[:4]}-{subscriber[4:]}", "AR"),
    ]

    for spelling, region in spellings:
        phone = phone_parse(spelling, default_region=region)
        assert match_key(phone) == key, f"{spelling!r} gave {phone}"


@given(subscriber=st.from_regex(r"[0-9]{8}", fullmatch=True))
def test_mexico_mobile_one_shares_match_key(subscriber):
    assert match_key(f"+52155{subscriber}") == match_key(f"+5255{subscriber}")


@pytest.mark.parametrize(
    ("typed", "region", "expected"),
    [
        (" +55 (11) 90000-0001 ", None, "+5511900000001"),
        ("0055 11 90000 0001", None, "+5511900000001"),
        ("+55-11-90000-0001", None, "+5511900000001"),
        ("55.11.90000.0001", None, "+5511900000001"),
        ("+5511900000001@s.whatsapp.net", None, "+5511900000001"),
        ("tel:+5511900000001", None, "+5511900000001"),
        ("0811 000 001", "ID", "+62811000001"),
        ("+44 (0)7700 900001", None, "+447700900001"),
        ("07700 900001", "GB", "+447700900001"),
        ("+39 06 0000 0001", None, "+390600000001"),
    ],
)
def test_typed_spelling_parses_to_e164(typed, region, expected):
    assert phone_parse(typed, default_region=region) == expected
