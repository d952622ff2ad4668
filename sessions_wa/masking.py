"""Masking of personal data before it reaches a log line."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """Keep the country code area and the last two digits: +55119*******09."""
    if not phone:
        return ""
    digits = phone.lstrip("+")
    if len(digits) <= 6:
        return "*" * len(phone)
    prefix = "+" if phone.startswith("+") else ""
    return prefix + digits[:4] + "*" * (len(digits) - 6) + digits[-2:]
