from django.urls import path

from . import views
from .api import SessionApi, SessionLogoutApi

app_name = "sessions_wa_api"

urlpatterns = [
    path("session", SessionApi.as_view(), name="session"),
    path("session/logout", SessionLogoutApi.as_view(), name="session_logout"),
    path("session/update", views.gateway_callback, name="gateway_callback"),
]
