"""Admin views for support staff; message bodies are not listed."""

from django.contrib import admin

from .models import Customer, Message, PendingMessageUpdate


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["code", "owner", "name", "phone", "phone_unresolved", "created_at"]
    list_filter = ["phone_unresolved"]
    search_fields = ["code", "owner__email", "name", "phone"]
    raw_id_fields = ["owner"]
    readonly_fields = ["code", "match_key", "created_at", "updated_at"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "owner",
        "customer",
        "direction",
        "source",
        "kind",
        "status",
        "timestamp",
    ]
    list_filter = ["direction", "source", "status", "kind"]
    search_fields = ["code", "gateway_message_id", "owner__email"]
    raw_id_fields = ["owner", "customer", "previous_part"]
    readonly_fields = ["code", "created_at", "updated_at"]
    date_hierarchy = "timestamp"


@admin.register(PendingMessageUpdate)
class PendingMessageUpdateAdmin(admin.ModelAdmin):
    list_display = ["owner", "gateway_message_id", "kind", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["owner"]
