"""The product's URLs plus `bench/noop`, a DRF view that does nothing."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from whatsapp_saas.urls import urlpatterns as product_urlpatterns


class NoopApi(APIView):
    """Authenticate the caller like every API view, then return an empty body.

    Its request rate is the ceiling of this gunicorn for an API call: the
    cost of the WSGI server, middleware, DRF and token authentication alone.
    """

    def get(self, request):
        return Response({})

    def post(self, request):
        return Response({})


urlpatterns = [
    path("bench/noop", NoopApi.as_view(), name="bench-noop"),
    *product_urlpatterns,
]
