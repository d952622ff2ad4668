from django.urls import path

from . import views

app_name = "sessions_wa"

urlpatterns = [
    path("", views.settings_page, name="settings"),
    path("whatsapp/card/", views.card, name="card"),
    path("whatsapp/start/", views.start, name="start"),
    path("whatsapp/disconnect/", views.disconnect, name="disconnect"),
    path("whatsapp/simulate-scan/", views.simulate_scan, name="simulate_scan"),
]
