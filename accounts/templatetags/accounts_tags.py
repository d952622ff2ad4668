"""Template tags for account state shown on every page."""

from __future__ import annotations

from django import template

from accounts.services import subscription_inactive_message

register = template.Library()


@register.simple_tag(takes_context=True)
def subscription_notice(context) -> str:
    """Return why the signed-in user may not use WhatsApp, or an empty string."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    return subscription_inactive_message(user) or ""
