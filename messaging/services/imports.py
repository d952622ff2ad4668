"""Customer import from a CSV file, all rows or none."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from messaging.models import Customer
from messaging.phones import match_key, phone_parse
from whatsapp_saas.exceptions import ApplicationError

from .customers import NAME_MAX_LENGTH, validation_message

logger = logging.getLogger(__name__)

CSV_MAX_BYTES = 2 * 1024 * 1024
CSV_MAX_ROWS = 10_000
# A report page lists this many rows; a count stands for the rest.
REPORT_ROWS_SHOWN = 200

# Header names accepted for each column, compared in lower case.
PHONE_HEADERS = ("phone", "phone number", "number", "mobile", "whatsapp", "telefone")
NAME_HEADERS = ("name", "full name", "nome")


class RowStatus:
    VALID = "valid"
    IMPORTED = "imported"
    REJECTED = "rejected"
    SKIPPED = "skipped"


@dataclass
class ImportRow:
    """The outcome for one data row; `line` is its line in the file."""

    line: int
    name: str
    phone_input: str
    phone: str | None = None
    status: str = RowStatus.VALID
    reason: str = ""


@dataclass
class ImportReport:
    """The result of an import, row by row.

    `committed` is False when any row was rejected: then no customer was
    created, so fixing the listed rows and uploading the file again is safe.
    """

    rows: list[ImportRow] = field(default_factory=list)
    committed: bool = False
    encoding: str = "utf-8"

    def _count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def imported(self) -> int:
        return self._count(RowStatus.IMPORTED)

    @property
    def rejected(self) -> int:
        return self._count(RowStatus.REJECTED)

    @property
    def skipped(self) -> int:
        return self._count(RowStatus.SKIPPED)

    def _listed(self) -> list[ImportRow]:
        if self.committed:
            return self.rows
        return [row for row in self.rows if row.status == RowStatus.REJECTED]

    @property
    def rows_shown(self) -> list[ImportRow]:
        """The rows a report page lists: the rejected ones when nothing was
        imported, at most REPORT_ROWS_SHOWN of them."""
        return self._listed()[:REPORT_ROWS_SHOWN]

    @property
    def rows_not_shown(self) -> int:
        return max(len(self._listed()) - REPORT_ROWS_SHOWN, 0)


def _file_error(message: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_csv", extra={"field": "file"})


def _read_text(file) -> tuple[str, str]:
    if isinstance(file, str):
        return file, "utf-8"
    raw = file if isinstance(file, bytes) else file.read(CSV_MAX_BYTES + 1)
    if len(raw) > CSV_MAX_BYTES:
        raise _file_error(
            _("The file is larger than %(size)s MiB; split it into smaller files.")
            % {"size": CSV_MAX_BYTES // (1024 * 1024)}
        )
    if _looks_utf16(raw):
        raise _file_error(
            _(
                "The file is saved as UTF-16 (Unicode) text, which cannot be "
                "read; save it as CSV UTF-8 and upload it again."
            )
        )
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Spreadsheets on Windows often save CSV as Windows-1252; the report
    # names the encoding so a wrong guess is visible.
    try:
        return raw.decode("cp1252"), "windows-1252"
    except UnicodeDecodeError:
        raise _file_error(
            _("The file is neither UTF-8 nor Windows-1252 text; save it as CSV UTF-8.")
        ) from None


def _looks_utf16(raw: bytes) -> bool:
    """Return True for UTF-16 text: a UTF-16 byte order mark, or many NULs.

    Text in UTF-16 without a mark has a NUL byte beside every Latin
    character, which no UTF-8 or Windows-1252 CSV has.
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = raw[:4096]
    return len(sample) >= 4 and sample.count(0) * 4 >= len(sample)


def _dialect(text: str) -> type[csv.Dialect]:
    """Return a dialect with RFC 4180 quoting and the file's delimiter.

    Only the delimiter and the spaces after it come from csv.Sniffer. Its
    guess at quoting is unreliable. For a quoted cell that contains a comma
    and ends in a doubled quote, such as the name Smith, John "JJ", it
    guesses doublequote=False, and the doubled quotes stay in the name.
    """
    try:
        sniffed = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel

    class Sniffed(csv.excel):
        delimiter = sniffed.delimiter
        skipinitialspace = sniffed.skipinitialspace

    return Sniffed


def _columns(header: list[str]) -> tuple[int, int | None]:
    names = [cell.strip().lower() for cell in header]
    _repeated_column_check(header, names)
    phone_index = next(
        (i for i, name in enumerate(names) if name in PHONE_HEADERS), None
    )
    if phone_index is None:
        raise _file_error(
            _(
                "The first row must name the columns, with one called “phone” "
                "(and optionally “name”); found: %(found)s."
            )
            % {"found": ", ".join(repr(cell) for cell in header) or _("nothing")}
        )
    for headers in (PHONE_HEADERS, NAME_HEADERS):
        _one_column_check(header, names, headers)
    name_index = next((i for i, name in enumerate(names) if name in NAME_HEADERS), None)
    return phone_index, name_index


def _one_column_check(header: list[str], names: list[str], headers) -> None:
    """Reject two columns that both read as the phone, or both as the name.

    Only one of them would be imported, so a `phone,mobile` file would lose
    its second numbers without a word.
    """
    found = [index for index, name in enumerate(names) if name in headers]
    if len(found) < 2:
        return
    raise _file_error(
        _(
            "The first row has %(count)s columns that mean the same thing: "
            "%(columns)s. Keep one of them, or rename the others, and upload "
            "the file again."
        )
        % {
            "count": len(found),
            "columns": ", ".join(f"“{header[index].strip()}”" for index in found),
        }
    )


def _repeated_column_check(header: list[str], names: list[str]) -> None:
    first_column: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            continue
        if name in first_column:
            raise _file_error(
                _(
                    "The first row names the column “%(name)s” twice (columns "
                    "%(first)s and %(second)s). Rename or delete one of them "
                    "and upload the file again."
                )
                % {
                    "name": header[index].strip(),
                    "first": first_column[name] + 1,
                    "second": index + 1,
                }
            )
        first_column[name] = index


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def customer_import_csv(*, owner, file) -> ImportReport:
    """Create customers from a CSV file with a ``phone`` and a ``name`` column.

    Numbers without a country code are read in the owner's default country.
    Every row gets a line in the report. Invalid numbers, names that are too
    long and numbers that appear twice in the file reject their row, and a
    rejected row means nothing is imported. A number that is already a
    customer is skipped and does not block the import. Raises
    ApplicationError for a file that cannot be read at all.
    """
    text, encoding = _read_text(file)
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    try:
        header = next(reader, None)
        if header is None:
            raise _file_error(_("The file is empty."))
        phone_index, name_index = _columns(header)

        report = ImportReport(encoding=encoding)
        seen: dict[str, int] = {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(report.rows) >= CSV_MAX_ROWS:
                raise _file_error(
                    _("The file has more than %(max)s rows; split it.")
                    % {"max": CSV_MAX_ROWS}
                )
            item = ImportRow(
                line=reader.line_num,
                name=" ".join(_cell(row, name_index).split()),
                phone_input=_cell(row, phone_index),
            )
            _row_check(owner, item, seen)
            report.rows.append(item)
    except csv.Error as error:
        raise _file_error(
            _("Line %(line)s of the file is not valid CSV: %(error)s")
            % {"line": reader.line_num, "error": error}
        ) from None

    _existing_mark(owner, report)
    if report.rejected:
        logger.info(
            "CSV import for user %s rejected: %s of %s rows invalid",
            owner.pk,
            report.rejected,
            len(report.rows),
        )
        return report

    _rows_create(owner, report)
    return report


def _row_check(owner, item: ImportRow, seen: dict[str, int]) -> None:
    if "\x00" in item.name or "\x00" in item.phone_input:
        item.status = RowStatus.REJECTED
        item.reason = _(
            "The row contains a NUL character (\\x00), which is not text. Delete "
            "it, or save the file again as CSV UTF-8."
        )
        return
    if len(item.name) > NAME_MAX_LENGTH:
        item.status = RowStatus.REJECTED
        item.reason = _("The name is longer than %(max)s characters.") % {
            "max": NAME_MAX_LENGTH
        }
        return
    if not item.phone_input:
        item.status = RowStatus.REJECTED
        item.reason = _("The phone cell is empty.")
        return
    try:
        item.phone = phone_parse(item.phone_input, default_region=owner.default_country)
    except ValidationError as error:
        item.status = RowStatus.REJECTED
        item.reason = validation_message(error)
        return

    key = match_key(item.phone)
    if key in seen:
        item.status = RowStatus.REJECTED
        item.reason = _("Same number as line %(line)s; keep one of the two rows.") % {
            "line": seen[key]
        }
        return
    seen[key] = item.line


def _existing_mark(owner, report: ImportReport) -> None:
    keys = {
        match_key(row.phone): row
        for row in report.rows
        if row.status == RowStatus.VALID and row.phone
    }
    existing = Customer.objects.filter(owner=owner, match_key__in=list(keys))
    for customer in existing:
        row = keys[customer.match_key]
        row.status = RowStatus.SKIPPED
        row.reason = _("Already a customer: %(name)s.") % {
            "name": customer.display_name
        }


def _rows_create(owner, report: ImportReport) -> None:
    new_rows = [row for row in report.rows if row.status == RowStatus.VALID]
    customers = [
        Customer(
            owner=owner, name=row.name, phone=row.phone, match_key=match_key(row.phone)
        )
        for row in new_rows
    ]
    try:
        with transaction.atomic():
            Customer.objects.bulk_create(customers)
    except IntegrityError:
        raise ApplicationError(
            _(
                "Some of these numbers were added as customers while the file "
                "was being imported; nothing was imported. Upload the file again."
            ),
            code="import_conflict",
            status_code=409,
        ) from None
    for row in new_rows:
        row.status = RowStatus.IMPORTED
    report.committed = True
    logger.info(
        "CSV import for user %s created %s customers, skipped %s",
        owner.pk,
        len(customers),
        report.skipped,
    )
