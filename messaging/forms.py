"""Forms of the customer and conversation pages.

The forms only shape input; numbers, duplicates and sending rules are
checked by `messaging.services`, whose errors the views attach to fields.
"""

from __future__ import annotations

import uuid

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Customer
from .phones import region_example


class CustomerForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=Customer._meta.get_field("name").max_length,
        required=False,
    )
    phone = forms.CharField(
        label=_("Phone number"),
        max_length=64,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
        help_text=_(
            "With the country code (+55 11 91234-5678), or as dialled in your "
            "default country."
        ),
    )

    def __init__(self, *args, region: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if region:
            # The example is a mobile number of the user's own country.
            self.fields["phone"].help_text = _(
                "With the country code (%(example)s), or as dialled in your "
                "default country."
            ) % {"example": region_example(region)}


class CustomerImportForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "The first row names the columns: “phone” and, optionally, “name”. "
            "Commas, semicolons or tabs may separate them."
        ),
    )


class MessageSendForm(forms.Form):
    content = forms.CharField(
        label=_("Message"),
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    # A new key per rendered form: a second submit of the same form (double
    # click, browser retry) returns the first send instead of a second copy.
    idempotency_key = forms.UUIDField(
        required=False, widget=forms.HiddenInput, initial=uuid.uuid4
    )
