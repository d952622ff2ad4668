from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command

NEW_PASSWORD = "a-new-password-of-some-length"

pytestmark = pytest.mark.django_db


def test_changepassword_ignores_email_case(owner):
    with mock.patch("getpass.getpass", return_value=NEW_PASSWORD):
        call_command("changepassword", "OWNER@Example.COM", stdout=StringIO())

    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
