from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .forms import AdminUserChangeForm, AdminUserCreationForm
from .models import Subscription, User


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

    @admin.display(description=_("plan"), ordering="subscription__plan")
    def subscription_plan(self, user):
        subscription = getattr(user, "subscription", None)
        return subscription.get_plan_display() if subscription else "—"

    @admin.display(description=_("status"), ordering="subscription__status")
    def subscription_status(self, user):
        subscription = getattr(user, "subscription", None)
        return subscription.get_status_display() if subscription else "—"


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
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
