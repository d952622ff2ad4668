"""DRF endpoints for account settings."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from whatsapp_saas.serializers import KnownFieldsMixin

from . import services


class ApiTokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        source="key", help_text="The new token; send it as `Authorization: Token …`."
    )
    created = serializers.DateTimeField()


class ApiTokenRotateRequestSerializer(KnownFieldsMixin, serializers.Serializer):
    """Optional body of the token rotation, which reads no field but `user_id`.

    UserIdIsCaller has checked that a `user_id` is the caller's own.
    """

    user_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Optional; when present it must be the authenticated user's id.",
    )


class ApiTokenRotateApi(APIView):
    @extend_schema(
        operation_id="auth_token_rotate",
        request=ApiTokenRotateRequestSerializer,
        responses={
            201: ApiTokenSerializer,
            400: OpenApiResponse(
                description=(
                    "The body has a field other than `user_id`, or a `user_id` "
                    "that is not the caller's."
                )
            ),
            401: OpenApiResponse(
                description="Not authenticated, or the token is invalid."
            ),
            409: OpenApiResponse(
                description=(
                    "Another rotation replaced the token this request used "
                    "before this one ran (`token_already_rotated`); nothing "
                    "changed."
                )
            ),
        },
        summary="Create or replace the caller's API token",
        description=(
            "Creates a new token and deletes the previous one, which stops "
            "working at once. The key is only returned in this response."
        ),
    )
    def post(self, request):
        body = ApiTokenRotateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # A request authenticated by its token may rotate only that token.
        replacing = getattr(request.auth, "key", None)
        token = services.api_token_rotate(user=request.user, replacing=replacing)
        return Response(ApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)
