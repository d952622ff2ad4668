"""Admin views for subscribers, their subscriptions and their API tokens."""

import logging

from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.options import get_content_type_for_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

# Imported first so that DRF's own token admin is registered before it is
# replaced below, whatever the order of INSTALLED_APPS.
from rest_framework.authtoken.admin import TokenAdmin as BaseTokenAdmin
from rest_framework.authtoken.models import Token, TokenProxy

from whatsapp_saas.admin_mixins import OwnerFixedMixin

from .forms import AdminLoginForm, AdminUserChangeForm, AdminUserCreationForm
from .models import Subscription, User
from .services import subscription_trial_start

logger = logging.getLogger(__name__)

# The admin's log-in counts failed attempts as the log-in page does.
admin.site.login_form = AdminLoginForm

# The admin shows this many leading characters of an API token key, and
# never the rest.
TOKEN_KEY_SHOWN_LENGTH = 6


def token_key_masked(key: str | None) -> str:
    """Return the first characters of a token key followed by an ellipsis."""
    if not key:
        return "—"
    return f"{key[:TOKEN_KEY_SHOWN_LENGTH]}…"


def _deleted_objects_masked(items: list, keys: list[str]) -> list:
    """Return the admin's nested list of objects to delete with `keys` masked.

    The list names a user's cascaded API token by its key.
    """
    masked = []
    for item in items:
        if isinstance(item, list):
            masked.append(_deleted_objects_masked(item, keys))
            continue
        for key in keys:
            if key in item:
                replaced = item.replace(key, token_key_masked(key))
                # A masked key is hex digits and an ellipsis, so safe HTML
                # stays safe.
                item = mark_safe(replaced) if isinstance(item, SafeString) else replaced
        masked.append(item)
    return masked


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    can_delete = False
    extra = 0
    fields = ("plan", "status", "current_period_end", "daily_message_quota")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = AdminUserChangeForm
    add_form = AdminUserCreationForm
    inlines = [SubscriptionInline]

    list_display = (
        "email",
        "default_country",
        "subscription_plan",
        "subscription_status",
        "is_staff",
        "date_joined",
    )
    list_filter = (
        "subscription__status",
        "subscription__plan",
        "default_country",
        "is_staff",
        "is_active",
    )
    list_select_related = ("subscription",)
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)

    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (
            _("Personal info"),
            {"fields": ("first_name", "last_name", "default_country")},
        ),
        (
            _("Permissions"),
            {
                "fields": (
                    "is_active",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                )
            },
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        user = form.instance
        if not change and not Subscription.objects.filter(user=user).exists():
            # As at signup: without a plan the subscriber cannot connect
            # WhatsApp, and the product has no page to choose one.
            subscription = subscription_trial_start(user=user)
            logger.info(
                "Started a trial until %s for user %s, added in the admin",
                subscription.current_period_end,
                user.pk,
            )

    def get_deleted_objects(self, objs, request):
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        keys = list(Token.objects.filter(user__in=objs).values_list("key", flat=True))
        if keys:
            to_delete = _deleted_objects_masked(to_delete, keys)
        return to_delete, model_count, perms_needed, protected

    @admin.display(description=_("plan"), ordering="subscription__plan")
    def subscription_plan(self, user):
        subscription = getattr(user, "subscription", None)
        return subscription.get_plan_display() if subscription else "—"

    @admin.display(description=_("status"), ordering="subscription__status")
    def subscription_status(self, user):
        subscription = getattr(user, "subscription", None)
        return subscription.get_status_display() if subscription else "—"


@admin.register(Subscription)
class SubscriptionAdmin(OwnerFixedMixin, admin.ModelAdmin):
    # The owner is fixed because a plan belongs to the subscriber who pays.
    owner_field = "user"
    list_display = (
        "user",
        "plan",
        "status",
        "current_period_end",
        "daily_message_quota",
    )
    list_filter = ("status", "plan")
    search_fields = ("user__email",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)


class _MaskedToken:
    """A token as the admin templates show it: its URL pk and a masked key."""

    def __init__(self, token):
        self.pk = token.pk
        self.label = token_key_masked(token.key)

    def __str__(self):
        return self.label


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(BaseTokenAdmin):
    """API tokens by subscriber, with only the start of each key shown.

    Operators can see whose token it is and when it was created, and revoke
    it by deleting it. They cannot add or edit one: a subscriber creates
    their token on the Settings page, which shows the key once. Every place
    where the admin would print the token (its `__str__` is the key) gets
    the masked key instead.
    """

    list_display = ("key_masked", "user", "created")
    fields = ("user", "key_masked", "created")
    readonly_fields = ("user", "key_masked", "created")

    @admin.display(description=_("key"))
    def key_masked(self, token):
        return token_key_masked(token.key)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            context["subtitle"] = token_key_masked(obj.key)
            context["original"] = _MaskedToken(obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def render_delete_form(self, request, context):
        context["object"] = _MaskedToken(context["object"])
        return super().render_delete_form(request, context)

    def history_view(self, request, object_id, extra_context=None):
        token = self.get_object(request, object_id)
        if token is not None:
            masked = _MaskedToken(token)
            extra_context = {
                **(extra_context or {}),
                "title": _("Change history: %s") % masked,
                "object": masked,
            }
        return super().history_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        # Tokens have no related rows, so the list names only the tokens.
        masked = [
            f"{TokenProxy._meta.verbose_name}: {token_key_masked(obj.key)}"
            for obj in objs
        ]
        return masked, model_count, perms_needed, protected

    def log_deletions(self, request, queryset):
        content_type = get_content_type_for_model(self.model)
        entries = [
            LogEntry(
                user_id=request.user.pk,
                content_type_id=content_type.pk,
                object_id=str(token.pk),
                object_repr=token_key_masked(token.key),
                action_flag=DELETION,
            )
            for token in queryset
        ]
        return LogEntry.objects.bulk_create(entries)

    def response_delete(self, request, obj_display, obj_id):
        # Both arguments are the token key here.
        masked = token_key_masked(obj_display)
        return super().response_delete(request, masked, masked)
