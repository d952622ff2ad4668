"""Subscribers: the user who logs in by email, and the plan they pay for."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def email_normalize(email: str) -> str:
    """Return `email` in the one spelling stored: all in lower case."""
    return BaseUserManager.normalize_email(email).lower()


class UserManager(BaseUserManager):
    """Create users whose login is their email address."""

    use_in_migrations = True

    def get_by_natural_key(self, email):
        """Return the user whose email is `email` in any letter case.

        Login goes through here, so `Alice@Example.com` logs in as
        `alice@example.com`. Emails are stored in lower case, which a check
        constraint enforces, so the exact lookup can use the unique index.
        """
        email = email_normalize(email)
        user = self.filter(email=email).first()
        if user is None:
            raise self.model.DoesNotExist(f"No user has the email {email!r}.")
        return user

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required to create a user.")
        email = email_normalize(email)
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if extra_fields.get("is_staff") is not True:
            raise ValueError("A superuser must have is_staff=True.")
        if extra_fields.get("is_superuser") is not True:
            raise ValueError("A superuser must have is_superuser=True.")
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A subscriber; the tenant that owns a WhatsApp session and customers."""

    username = None
    email = models.EmailField(_("email address"), unique=True)
    default_country = models.CharField(
        _("default country"),
        max_length=2,
        default="BR",
        help_text=_(
            "ISO 3166 region used to read phone numbers typed without a "
            "country code, for example BR, AR or GB."
        ),
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            # `save` lowers the email. This also catches writes that skip
            # it, such as QuerySet.update.
            models.CheckConstraint(
                condition=models.Q(email=Lower("email")),
                name="user_email_lower_case",
                violation_error_message="Emails are stored in lower case.",
            ),
        ]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = email_normalize(self.email)
        others = User.objects.filter(email__iexact=self.email).exclude(pk=self.pk)
        if others.exists():
            raise ValidationError(
                {
                    "email": ValidationError(
                        _(
                            "A user with the email address %(email)s already "
                            "exists, perhaps in other letter case. Use another "
                            "address, or edit that user."
                        ),
                        code="email_taken",
                        params={"email": self.email},
                    )
                }
            )

    def save(self, *args, **kwargs):
        # Stored in lower case so that the unique constraint on `email` also
        # rejects an address that differs from another only in case.
        if self.email:
            self.email = email_normalize(self.email)
        super().save(*args, **kwargs)


class Subscription(models.Model):
    """The plan a subscriber pays for and whether it currently allows use."""

    class Plan(models.TextChoices):
        STARTER = "starter", _("Starter")
        PRO = "pro", _("Pro")
        BUSINESS = "business", _("Business")

    class Status(models.TextChoices):
        TRIALING = "trialing", _("Trialing")
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        CANCELED = "canceled", _("Canceled")

    # Messages per day each plan allows unless the row overrides it.
    DEFAULT_DAILY_QUOTAS = {
        Plan.STARTER: 1000,
        Plan.PRO: 10000,
        Plan.BUSINESS: 100000,
    }

    user = models.OneToOneField(
        User, on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.STARTER)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.TRIALING
    )
    current_period_end = models.DateTimeField(null=True, blank=True)
    daily_message_quota = models.PositiveIntegerField(default=1000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status"])]

    def __str__(self):
        return f"{self.user} {self.plan} ({self.status})"

    @property
    def allows_whatsapp(self) -> bool:
        """Whether the subscriber may start a WhatsApp session and send."""
        if self.status not in (self.Status.TRIALING, self.Status.ACTIVE):
            return False
        if self.current_period_end and self.current_period_end < timezone.now():
            return False
        return True
