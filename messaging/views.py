"""Pages: the dashboard, customers, CSV import and conversations.

Every view reads through `messaging.selectors` with the logged-in user, so
another subscriber's customer code is a 404. Writes go through
`messaging.services`, and their ApplicationError messages are shown on the
page.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from whatsapp_saas.exceptions import ApplicationError

from . import selectors, services
from .forms import CustomerForm, CustomerImportForm, MessageSendForm
from .models import Message

CUSTOMERS_PER_PAGE = 50
MESSAGES_PER_PAGE = 50
# Seconds between two refreshes of an open conversation.
CONVERSATION_POLL_SECONDS = 3


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _form_error_attach(form, error: ApplicationError) -> None:
    field = error.extra.get("field")
    form.add_error(field if field in form.fields else None, error.message)


@login_required
def dashboard(request):
    summary = selectors.dashboard_summary(user=request.user)
    return render(request, "messaging/dashboard.html", summary)


@login_required
def customer_list(request):
    search = request.GET.get("q", "").strip()[:100]
    customers = selectors.customer_list(user=request.user, search=search or None)
    page = Paginator(customers, CUSTOMERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "customers": page.object_list, "search": search}
    return render(request, "messaging/customer_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def customer_create(request):
    form = CustomerForm(request.POST or None, region=request.user.default_country)
    if request.method == "POST" and form.is_valid():
        try:
            customer = services.customer_create(
                owner=request.user,
                phone=form.cleaned_data["phone"],
                name=form.cleaned_data["name"],
            )
        except ApplicationError as error:
            _form_error_attach(form, error)
        else:
            messages.success(
                request, _("Customer %(name)s added.") % {"name": customer.display_name}
            )
            return redirect("messaging:conversation", code=customer.code)

    status = 400 if form.errors else 200
    context = {"form": form, "customer": None}
    return render(request, "messaging/customer_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def customer_update(request, code):
    customer = selectors.customer_get(user=request.user, code=code)
    initial = {"name": customer.name, "phone": customer.phone or ""}
    form = CustomerForm(
        request.POST or None, initial=initial, region=request.user.default_country
    )
    if request.method == "POST" and form.is_valid():
        phone = form.cleaned_data["phone"]
        try:
            services.customer_update(
                customer=customer,
                name=form.cleaned_data["name"],
                phone=phone if phone != (customer.phone or "") else None,
            )
        except ApplicationError as error:
            _form_error_attach(form, error)
        else:
            messages.success(request, _("Customer saved."))
            return redirect("messaging:conversation", code=customer.code)

    status = 400 if form.errors else 200
    context = {"form": form, "customer": customer}
    return render(request, "messaging/customer_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def customer_delete(request, code):
    customer = selectors.customer_get(user=request.user, code=code)
    if request.method == "POST":
        name = customer.display_name
        services.customer_delete(customer=customer)
        messages.success(
            request,
            _("Customer %(name)s and their messages were deleted.") % {"name": name},
        )
        return redirect("messaging:customer_list")
    return render(request, "messaging/customer_delete.html", {"customer": customer})


@login_required
@require_http_methods(["GET", "POST"])
def customer_import(request):
    form = CustomerImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = services.customer_import_csv(
                owner=request.user, file=form.cleaned_data["file"]
            )
        except ApplicationError as error:
            _form_error_attach(form, error)

    status = 400 if form.errors else 200
    context = {"form": form, "report": report}
    return render(request, "messaging/customer_import.html", context, status=status)


def _before_param(request) -> str | None:
    return request.GET.get("before") or None


def _conversation_context(request, customer, *, before=None, form=None, error=None):
    block = selectors.send_block_reason(user=request.user)
    history = selectors.conversation_messages(
        user=request.user, customer=customer, before=before, limit=MESSAGES_PER_PAGE
    )
    return {
        "customer": customer,
        "history": history,
        "has_earlier": len(history) == MESSAGES_PER_PAGE,
        "before": before,
        "form": form or MessageSendForm(),
        "send_error": error,
        "block_reason": block[1] if block else None,
        "send_notice": selectors.send_notice(user=request.user),
        "poll_seconds": CONVERSATION_POLL_SECONDS,
    }


@login_required
def conversation(request, code):
    customer = selectors.customer_get(user=request.user, code=code)
    services.conversation_mark_read(user=request.user, customer=customer)
    context = _conversation_context(request, customer, before=_before_param(request))
    return render(request, "messaging/conversation.html", context)


@login_required
def conversation_messages(request, code):
    """Render the polled fragment: the latest messages with their ticks."""
    customer = selectors.customer_get(user=request.user, code=code)
    services.conversation_mark_read(user=request.user, customer=customer)
    history = selectors.conversation_messages(
        user=request.user, customer=customer, limit=MESSAGES_PER_PAGE
    )
    context = {"customer": customer, "history": history}
    return render(request, "messaging/_messages.html", context)


# The send form's messages for errors of its hidden idempotency key.
FORM_KEY_MESSAGES = {
    # The form was sent, then edited and sent again with the same key.
    "idempotency_key_reused": gettext_lazy(
        "This form was already sent with another text. Reload the page to send "
        "a new message."
    ),
    "idempotency_key_deleted": gettext_lazy(
        "This form was already sent, and its message was deleted since. Reload "
        "the page to send a new message."
    ),
}


@login_required
@require_POST
def conversation_send(request, code):
    customer = selectors.customer_get(user=request.user, code=code)
    form = MessageSendForm(request.POST)
    error = None
    if form.is_valid():
        try:
            services.message_send(
                user=request.user,
                content=form.cleaned_data["content"],
                customer_code=customer.code,
                source=Message.Source.DASHBOARD,
                idempotency_key=str(form.cleaned_data["idempotency_key"] or ""),
            )
        except ApplicationError as exc:
            # The form's hidden key was used before, so the API's advice about
            # keys means nothing here; the page asks for a reload instead.
            page_message = FORM_KEY_MESSAGES.get(exc.code)
            error = exc
            if page_message is not None:
                error = ApplicationError(
                    str(page_message), code=exc.code, status_code=exc.status_code
                )
    elif "content" in form.errors:
        problem = form.errors.as_data()["content"][0]
        if problem.code == "required":
            message = _("The message is empty; type the text to send.")
        else:
            # Any other error, such as Django's for a NUL character, is shown
            # as the field gives it.
            message = problem.messages[0]
        error = ApplicationError(message)
    else:
        # Only the hidden key can be invalid. A browser sends it as rendered,
        # so the page is out of date or the request was made by hand.
        error = ApplicationError(
            _("This form is out of date. Reload the page to send a new message.")
        )

    if _is_htmx(request):
        # htmx swaps only 2xx responses, so an error is a 200 with the message.
        context = _conversation_context(
            request,
            customer,
            form=form if error else MessageSendForm(),
            error=error.message if error else None,
        )
        response = render(request, "messaging/_send_box.html", context)
        if error is None:
            response["HX-Trigger"] = "messages-changed"
        return response

    if error is None:
        return redirect("messaging:conversation", code=customer.code)
    context = _conversation_context(request, customer, form=form, error=error.message)
    return render(
        request, "messaging/conversation.html", context, status=error.status_code
    )
