"""Message text: grapheme clusters, WhatsApp's length limit, previews.

WhatsApp limits a text message to 4096 UTF-16 code units, so lengths here
are counted in UTF-16 units: an emoji outside the Basic Multilingual Plane
counts 2. Texts are cut only between grapheme clusters (UAX #29), so a cut
never separates an emoji from its skin tone, a ZWJ family from its members,
a flag's two regional indicators, or a letter from its combining marks.

The segmentation follows UAX #29 rules GB3 to GB13 with property values
derived from `unicodedata`, because Python ships no grapheme property table.
It differs from the standard in two places, both on the safe side (it keeps
more together): it never breaks after a ZWJ, and it treats every spacing
mark as Extend. It does not implement the Indic conjunct rule (GB9c).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from django.utils.translation import gettext_lazy as _

WHATSAPP_TEXT_LIMIT = 4096

EMPTY_MESSAGE = _("The message is empty; type the text to send.")

# A text of only whitespace and characters that show nothing is empty.
# `str.strip()` keeps the invisible ones listed here: the soft hyphen, the
# Hangul fillers, the Mongolian vowel separator, zero-width characters,
# direction marks, the word joiner, invisible operators, the blank Braille
# pattern and the byte order mark.
_BLANK_TEXT = re.compile(
    r"[\s\u00ad\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u2069\u2800\u3164\ufeff\uffa0]*\Z"
)


def text_is_blank(text: str) -> bool:
    """Return True when `text` shows nothing: whitespace and invisible
    characters only, or nothing at all."""
    return _BLANK_TEXT.match(text) is not None


_CR = "\r"
_LF = "\n"
_ZWJ = "\u200d"
_ZWNJ = "\u200c"

# Characters that join the following character (UAX #29 Prepend), limited
# to the ones in common scripts: Arabic and Syriac number signs.
_PREPEND = frozenset(
    "\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2"
)


def _is_regional_indicator(cp: int) -> bool:
    return 0x1F1E6 <= cp <= 0x1F1FF


def _hangul_type(cp: int) -> str | None:
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return "L"
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return "V"
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return "T"
    if 0xAC00 <= cp <= 0xD7A3:
        return "LV" if (cp - 0xAC00) % 28 == 0 else "LVT"
    return None


def _is_extend(char: str) -> bool:
    cp = ord(char)
    if char == _ZWNJ:
        return True
    if 0x1F3FB <= cp <= 0x1F3FF:  # emoji skin-tone modifiers
        return True
    if 0xE0020 <= cp <= 0xE007F:  # tag characters in subdivision flags
        return True
    if 0xFF9E <= cp <= 0xFF9F:  # halfwidth katakana voiced sound marks
        return True
    return unicodedata.category(char) in ("Mn", "Me", "Mc")


def _is_control(char: str) -> bool:
    if char in (_CR, _LF, _ZWJ) or _is_extend(char) or char in _PREPEND:
        return False
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cf", "Cs")


def _joins(previous: str, char: str, ri_run: int) -> bool:
    """Return True when `char` continues the cluster ending with `previous`.

    `ri_run` is the number of regional indicators that end the cluster.
    """
    if previous == _CR and char == _LF:
        return True
    if _is_control(previous) or previous in (_CR, _LF):
        return False
    if _is_control(char) or char in (_CR, _LF):
        return False

    before = _hangul_type(ord(previous))
    after = _hangul_type(ord(char))
    if before == "L" and after in ("L", "V", "LV", "LVT"):
        return True
    if before in ("LV", "V") and after in ("V", "T"):
        return True
    if before in ("LVT", "T") and after == "T":
        return True

    if _is_extend(char) or char == _ZWJ:
        return True
    if previous in _PREPEND:
        return True
    if previous == _ZWJ:
        return True
    if _is_regional_indicator(ord(previous)) and _is_regional_indicator(ord(char)):
        return ri_run % 2 == 1
    return False


def graphemes(text: str) -> Iterator[str]:
    """Yield the grapheme clusters of `text` in order."""
    if not text:
        return

    start = 0
    ri_run = 1 if _is_regional_indicator(ord(text[0])) else 0
    for index in range(1, len(text)):
        char = text[index]
        if not _joins(text[index - 1], char, ri_run):
            yield text[start:index]
            start = index
            ri_run = 0
        if _is_regional_indicator(ord(char)):
            ri_run += 1
        else:
            ri_run = 0
    yield text[start:]


def utf16_length(text: str) -> int:
    """Return the length of `text` in UTF-16 code units, as WhatsApp counts."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _split_oversized(cluster: str, limit: int) -> list[str]:
    """Cut one cluster longer than `limit` between code points."""
    pieces: list[str] = []
    current: list[str] = []
    units = 0
    for char in cluster:
        width = 2 if ord(char) > 0xFFFF else 1
        if current and units + width > limit:
            pieces.append("".join(current))
            current = []
            units = 0
        current.append(char)
        units += width
    if current:
        pieces.append("".join(current))
    return pieces


def text_split(text: str, limit: int = WHATSAPP_TEXT_LIMIT) -> list[str]:
    """Split `text` into ordered chunks of at most `limit` UTF-16 units.

    Chunks end between grapheme clusters, after the last whitespace when one
    falls in the final fifth of the chunk, so words stay whole where
    possible. Joining the chunks gives back `text` exactly. A single cluster
    longer than `limit` (thousands of combining marks) is cut between code
    points, the only case where a cluster is divided.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units.")
    if utf16_length(text) <= limit:
        return [text] if text else []

    chunks: list[str] = []
    current: list[str] = []
    units = 0
    # Position in `current` just after the last whitespace cluster, with the
    # unit count up to there.
    space_at = 0
    space_units = 0

    for cluster in graphemes(text):
        width = utf16_length(cluster)
        if width > limit:
            if current:
                chunks.append("".join(current))
                current, units, space_at, space_units = [], 0, 0, 0
            pieces = _split_oversized(cluster, limit)
            chunks.extend(pieces[:-1])
            current = [pieces[-1]]
            units = utf16_length(pieces[-1])
            continue

        if units + width > limit:
            if space_at and space_units * 5 >= limit * 4:
                chunks.append("".join(current[:space_at]))
                current = current[space_at:]
                units -= space_units
            else:
                chunks.append("".join(current))
                current, units = [], 0
            space_at = 0
            space_units = 0
            if units + width > limit:
                chunks.append("".join(current))
                current, units = [], 0

        current.append(cluster)
        units += width
        if cluster.isspace():
            space_at = len(current)
            space_units = units

    if current:
        chunks.append("".join(current))
    return chunks


def text_preview(text: str, limit: int = 80) -> str:
    """Return `text` cut to `limit` UTF-16 units on a cluster boundary.

    A cut text ends with an ellipsis, which counts toward the limit.
    """
    flat = " ".join(text.split())
    if utf16_length(flat) <= limit:
        return flat

    kept: list[str] = []
    units = 0
    for cluster in graphemes(flat):
        width = utf16_length(cluster)
        if units + width > limit - 1:
            break
        kept.append(cluster)
        units += width
    return "".join(kept).rstrip() + "…"
