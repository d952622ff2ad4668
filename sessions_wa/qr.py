"""QR codes drawn on the server as inline SVG from the raw QR string."""

from __future__ import annotations

import segno
from django.utils.safestring import SafeString, mark_safe


def qr_svg(data: str, *, title: str = "") -> SafeString:
    """Return an inline <svg> element that encodes `data` as a QR code.

    WhatsApp's QR strings are a few hundred ASCII characters; error level L
    keeps the symbol small enough to scan from a laptop screen. The quiet
    zone of 4 modules is the minimum the QR standard (ISO/IEC 18004) requires.
    """
    code = segno.make_qr(data, error="l")
    # segno escapes the title and writes only path data, so the markup is safe.
    svg = code.svg_inline(
        scale=4,
        border=4,
        dark="#111111",
        light="#ffffff",
        omitsize=True,
        title=title or None,
        svgclass="qr-code",
    )
    return mark_safe(svg)  # noqa: S308
