"""DRF endpoints for the caller's own WhatsApp session."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from whatsapp_saas.exceptions import ApplicationError

from . import selectors, services
from .serializers import SessionRequestSerializer, SessionSerializer

ERROR_RESPONSES = {
    400: OpenApiResponse(description="`user_id` names another user, or is invalid."),
    401: OpenApiResponse(description="Not authenticated, or the token is invalid."),
    403: OpenApiResponse(
        description="The subscription is not active (code `subscription_inactive`)."
    ),
}


def _validate_body(request) -> None:
    serializer = SessionRequestSerializer(
        data=request.data, context={"request": request}
    )
    if serializer.is_valid():
        return
    errors = serializer.errors
    if "user_id" in errors:
        raise ApplicationError(
            str(errors["user_id"][0]),
            code="invalid_user_id",
            extra={"fields": errors},
        )
    raise ValidationError(errors)


class SessionApi(APIView):
    @extend_schema(
        operation_id="whatsapp_session_get",
        responses={
            200: SessionSerializer,
            404: OpenApiResponse(description="The caller never started a session."),
        },
        summary="The caller's WhatsApp session",
    )
    def get(self, request):
        session = selectors.session_get_for_user(user=request.user)
        if session is None:
            raise NotFound(_("You have no WhatsApp session yet; POST to start one."))
        return Response(SessionSerializer(session, context={"request": request}).data)

    @extend_schema(
        operation_id="whatsapp_session_start",
        request=SessionRequestSerializer,
        responses={
            200: SessionSerializer,
            201: SessionSerializer,
            **ERROR_RESPONSES,
        },
        summary="Create the caller's session if needed and start it",
        description=(
            "Moves the session to `starting` and enqueues the start on the "
            "gateway; poll GET for the QR code. A session that is already "
            "starting, waiting for a scan or connected is returned unchanged. "
            "201 when the session was created by this request, else 200."
        ),
    )
    def post(self, request):
        _validate_body(request)
        session, created = services.session_start_request(user=request.user)
        data = SessionSerializer(session, context={"request": request}).data
        return Response(
            data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class SessionLogoutApi(APIView):
    @extend_schema(
        operation_id="whatsapp_session_logout",
        request=SessionRequestSerializer,
        responses={
            200: SessionSerializer,
            400: ERROR_RESPONSES[400],
            404: OpenApiResponse(description="The caller has no session."),
        },
        summary="Log the caller's WhatsApp out",
        description=(
            "The session moves to `logged_out` and the gateway deletes the "
            "saved login, so the next start shows a new QR code."
        ),
    )
    def post(self, request):
        _validate_body(request)
        session = services.session_logout_request(user=request.user)
        if session is None:
            raise NotFound(_("You have no WhatsApp session to log out."))
        return Response(SessionSerializer(session, context={"request": request}).data)
