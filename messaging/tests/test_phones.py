"""Phone parsing, JID normalisation and the one-person match key."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from messaging.phones import (
    JidKind,
    is_customer_jid,
    is_group_jid,
    jid_kind,
    jid_to_phone,
    match_key,
    normalize_jid,
    phone_mask,
    phone_parse,
    phone_to_jid,
)

PARSED = [
    (" +55 (11) 90000-0001 ", "BR", "+5511900000001"),
    ("0055 11 90000 0001", "BR", "+5511900000001"),
    ("+55-11-90000-0001", "BR", "+5511900000001"),
    ("55.11.90000.0001", "BR", "+5511900000001"),
    ("+5511900000001@s.whatsapp.net", "BR", "+5511900000001"),
    ("tel:+5511900000001", "BR", "+5511900000001"),
    ("TEL: +55 11 90000-0001", "BR", "+5511900000001"),
    ("11 90000-0001", "BR", "+5511900000001"),
    ("(11) 90000-0001", "BR", "+5511900000001"),
    ("5511900000001", "BR", "+5511900000001"),
    ("5511900000001@c.us", "BR", "+5511900000001"),
    ("5511900000001:3@s.whatsapp.net", "BR", "+5511900000001"),
    ("+62 811 000 001", "ID", "+62811000001"),
    ("0811 000 001", "ID", "+62811000001"),
    ("+44 (0)7700 900001", "GB", "+447700900001"),
    ("07700 900001", "GB", "+447700900001"),
    ("0044 7700 900001", "GB", "+447700900001"),
    ("+39 06 0000 0001", "IT", "+390600000001"),
    ("06 0000 0001", "IT", "+390600000001"),
    ("011 15 0000-0001", "AR", "+5491100000001"),
    ("+54 9 11 0000-0001", "AR", "+5491100000001"),
    ("+52 55 0000 0001", "MX", "+525500000001"),
    ("+52 1 55 1234 5678", None, "+525512345678"),
    ("+5215512345678", "BR", "+525512345678"),
    ("00 52 1 55 1234 5678", "BR", "+525512345678"),
    ("5215512345678", None, "+525512345678"),
    ("044 55 1234 5678", "MX", "+525512345678"),
    ("045 55 1234 5678", "MX", "+525512345678"),
    ("01 55 1234 5678", "MX", "+525512345678"),
    ("1 415 555 2671", "MX", "+14155552671"),
    ("55 1234 5678", "MX", "+525512345678"),
    ("1 551 234 5678", "US", "+15512345678"),
    ("+1 (202) 555-0143", "US", "+12025550143"),
    ("(202) 555-0143", "US", "+12025550143"),
    ("+49 30 12345678", "BR", "+493012345678"),
    ("+٥٥ ١١ ٩٠٠٠٠ ٠٠٠١", "BR", "+5511900000001"),
    ("+5511900000001", "", "+5511900000001"),
    ("+5511900000001", "zz", "+5511900000001"),
    ("+5511900000001", None, "+5511900000001"),
]


@pytest.mark.parametrize(("typed", "region", "expected"), PARSED)
def test_phone_parse_returns_e164(typed, region, expected):
    assert phone_parse(typed, default_region=region) == expected


REJECTED = [
    ("+55 11 9OOOO-0001", "'O'"),
    ("+55 11 90000-0001 ext 2", "'e'"),
    ("", "no digits"),
    ("   ", "no digits"),
    ("+", "no digits"),
    ("+55 11 +90000", "start"),
    ("123", "add the country code"),
    ("+999 1234 5678", "country code"),
    ("100000000000001@lid", "lid"),
    ("120363000000000002@g.us", "group"),
    ("@s.whatsapp.net", "malformed"),
    ("1" * 70, "longer than"),
    ("11 900", "no default country"),
]


@pytest.mark.parametrize(("typed", "fragment"), REJECTED)
def test_phone_parse_rejects_with_value_named(typed, fragment):
    region = None if typed == "11 900" else "BR"

    with pytest.raises(ValidationError) as raised:
        phone_parse(typed, default_region=region)

    text = raised.value.messages[0]
    assert repr(typed)[:40] in text or "..." in text
    assert fragment in text


@pytest.mark.parametrize(
    ("region", "example"),
    [
        ("DE", "+49 1512 3456789"),
        ("GB", "+44 7400 123456"),
        ("BR", "+55 11 96123-4567"),
    ],
)
def test_phone_error_gives_country_example(region, example):
    with pytest.raises(ValidationError) as raised:
        phone_parse("12", default_region=region)

    assert f"for example {example}." in raised.value.messages[0]


@pytest.mark.parametrize(
    ("typed", "region"),
    [("+1 555 0100", None), ("+1 555 0100", "BR"), ("555 0100", "US")],
)
def test_local_only_number_asks_for_area_code(typed, region):
    with pytest.raises(ValidationError) as raised:
        phone_parse(typed, default_region=region)

    message = raised.value.messages[0]
    assert "a local number without its area code" in message
    assert "for example +1 201-555-0123." in message


@pytest.mark.parametrize(
    ("typed", "region", "example"),
    [
        ("98765-4324", "BR", "+55 11 96123-4567"),
        ("9876-5432", "BR", "+55 11 96123-4567"),
        ("15 4444-5556", "AR", "+54 9 11 2345-6789"),
        ("+54 15 4444 5556", None, "+54 9 11 2345-6789"),
        ("+54 9 15 4444 5556", None, "+54 9 11 2345-6789"),
        ("9 15 4444-5556", "AR", "+54 9 11 2345-6789"),
    ],
)
def test_number_without_area_code_asks_for_it(typed, region, example):
    with pytest.raises(ValidationError) as raised:
        phone_parse(typed, default_region=region)

    message = raised.value.messages[0]
    assert "a local number without its area code" in message
    assert f"for example {example}." in message


def test_service_number_length_rejected():
    with pytest.raises(ValidationError) as raised:
        phone_parse("91234 5678", default_region="IN")

    assert "neither a valid number in IN" in raised.value.messages[0]


@pytest.mark.parametrize(
    ("typed", "region", "e164"),
    [
        ("11 15 4444-5556", "AR", "+5491144445556"),
        ("011 15 4444-5556", "AR", "+5491144445556"),
        ("07700 900123", "GB", "+447700900123"),
    ],
)
def test_whole_numbers_still_parse(typed, region, e164):
    assert phone_parse(typed, default_region=region) == e164


def test_regionless_number_needs_country_code():
    with pytest.raises(ValidationError) as raised:
        phone_parse("98765 43210")

    assert "it has no country code" in raised.value.messages[0]


@pytest.mark.parametrize("value", [None, 5511900000001, b"+5511900000001", ["+55"]])
def test_phone_parse_rejects_non_text(value):
    with pytest.raises(ValidationError):
        phone_parse(value, default_region="BR")


JIDS = [
    ("5511900000001:3@s.whatsapp.net", "5511900000001@s.whatsapp.net"),
    ("5511900000001:3@c.us", "5511900000001@s.whatsapp.net"),
    ("5511900000001:0@s.whatsapp.net", "5511900000001@s.whatsapp.net"),
    ("5511900000001:75@s.whatsapp.net", "5511900000001@s.whatsapp.net"),
    ("5511900000001@c.us", "5511900000001@s.whatsapp.net"),
    ("5511900000001_1:2@s.whatsapp.net", "5511900000001@s.whatsapp.net"),
    ("+5511900000001@s.whatsapp.net", "5511900000001@s.whatsapp.net"),
    (" 5511900000001@S.WHATSAPP.NET ", "5511900000001@s.whatsapp.net"),
    ("100000000000001:38@lid", "100000000000001@lid"),
    ("100000000000001@lid", "100000000000001@lid"),
    ("120363000000000002@g.us", "120363000000000002@g.us"),
    ("5511900000004-1500000000@g.us", "5511900000004-1500000000@g.us"),
    ("status@broadcast", "status@broadcast"),
    ("120363000000000001@newsletter", "120363000000000001@newsletter"),
]


@pytest.mark.parametrize(("raw", "expected"), JIDS)
def test_normalize_jid(raw, expected):
    assert normalize_jid(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "@s.whatsapp.net",
        "5511900000001",
        "a@b@c",
        "55119OOOO0001@s.whatsapp.net",
        "123@38@lid",
        "0511900000001@s.whatsapp.net",
        "5511900000001@",
        "55 11@s.whatsapp.net",
        "1234567890123456@s.whatsapp.net",
    ],
)
def test_normalize_jid_rejects_malformed(raw):
    with pytest.raises(ValidationError):
        normalize_jid(raw)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("5511900000001@s.whatsapp.net", JidKind.PHONE),
        ("5511900000001@c.us", JidKind.PHONE),
        ("100000000000001@lid", JidKind.LID),
        ("120363000000000002@g.us", JidKind.GROUP),
        ("5511900000004-1500000000@g.us", JidKind.GROUP),
        ("status@broadcast", JidKind.BROADCAST),
        ("120363000000000001@newsletter", JidKind.NEWSLETTER),
        ("5511900000001@call", JidKind.OTHER),
        ("5511900000001@hosted", JidKind.OTHER),
    ],
)
def test_jid_kind(raw, kind):
    assert jid_kind(raw) == kind


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511900000001@s.whatsapp.net", True),
        ("100000000000001:38@lid", True),
        ("120363000000000002@g.us", False),
        ("status@broadcast", False),
        ("120363000000000001@newsletter", False),
        ("5511900000001@call", False),
        ("not a jid", False),
        (None, False),
    ],
)
def test_is_customer_jid_allows_only_person_servers(raw, expected):
    assert is_customer_jid(raw) is expected


def test_is_group_jid_true_for_legacy_group_id():
    assert is_group_jid("5511900000004-1500000000@g.us") is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511900000001:3@s.whatsapp.net", "+5511900000001"),
        ("551100000001@s.whatsapp.net", "+551100000001"),
        ("62811000001@c.us", "+62811000001"),
        ("100000000000001@lid", None),
        ("120363000000000002@g.us", None),
        ("status@broadcast", None),
        ("123@s.whatsapp.net", None),
        ("9991234567@s.whatsapp.net", None),
    ],
)
def test_jid_to_phone(raw, expected):
    assert jid_to_phone(raw) == expected


def test_jid_to_phone_lid_is_none():
    assert jid_to_phone("100000000000001:38@lid") is None


@pytest.mark.parametrize(
    "value", ["+5511900000001", "5511900000001", " +5511900000001 "]
)
def test_phone_to_jid_has_digits_only(value):
    assert phone_to_jid(value) == "5511900000001@s.whatsapp.net"


@pytest.mark.parametrize(
    "spellings",
    [
        # Brazil: with and without the ninth digit, in several area codes.
        [
            "+5511900000001",
            "551100000001",
            "5511900000001@s.whatsapp.net",
            "551100000001@s.whatsapp.net",
            "+55 11 9 0000-0001",
        ],
        ["+5521987654321", "552187654321"],
        ["+5585912345678", "558512345678"],
        # Argentina: 54 9 and 54 are one account.
        [
            "5491100000001",
            "541100000001",
            "+54 9 11 0000-0001",
            "5491100000001@s.whatsapp.net",
        ],
        ["+5493515551234", "+543515551234"],
        # Mexico: the retired mobile 1 after 52.
        ["+5215500000001", "+525500000001"],
    ],
)
def test_match_key_equal_for_one_person(spellings):
    keys = {
        match_key(phone_parse(value, default_region="BR") if " " in value else value)
        for value in spellings
    }
    assert len(keys) == 1


def test_match_key_equal_for_argentine_national_format():
    typed = phone_parse("011 15 0000-0001", default_region="AR")

    assert match_key(typed) == match_key("541100000001")


def test_match_key_brazil_mobile_format():
    assert match_key("+5511900000001") == "551100000001"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("+5511900000001", "+5511900000002"),
        ("+5511900000001", "+5521900000001"),
        ("+5491100000001", "+5491100000002"),
        ("+447700900001", "+4407700900001"),
        ("+390600000001", "+39600000001"),
        ("+62811000001", "+628110000011"),
    ],
)
def test_match_key_differs_for_different_people(first, second):
    assert match_key(first) != match_key(second)


def test_match_key_other_countries_are_e164_digits():
    assert match_key("+447700900001") == "447700900001"


@pytest.mark.parametrize(
    "value",
    ["", "+", "abc", "+55 11", "12", "0055119", "100000000000001@lid", None, 55],
)
def test_match_key_rejects_non_numbers(value):
    with pytest.raises(ValidationError):
        match_key(value)


def test_phone_mask_hides_middle_digits():
    assert phone_mask("+5511900000001") == "+551******0001"


def test_phone_mask_keeps_jid_server():
    assert phone_mask("5511900000001@s.whatsapp.net") == "551******0001@s.whatsapp.net"


def _total(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except ValidationError:
        return None


@given(st.text(max_size=40), st.sampled_from(["BR", "AR", "GB", "ID", "IT", "", "zz"]))
def test_phone_parse_raises_only_validation_error(text, region):
    result = _total(phone_parse, text, default_region=region)

    if result is not None:
        assert match_key(result)
        assert normalize_jid(phone_to_jid(result)).startswith(result[1:])


@given(st.text(max_size=40))
def test_jid_functions_raise_only_validation_error(text):
    _total(normalize_jid, text)
    _total(jid_to_phone, text)
    _total(match_key, text)
    assert isinstance(is_customer_jid(text), bool)
    assert isinstance(phone_mask(text), str)


@given(st.from_regex(r"\A\+?[0-9]{1,16}(:[0-9]{1,3})?@(s\.whatsapp\.net|c\.us|lid)\Z"))
def test_normalize_jid_is_idempotent(raw):
    normalised = _total(normalize_jid, raw)

    if normalised is not None:
        assert normalize_jid(normalised) == normalised
        assert ":" not in normalised
        assert "+" not in normalised
