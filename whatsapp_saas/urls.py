"""Top-level URL map: pages, the DRF API, the signed gateway callback, admin."""

from django.contrib import admin
from django.urls import include, path, re_path

from .views import DocsPage, SchemaApi, api_not_found

# The API comes first: Django tries the patterns in order on every request,
# and the send API and the gateway's callbacks are the busiest paths. Pages
# and the API have no prefix in common, so the order changes no match.
urlpatterns = [
    path("api/settings/whatsapp/", include("sessions_wa.api_urls")),
    path("api/", include("messaging.api_urls")),
    path("api/", include("accounts.api_urls")),
    path("api/schema/", SchemaApi.as_view(), name="api-schema"),
    path(
        "api/docs/",
        DocsPage.as_view(url_name="api-schema"),
        name="api-docs",
    ),
    # After the API: the JSON 404 for every other path under /api/.
    path("api", api_not_found),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("", include("messaging.urls")),
    path("accounts/", include("accounts.urls")),
    path("settings/", include("sessions_wa.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

handler400 = "whatsapp_saas.views.bad_request"
handler404 = "whatsapp_saas.views.page_not_found"
