from django.urls import path  # noqa: F401

app_name = "sessions_wa_api"

urlpatterns = []
