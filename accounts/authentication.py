"""API token authentication that loads what every API call checks next."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from .selectors import api_token_get_with_user


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, reading the user's plan and session with it.

    Sends and session calls check the subscription and the WhatsApp session
    right after authentication; reading them in the token's query saves a
    query for each. The statement is built once (`api_token_get_with_user`).
    """

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        scheme = header[0].lower() if header else b""
        if scheme == b"bearer":
            # DRF would treat the request as one without credentials.
            raise exceptions.AuthenticationFailed(
                _(
                    "The Authorization header uses the Bearer scheme; send "
                    "'Authorization: Token <token>' instead."
                )
            )
        # DRF's own messages for these cases do not say what to send.
        if scheme == b"token" and len(header) == 1:
            raise exceptions.AuthenticationFailed(
                _(
                    "The Authorization header has no token after 'Token'; send "
                    "'Authorization: Token <token>' with the token from the "
                    "Settings page."
                )
            )
        if scheme == b"token" and len(header) == 2 and not header[1].isascii():
            raise exceptions.AuthenticationFailed(
                _(
                    "The API token in the Authorization header contains "
                    "characters that no token has; send it exactly as the "
                    "Settings page shows it."
                )
            )
        if scheme == b"token" and len(header) > 2:
            raise exceptions.AuthenticationFailed(
                _(
                    "The API token in the Authorization header contains a space; "
                    "send 'Authorization: Token <token>' with the token exactly "
                    "as the Settings page shows it."
                )
            )
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        token = api_token_get_with_user(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed(
                _(
                    "The API token is not valid. Create a new one on the Settings "
                    "page and send it as 'Authorization: Token <token>'."
                )
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(
                _(
                    "The account of this API token is deactivated, so the "
                    "token cannot be used; ask the operator to reactivate it."
                )
            )
        return token.user, token
