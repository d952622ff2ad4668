"""Grapheme-aware splitting of long texts and previews."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messaging.text import graphemes, text_preview, text_split, utf16_length

FAMILY = "👨‍👩‍👧‍👦"
WAVE_MEDIUM_DARK = "👋🏽"
FLAG_BR = "🇧🇷"


def _has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def test_utf16_length_counts_astral_characters_twice():
    assert utf16_length("👍" * 3000) == 6000


@pytest.mark.parametrize(
    ("text", "clusters"),
    [
        (FAMILY, [FAMILY]),
        (WAVE_MEDIUM_DARK, [WAVE_MEDIUM_DARK]),
        (FLAG_BR + FLAG_BR, [FLAG_BR, FLAG_BR]),
        ("e\u0301", ["e\u0301"]),
        ("\r\n", ["\r\n"]),
        ("가각", ["가", "각"]),
        ("\u1100\u1161\u11a8", ["\u1100\u1161\u11a8"]),
        ("a\u200fb", ["a", "\u200f", "b"]),
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", ["🏴󠁧󠁢󠁳󠁣󠁴󠁿"]),
        ("❤️", ["❤️"]),
    ],
)
def test_graphemes_keep_clusters_whole(text, clusters):
    assert list(graphemes(text)) == clusters


def test_text_split_keeps_short_text_whole():
    assert text_split("Olá 👋🏽") == ["Olá 👋🏽"]


def test_text_split_5000_ascii_in_two_ordered_parts():
    text = "".join(str(i % 10) for i in range(5000))

    parts = text_split(text)

    assert [len(part) for part in parts] == [4096, 904]
    assert "".join(parts) == text


def test_text_split_keeps_surrogate_pairs():
    text = "👍" * 3000

    parts = text_split(text)

    assert "".join(parts) == text
    assert [utf16_length(part) for part in parts] == [4096, 1904]
    assert not any(_has_lone_surrogate(part) for part in parts)
    assert all(set(part) == {"👍"} for part in parts)


def test_text_split_keeps_zwj_families_intact():
    text = FAMILY * 1000

    parts = text_split(text)

    assert "".join(parts) == text
    assert all(part.startswith("👨") and part.endswith("👦") for part in parts)


def test_text_split_keeps_flags_paired():
    text = "a" + FLAG_BR * 2000

    parts = text_split(text)

    for part in parts:
        flags = part.replace("a", "")
        assert flags.count("\U0001f1e7") == flags.count("\U0001f1f7")


def test_text_split_breaks_after_whitespace_near_the_end():
    text = "word " * 2000

    parts = text_split(text)

    assert all(part.endswith(" ") for part in parts[:-1])
    assert "".join(parts) == text


def test_text_split_oversized_cluster():
    text = "a" + "\u0301" * 5000

    parts = text_split(text)

    assert "".join(parts) == text
    assert all(utf16_length(part) <= 4096 for part in parts)


@given(st.text(max_size=300), st.integers(min_value=2, max_value=40))
def test_text_split_round_trips_within_limit(text, limit):
    parts = text_split(text, limit)

    assert "".join(parts) == text
    assert all(0 < utf16_length(part) <= limit for part in parts)


def test_text_preview_cuts_on_a_cluster_boundary():
    preview = text_preview("ab" + FAMILY * 5, 9)

    assert preview == "ab" + "…"


def test_text_preview_keeps_rtl_mark():
    text = "Olá 👋🏽 " + FAMILY + " مرحبا\u200f!"

    assert text_preview(text, 200) == text
