"""Reads scoped to the requesting subscriber."""

from __future__ import annotations

from functools import cache

from django.db import connection
from rest_framework.authtoken.models import Token

from whatsapp_saas.queries import model_columns, prepared_cursor, row_model

from .models import Subscription, User


def subscription_get_for_user(*, user: User) -> Subscription | None:
    """Return the user's subscription, or None when the account has none."""
    return Subscription.objects.filter(user=user).first()


def api_token_get_for_user(*, user: User) -> Token | None:
    """Return the user's API token row, or None when none was created."""
    return Token.objects.filter(user=user).first()


KEY_MAX_LENGTH = Token._meta.get_field("key").max_length


@cache
def _token_statement(vendor: str):
    """Build the SELECT of a token with its user, plan and WhatsApp session.

    It reads the rows `select_related("user", "user__subscription",
    "user__whatsapp_session")` reads. The ORM compiled that query on every
    request, which took longer than the rest of a no-op API request here.
    """
    quote = connection.ops.quote_name
    session_model = User._meta.get_field("whatsapp_session").related_model
    models = [Token, User, Subscription, session_model]
    plans = [
        model_columns(model, alias, vendor)
        for model, alias in zip(models, "tusw", strict=True)
    ]
    token_user = quote(Token._meta.get_field("user").column)
    user_pk = quote(User._meta.pk.column)
    subscription_user = quote(Subscription._meta.get_field("user").column)
    session_user = quote(session_model._meta.get_field("user").column)
    sql = (
        f"SELECT {', '.join(column for plan in plans for column in plan[0])} "
        f"FROM {quote(Token._meta.db_table)} {quote('t')} "
        f"INNER JOIN {quote(User._meta.db_table)} {quote('u')} "
        f"ON {quote('u')}.{user_pk} = {quote('t')}.{token_user} "
        f"LEFT OUTER JOIN {quote(Subscription._meta.db_table)} {quote('s')} "
        f"ON {quote('s')}.{subscription_user} = {quote('u')}.{user_pk} "
        f"LEFT OUTER JOIN {quote(session_model._meta.db_table)} {quote('w')} "
        f"ON {quote('w')}.{session_user} = {quote('u')}.{user_pk} "
        f"WHERE {quote('t')}.{quote(Token._meta.pk.column)} = %s"
    )
    return sql, models, plans


def api_token_get_with_user(*, key: str) -> Token | None:
    """Return the API token `key` with its user, plan and session loaded.

    Reading `token.user`, its `subscription` or its `whatsapp_session` then
    costs no query. A missing plan or session is cached as missing, so
    reading it raises DoesNotExist as usual. Returns None for an unknown key.
    """
    # No stored key is longer or contains NUL, and PostgreSQL raises an
    # error for a NUL in a query where it should find no token.
    if len(key) > KEY_MAX_LENGTH or "\x00" in key:
        return None

    sql, models, plans = _token_statement(connection.vendor)
    # Every API request runs it, and planning the four-table join took
    # longer than running it. It reads by primary and unique keys, so the
    # generic plan PostgreSQL keeps is the one any key gets.
    with prepared_cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None

    rows = []
    start = 0
    for model, plan in zip(models, plans, strict=True):
        end = start + len(plan[1])
        rows.append(row_model(model, plan, row[start:end]))
        start = end
    token, user, subscription, session = rows

    Token._meta.get_field("user").set_cached_value(token, user)
    for name, related in (
        ("subscription", subscription),
        ("whatsapp_session", session),
    ):
        User._meta.get_field(name).set_cached_value(user, related)
        if related is not None:
            related._meta.get_field("user").set_cached_value(related, user)
    return token
