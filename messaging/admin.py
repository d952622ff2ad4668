"""Admin views for support staff; message bodies are not listed."""

from functools import partial

from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from whatsapp_saas.admin_mixins import OwnerFixedMixin

from .models import Customer, Message, PendingMessageUpdate
from .services import customer_delete, messages_delete
from .services.quota import COUNTED_SOURCES, quota_refund


class MessageAdminForm(forms.ModelForm):
    """Message form that keeps the customer and earlier part in one tenant.

    The send worker sends from the owner's WhatsApp to the customer, so a
    customer of another subscriber would receive messages from this one.
    """

    error_messages = {
        "customer": _(
            "Customer %(id)s belongs to subscriber %(other_owner)s, not to "
            "%(owner)s, the owner of this message. Choose a customer of "
            "%(owner)s."
        ),
        "previous_part": _(
            "Message %(id)s belongs to subscriber %(other_owner)s, not to "
            "%(owner)s, the owner of this message. Choose a message of "
            "%(owner)s, or leave the field empty."
        ),
    }

    class Meta:
        model = Message
        # The admin builds its field list from this one, and support staff
        # edit every field.
        fields = "__all__"  # noqa: DJ007

    def clean(self):
        cleaned = super().clean()
        owner = self._owner()
        if owner is None:
            return cleaned

        for field in ("customer", "previous_part"):
            chosen = cleaned.get(field)
            if chosen is None or chosen.owner_id == owner.pk:
                continue
            error = forms.ValidationError(
                self.error_messages[field],
                code=f"{field}_of_other_owner",
                params={"id": chosen.pk, "other_owner": chosen.owner, "owner": owner},
            )
            self.add_error(field, error)
        return cleaned

    def _owner(self):
        """Return the owner the form saves, or None when it is not valid yet."""
        if "owner" in self.fields:
            return self.cleaned_data.get("owner")
        # The owner is read-only on the change page.
        return self.instance.owner if self.instance.owner_id else None


@admin.register(Customer)
class CustomerAdmin(OwnerFixedMixin, admin.ModelAdmin):
    # The owner is fixed because the customer's messages keep theirs, so a
    # new one would send from one subscriber's WhatsApp to another's customer.
    list_display = ["code", "owner", "name", "phone", "phone_unresolved", "created_at"]
    list_filter = ["phone_unresolved"]
    search_fields = ["code", "owner__email", "name", "phone"]
    raw_id_fields = ["owner"]
    readonly_fields = ["code", "match_key", "created_at", "updated_at"]

    # Deletes go through the service, so that queued messages give their
    # quota back as when the subscriber deletes the customer.
    def delete_model(self, request, obj):
        customer_delete(customer=obj)

    def delete_queryset(self, request, queryset):
        for customer in queryset:
            customer_delete(customer=customer)


@admin.register(Message)
class MessageAdmin(OwnerFixedMixin, admin.ModelAdmin):
    # The owner is fixed because later parts, linked through previous_part,
    # would keep the old one.
    form = MessageAdminForm
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

    def save_model(self, request, obj, form, change):
        # A queued part that an operator marks failed never reached
        # WhatsApp, so it gives its quota back, as a failed send does.
        was_queued = change and form.initial.get("status") == Message.Status.QUEUED
        super().save_model(request, obj, form, change)
        if (
            was_queued
            and obj.status == Message.Status.FAILED
            and obj.direction == Message.Direction.OUTBOUND
            and obj.source in COUNTED_SOURCES
        ):
            refund = partial(quota_refund, obj.owner_id, [obj.timestamp])
            transaction.on_commit(refund)

    # Deletes go through the service, so that queued parts, and the later
    # parts a delete takes with them, give their quota back.
    def delete_model(self, request, obj):
        messages_delete(message_ids=[obj.pk])

    def delete_queryset(self, request, queryset):
        messages_delete(message_ids=list(queryset.values_list("pk", flat=True)))


@admin.register(PendingMessageUpdate)
class PendingMessageUpdateAdmin(admin.ModelAdmin):
    list_display = ["owner", "gateway_message_id", "kind", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["owner"]
