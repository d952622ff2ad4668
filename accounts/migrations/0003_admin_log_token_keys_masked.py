"""Mask the API token keys that older admin log entries hold in full.

The token admin now logs a masked key. Entries written before it may name
a token by its whole key, which lets anyone who can read the admin log use
that token. The first six characters stay, as the admin shows them.
"""

from django.db import migrations

SHOWN_LENGTH = 6
ELLIPSIS = "…"


def _masked(text: str) -> str:
    if not text or text.endswith(ELLIPSIS):
        return text
    return text[:SHOWN_LENGTH] + ELLIPSIS


def _looks_like_key(text: str) -> bool:
    return len(text) == 40 and all(char in "0123456789abcdef" for char in text)


def log_token_keys_mask(apps, schema_editor):
    content_type_model = apps.get_model("contenttypes", "ContentType")
    log_entry_model = apps.get_model("admin", "LogEntry")
    token_types = content_type_model.objects.filter(
        app_label="authtoken", model__in=["token", "tokenproxy"]
    )
    entries = log_entry_model.objects.filter(content_type__in=token_types)
    for entry in entries.only("pk", "object_id", "object_repr").iterator():
        object_repr = _masked(entry.object_repr)
        object_id = entry.object_id
        if object_id and _looks_like_key(object_id):
            object_id = _masked(object_id)
        if (object_repr, object_id) != (entry.object_repr, entry.object_id):
            log_entry_model.objects.filter(pk=entry.pk).update(
                object_repr=object_repr, object_id=object_id
            )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_email_lower_case"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(log_token_keys_mask, migrations.RunPython.noop),
    ]
