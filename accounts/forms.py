"""Forms for sign-up and account settings."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AdminUserCreationForm as BaseAdminCreationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.forms import UserChangeForm as BaseUserChangeForm
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .countries import country_choices
from .login_limits import login_attempt_begin, login_attempts_clear
from .models import User, email_normalize
from .services import EMAIL_TAKEN


class DefaultCountryForm(forms.Form):
    default_country = forms.ChoiceField(
        label=_("Default country"),
        choices=country_choices,
        help_text=_(
            "Phone numbers typed without a country code are read as numbers "
            "of this country."
        ),
    )


class SignupForm(DefaultCountryForm):
    """Email, password twice, and the default country for phone numbers."""

    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    field_order = ["email", "password1", "password2", "default_country"]

    def clean_email(self):
        email = email_normalize(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(EMAIL_TAKEN, code="email_taken")
        return email

    def clean(self):
        cleaned = super().clean()
        password1 = cleaned.get("password1")
        password2 = cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error(
                "password2",
                forms.ValidationError(
                    _("The two passwords differ; type the same password twice."),
                    code="password_mismatch",
                ),
            )
            return cleaned

        if password1:
            candidate = User(email=cleaned.get("email") or "")
            try:
                password_validation.validate_password(password1, candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class AdminUserCreationForm(BaseAdminCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class AdminUserChangeForm(BaseUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class LockoutMixin:
    """Form mixin that counts log-in attempts and refuses a locked-out address.

    A locked-out address is refused before its password is checked, so the
    error reveals nothing about the password (see accounts.login_limits).
    """

    def clean(self):
        email = self.cleaned_data.get("username")
        minutes = login_attempt_begin(email) if email else 0
        if minutes:
            raise forms.ValidationError(
                ngettext(
                    "Too many failed log-ins for this email address. Try again "
                    "in %(minutes)s minute, or reset the password.",
                    "Too many failed log-ins for this email address. Try again "
                    "in %(minutes)s minutes, or reset the password.",
                    minutes,
                )
                % {"minutes": minutes},
                code="login_locked",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            # The right password of an account that may not log in here (the
            # admin's for a subscriber) is not a guess, so it counts as none.
            if email and self.get_user() is not None:
                login_attempts_clear(email)
            raise
        if email:
            login_attempts_clear(email)
        return cleaned


class LoginForm(LockoutMixin, AuthenticationForm):
    """The log-in page's form: email and password, with the lockout."""


class AdminLoginForm(LockoutMixin, AdminAuthenticationForm):
    """The admin's log-in form, with the same lockout as the log-in page."""
