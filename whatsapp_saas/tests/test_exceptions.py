"""The API error shape: every error returns {"message", "code", "extra"}."""

from django.http import Http404
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from whatsapp_saas.exceptions import ApplicationError

factory = APIRequestFactory()


class NameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=3)


class RaisingView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    error = None

    def post(self, request):
        if self.error is not None:
            raise self.error
        NameSerializer(data=request.data).is_valid(raise_exception=True)


def call(error=None, data=None):
    view = RaisingView.as_view(error=error)
    response = view(factory.post("/", data or {}, format="json"))
    response.render()
    return response


def test_application_error_keeps_message_code_and_status():
    error = ApplicationError(
        "Daily quota reached.",
        code="quota_exceeded",
        extra={"limit": 5},
        status_code=429,
    )

    response = call(error)

    assert response.status_code == 429
    assert response.data == {
        "message": "Daily quota reached.",
        "code": "quota_exceeded",
        "extra": {"limit": 5},
    }


def test_http404_has_not_found_code():
    response = call(Http404("no such customer"))

    assert response.status_code == 404
    assert response.data["code"] == "not_found"


def test_invalid_fields_are_listed_in_extra():
    response = call(data={"name": "too long"})

    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert "name" in response.data["extra"]["fields"]
