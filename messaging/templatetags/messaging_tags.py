"""Template filters for conversations: previews and message labels."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext as _

from messaging import failures
from messaging.models import Message
from messaging.text import text_preview

register = template.Library()


@register.filter
def preview(text, limit=80):
    """Cut a message body to `limit` characters without splitting emoji."""
    if not text:
        return ""
    return text_preview(str(text), int(limit))


@register.filter
def kind_label(kind):
    """Return the readable name of a message kind, e.g. "Image"."""
    try:
        return Message.Kind(kind).label
    except ValueError:
        return _("Message")


@register.filter
def reaction_list(reactions):
    """Return the emoji of a message's reactions, in the order received."""
    if not isinstance(reactions, dict):
        return []
    return [emoji for emoji in reactions.values() if emoji]


@register.filter
def failure_reason(message):
    """Return why a failed message was not sent, in the page's language."""
    return failures.failure_reason(message)
