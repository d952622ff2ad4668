"""CSV import: all rows or none, with a report line per row."""

from __future__ import annotations

import pytest

from accounts.tests.factories import subscriber_create
from messaging.models import Customer
from messaging.services import customer_import_csv
from whatsapp_saas.exceptions import ApplicationError

from .helpers import customer_make


def _import(user, text: str, encoding: str = "utf-8"):
    return customer_import_csv(owner=user, file=text.encode(encoding))


def test_import_creates_every_valid_row(alice):
    report = _import(alice, "name,phone\nAna,+55 11 90000-0001\nBia,(21) 98765-4321\n")

    assert report.committed is True
    assert report.imported == 2
    assert sorted(Customer.objects.values_list("phone", flat=True)) == [
        "+5511900000001",
        "+5521987654321",
    ]


def test_import_reads_semicolons_and_bom(alice):
    report = _import(alice, "\ufeffNome;Telefone\nAna;11 90000-0001\n")

    assert report.imported == 1


def test_import_reads_windows_1252(alice):
    report = _import(alice, "name,phone\nJoão,+5511900000001\n", encoding="cp1252")

    assert Customer.objects.get(owner=alice).name == "João"
    assert report.encoding == "windows-1252"


def test_import_rejected_row_imports_nothing(alice):
    report = _import(alice, "name,phone\nAna,+5511900000001\nBad,+55 11 9OOOO-0001\n")

    assert report.committed is False
    assert Customer.objects.filter(owner=alice).count() == 0


def test_import_report_names_line_and_reason(alice):
    report = _import(alice, "name,phone\nAna,+5511900000001\nBad,+55 11 9OOOO-0001\n")

    bad = report.rows[1]
    assert bad.line == 3
    assert bad.status == "rejected"
    assert "'O'" in bad.reason


def test_import_reports_duplicates_within_file(alice):
    report = _import(alice, "name,phone\nAna,+5511900000001\nAna again,551100000001\n")

    assert report.rows[1].status == "rejected"
    assert "line 2" in report.rows[1].reason


def test_import_skips_existing_customers(alice):
    customer_make(alice, name="Customer A")

    report = _import(alice, "name,phone\nAna,11 90000-0001\nBia,+5521987654321\n")

    assert report.committed is True
    assert report.rows[0].status == "skipped"
    assert "Customer A" in report.rows[0].reason
    assert report.imported == 1


def test_import_reports_empty_phone_cell(alice):
    report = _import(alice, "name,phone\nAna,\n")

    assert report.rows[0].reason == "The phone cell is empty."


def test_import_skips_blank_lines(alice):
    report = _import(alice, "name,phone\n\nAna,+5511900000001\n,\n")

    assert [row.line for row in report.rows] == [3]


def test_import_without_phone_column_is_rejected(alice):
    with pytest.raises(ApplicationError) as raised:
        _import(alice, "first,last\nAna,Souza\n")

    assert raised.value.code == "invalid_csv"
    assert "'first'" in raised.value.message


def test_import_of_empty_file_is_rejected(alice):
    with pytest.raises(ApplicationError):
        _import(alice, "")


def test_import_of_binary_file_is_rejected(alice):
    with pytest.raises(ApplicationError) as raised:
        customer_import_csv(owner=alice, file=b"\x81\x8d\x8f\x90\x9d" * 10)

    assert raised.value.extra == {"field": "file"}


def test_import_does_not_touch_other_owners(alice, charlie):
    customer_make(charlie, phone="+5511900000001")

    report = _import(alice, "name,phone\nAna,+5511900000001\n")

    assert report.imported == 1
    assert Customer.objects.filter(owner=alice).count() == 1


@pytest.mark.parametrize(
    "raw",
    [
        "name,phone\nAna,+5511900000001\n".encode("utf-16"),
        "name,phone\nAna,+5511900000001\n".encode("utf-16-le"),
        "name,phone\nAna,+5511900000001\n".encode("utf-16-be"),
    ],
    ids=["bom", "little-endian", "big-endian"],
)
def test_import_of_utf16_file_asks_for_utf8(alice, raw):
    with pytest.raises(ApplicationError) as caught:
        customer_import_csv(owner=alice, file=raw)

    assert "save it as CSV UTF-8" in caught.value.message
    assert "\\x00" not in caught.value.message


def test_import_report_lists_the_first_rejected_rows(alice):
    rows = "".join(f"Bad {n},+55 11 9OOOO-{n:04d}\n" for n in range(250))
    report = _import(alice, "name,phone\nAna,+5511900000001\n" + rows)

    assert len(report.rows_shown) == 200
    assert {row.status for row in report.rows_shown} == {"rejected"}
    assert report.rows_not_shown == 50


@pytest.fixture
def dora(db):
    """A subscriber in Germany, where 030 is Berlin's area code."""
    return subscriber_create("dora@example.com", default_country="DE")


def test_import_reads_doubled_quotes_beside_comma(dora):
    _import(dora, 'phone,name\n030 7654371,"Smith, John ""JJ"""\n')

    assert Customer.objects.get(owner=dora).name == 'Smith, John "JJ"'


def test_import_reads_doubled_quotes_without_comma(dora):
    _import(dora, 'phone,name\n030 7654372,"John ""JJ"" Smith"\n')

    assert Customer.objects.get(owner=dora).name == 'John "JJ" Smith'


def test_import_reads_doubled_quotes_beside_semicolon(dora):
    _import(dora, 'phone;name\n030 7654373;"Smith; John ""JJ"""\n')

    assert Customer.objects.get(owner=dora).name == 'Smith; John "JJ"'


def test_import_rejects_repeated_column(dora):
    with pytest.raises(ApplicationError) as raised:
        _import(dora, "phone,phone\n030 7654337,030 7654338\n")

    assert raised.value.code == "invalid_csv"
    assert raised.value.message == (
        "The first row names the column “phone” twice (columns 1 and 2). "
        "Rename or delete one of them and upload the file again."
    )
    assert not Customer.objects.filter(owner=dora).exists()


def test_import_rejects_repeat_in_other_case(dora):
    with pytest.raises(ApplicationError) as raised:
        _import(dora, "Name,phone, name \nAna,030 7654337,Ana B\n")

    assert "“name” twice (columns 1 and 3)" in raised.value.message
    assert not Customer.objects.filter(owner=dora).exists()


def test_import_rejects_two_phone_columns(dora):
    with pytest.raises(ApplicationError) as raised:
        _import(dora, "phone,Mobile\n030 7654337,030 7654338\n")

    assert raised.value.code == "invalid_csv"
    assert raised.value.message.startswith(
        "The first row has 2 columns that mean the same thing: “phone”, “Mobile”."
    )
    assert not Customer.objects.filter(owner=dora).exists()


def test_import_rejects_two_name_columns(dora):
    with pytest.raises(ApplicationError) as raised:
        _import(dora, "phone,name,nome\n030 7654337,Ana,Ana B\n")

    assert "“name”, “nome”" in raised.value.message


def test_import_accepts_blank_header_cells(dora):
    report = _import(dora, "phone,name,,\n030 7654337,Ana,,\n")

    assert report.imported == 1
