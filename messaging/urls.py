from django.urls import path, register_converter

from whatsapp_saas.converters import CodeConverter

from . import views

register_converter(CodeConverter, "code")

app_name = "messaging"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("customers/", views.customer_list, name="customer_list"),
    path("customers/add/", views.customer_create, name="customer_create"),
    path("customers/import/", views.customer_import, name="customer_import"),
    path("customers/<code:code>/", views.conversation, name="conversation"),
    path(
        "customers/<code:code>/messages/",
        views.conversation_messages,
        name="conversation_messages",
    ),
    path(
        "customers/<code:code>/send/", views.conversation_send, name="conversation_send"
    ),
    path("customers/<code:code>/edit/", views.customer_update, name="customer_update"),
    path(
        "customers/<code:code>/delete/", views.customer_delete, name="customer_delete"
    ),
]
