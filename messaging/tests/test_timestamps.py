"""Message times in every shape the engines produce."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from messaging.timestamps import timestamp_parse

REFERENCE = datetime(2024, 6, 21, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        1719000000,
        1719000000.0,
        "1719000000",
        " 1719000000 ",
        {"low": 1719000000, "high": 0, "unsigned": True},
        1719000000000,
        "1719000000000",
        "2024-06-21T20:00:00Z",
        "2024-06-21T20:00:00.000Z",
        "2024-06-21T17:00:00-03:00",
        "2024-06-21T20:00:00",
    ],
)
def test_timestamp_parse_reads_every_shape(value):
    assert timestamp_parse(value) == REFERENCE


def test_timestamp_parse_long_with_high_word():
    # 2**32 + 5 seconds is far past 2100, so a Long with high=1 is rejected.
    assert timestamp_parse({"low": 5, "high": 1, "unsigned": True}) is None


def test_timestamp_parse_long_with_negative_low_as_unsigned():
    low = 1719000000 - 2**32  # the same bits read as a signed 32-bit int

    assert timestamp_parse({"low": low, "high": 0, "unsigned": False}) == REFERENCE


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "",
        "soon",
        "[object Object]",
        {},
        {"low": "x", "high": 0},
        [],
        0,
        -5,
        float("nan"),
        float("inf"),
        10**30,
        "99999-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
    ],
)
def test_timestamp_parse_returns_none_for_unusable_values(value):
    assert timestamp_parse(value) is None


def test_timestamp_parse_result_is_utc_aware():
    assert timestamp_parse("2024-06-21T17:00:00-03:00").tzinfo == UTC
