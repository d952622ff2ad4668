from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import GatewayEvent, WhatsAppSession


@admin.register(WhatsAppSession)
class WhatsAppSessionAdmin(admin.ModelAdmin):
    list_display = (
        "session_key",
        "user",
        "state",
        "phone",
        "connected_since",
        "last_error_code",
        "gateway_unreachable_since",
        "last_activity_at",
        "updated_at",
    )
    list_filter = ("state", "user__subscription__plan", "user__subscription__status")
    search_fields = ("user__email", "phone", "session_key", "jid")
    list_select_related = ("user",)
    ordering = ("-updated_at",)
    actions = ["force_logout"]
    # State changes go through the services, so an operator cannot put a
    # session into a state the transition table forbids.
    readonly_fields = [field.name for field in WhatsAppSession._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(
        description=_("Force logout (wipes the saved WhatsApp login)"),
        permissions=["change"],
    )
    def force_logout(self, request, queryset):
        count = 0
        for session in queryset.select_related("user"):
            if services.session_logout_request(user=session.user) is not None:
                count += 1
        self.message_user(
            request,
            ngettext(
                "Logout requested for %(count)d session.",
                "Logout requested for %(count)d sessions.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(GatewayEvent)
class GatewayEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "type", "outcome", "gateway_user_id", "user", "seq")
    list_filter = ("outcome", "type")
    search_fields = ("event_id", "user__email")
    date_hierarchy = "received_at"
    list_select_related = ("user",)
    ordering = ("-received_at",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
