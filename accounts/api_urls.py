from django.urls import path

from .api import ApiTokenRotateApi

app_name = "accounts_api"

urlpatterns = [
    path("auth/token/rotate", ApiTokenRotateApi.as_view(), name="token_rotate"),
]
