"""DRF endpoints for account settings."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services


class ApiTokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        source="key", help_text="The new token; send it as `Authorization: Token …`."
    )
    created = serializers.DateTimeField()


class ApiTokenRotateApi(APIView):
    @extend_schema(
        operation_id="auth_token_rotate",
        request=None,
        responses={
            201: ApiTokenSerializer,
            401: OpenApiResponse(
                description="Not authenticated, or the token is invalid."
            ),
        },
        summary="Create or replace the caller's API token",
        description=(
            "Creates a new token and deletes the previous one, which stops "
            "working at once. The key is only returned in this response."
        ),
    )
    def post(self, request):
        token = services.api_token_rotate(user=request.user)
        return Response(ApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)
