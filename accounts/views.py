"""Account pages: sign-up, log-in, password reset and the settings forms."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from whatsapp_saas.exceptions import ApplicationError

from . import services
from .forms import DefaultCountryForm, LoginForm, SignupForm

SETTINGS_URL = "sessions_wa:settings"


@never_cache
def signup(request):
    if request.user.is_authenticated:
        return redirect(SETTINGS_URL)

    form = SignupForm(request.POST or None, initial={"default_country": "BR"})
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                default_country=form.cleaned_data["default_country"],
            )
        except ApplicationError as error:
            if error.code != "email_taken":
                raise
            form.add_error("email", ValidationError(error.message, code=error.code))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                _(
                    "Welcome! Your %(days)s-day free trial has started. Link your "
                    "WhatsApp below to begin."
                )
                % {"days": services.TRIAL_DAYS},
            )
            return redirect(SETTINGS_URL)

    context = {"form": form, "trial_days": services.TRIAL_DAYS}
    return render(request, "accounts/signup.html", context)


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


@login_required
@require_POST
def default_country_update(request):
    form = DefaultCountryForm(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            _("Choose a country from the list; the default country was not changed."),
        )
        return redirect(SETTINGS_URL)

    try:
        services.user_default_country_set(
            user=request.user, default_country=form.cleaned_data["default_country"]
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Default country saved."))
    return redirect(SETTINGS_URL)


@login_required
@require_POST
@never_cache
def api_token_rotate(request):
    """Create or replace the API token and show the new key on this page only."""
    token = services.api_token_rotate(user=request.user)
    return render(request, "accounts/api_token_created.html", {"token": token})
