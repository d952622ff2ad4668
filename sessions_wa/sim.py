"""Helpers of the development-only scan the sim engine simulates."""

import phonenumbers

# The number the settings page and `manage.py sim_scan` scan with by default.
SIM_SCAN_DEFAULT_PHONE = "+5511900000009"


def sim_phone_e164(value: str) -> str | None:
    """Return a typed number in E.164, or None when it cannot be a number."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
