from django.urls import path

from . import views

app_name = "messaging"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("customers/", views.customer_list, name="customer_list"),
    path("customers/add/", views.customer_create, name="customer_create"),
    path("customers/import/", views.customer_import, name="customer_import"),
    path("customers/<uuid:code>/", views.conversation, name="conversation"),
    path(
        "customers/<uuid:code>/messages/",
        views.conversation_messages,
        name="conversation_messages",
    ),
    path(
        "customers/<uuid:code>/send/", views.conversation_send, name="conversation_send"
    ),
    path("customers/<uuid:code>/edit/", views.customer_update, name="customer_update"),
    path(
        "customers/<uuid:code>/delete/", views.customer_delete, name="customer_delete"
    ),
]
