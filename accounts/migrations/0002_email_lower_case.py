"""Store every email in lower case, and have the database hold to it.

Login and signup already treat emails without regard to letter case, and
`User.save` lowers them. Rows saved before that may still hold capitals;
this lowers them, and stops when two users would end up with one address,
because only an operator can tell which account to keep.
"""

from django.db import migrations, models
from django.db.models.functions import Lower


def emails_lower(apps, schema_editor):
    user_model = apps.get_model("accounts", "User")
    rows = list(user_model.objects.order_by("pk").values_list("pk", "email"))
    owners: dict[str, list[tuple[int, str]]] = {}
    for pk, email in rows:
        owners.setdefault(email.lower(), []).append((pk, email))
    clashes = [users for users in owners.values() if len(users) > 1]
    if clashes:
        listed = "; ".join(
            ", ".join(f"user {pk} ({email})" for pk, email in users)
            for users in clashes
        )
        raise RuntimeError(
            "These users have emails that differ only in letter case, and "
            f"emails are now stored in lower case: {listed}. Change the email "
            "of all but one user of each group (in the admin or the Django "
            "shell), then run migrate again."
        )
    for pk, email in rows:
        if email != email.lower():
            user_model.objects.filter(pk=pk).update(email=email.lower())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(emails_lower, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.CheckConstraint(
                condition=models.Q(email=Lower("email")),
                name="user_email_lower_case",
                violation_error_message="Emails are stored in lower case.",
            ),
        ),
    ]
