from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import apis

app_name = "messaging_api"

router = SimpleRouter()
router.register("customers", apis.CustomerViewSet, basename="customer")

urlpatterns = [
    path("messages/send", apis.MessageSendApi.as_view(), name="message_send"),
    path("messages/", apis.MessageListApi.as_view(), name="message_list"),
    re_path(
        r"^messages/(?P<code>[0-9a-fA-F-]{32,36})/$",
        apis.MessageDetailApi.as_view(),
        name="message_detail",
    ),
    *router.urls,
]
