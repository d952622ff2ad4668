"""Query helpers shared by the apps."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin, DateField, DateTimeField, Field
from django.utils import timezone
from psycopg import pq
from psycopg.types.numeric import Int8

logger = logging.getLogger(__name__)


def unique_row(queryset):
    """Return the row a filter on a unique column selects, or None.

    Unlike `first()`, it adds no ORDER BY, which the filter makes pointless
    and which costs Python time to compile on every call. Use it on hot
    paths where the filter names a primary key or a unique column.
    """
    return next(iter(queryset[:1]), None)


# A type's length or precision, which a cast would apply: a value cast to
# varchar(10) is cut to 10 characters, where an INSERT or UPDATE rejects it.
_TYPE_MODIFIER = re.compile(r"\([^)]*\)")


def cast_type(field) -> str:
    """Return the type to cast a value of `field` to: its column's type
    without length or precision, so `varchar(10)[]` gives `varchar[]`."""
    return _TYPE_MODIFIER.sub("", field.db_type(connection))


# psycopg prepares a statement only on a connection with a threshold, and
# Django leaves it unset. `prepared_cursor` sets one too high to reach, so
# only its own statements are prepared, because Django's cursors bind on
# the client and never prepare. psycopg still counts their statements in
# a small cache of its own.
_NEVER_AUTO_PREPARE = 2**62

# PostgreSQL's error for a prepared statement whose result columns changed
# type under it (a migration), until the statement is prepared again.
_RESULT_TYPE_CHANGED = "cached plan must not change result type"


class _PreparingCursor(psycopg.Cursor):
    """A server-binding cursor that prepares every statement it runs."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        # By default psycopg sends an integer as smallint, integer or
        # bigint by its value, and each choice prepares the text again.
        if isinstance(params, Mapping):
            params = {name: _as_int8(value) for name, value in params.items()}
        elif params:
            params = [_as_int8(value) for value in params]
        try:
            return super().execute(query, params, prepare=True, binary=binary)
        except psycopg.errors.FeatureNotSupported as error:
            if not self._prepared_plan_outdated(error):
                raise
        # Outside a transaction nothing was undone, so the statements are
        # prepared again and this one runs once more. psycopg clears its
        # cache of prepared statements when it runs DEALLOCATE ALL.
        logger.warning(
            "A prepared statement's result changed type; preparing them again"
        )
        super().execute("DEALLOCATE ALL", prepare=False)
        return super().execute(query, params, prepare=True, binary=binary)

    def _prepared_plan_outdated(self, error) -> bool:
        idle = self.connection.info.transaction_status == pq.TransactionStatus.IDLE
        return _RESULT_TYPE_CHANGED in str(error) and idle


def _as_int8(value):
    return Int8(value) if type(value) is int else value


def prepared_cursor():
    """Return a cursor whose statements PostgreSQL prepares on the connection.

    A statement is parsed and planned the first time it runs on a
    connection, and later runs of the same text skip both, until a
    rollback makes psycopg drop them. Use it for hot statements whose best
    plan is the same for every value, such as lookups by a unique column,
    because PostgreSQL may keep a generic plan after five runs. Name every
    column, because a prepared `SELECT *` fails once a migration adds one.
    After a migration changes a named column's type, the statement is
    prepared again outside a transaction, and fails the caller's
    transaction inside one.

    Returns Django's usual cursor on other databases, when
    DATABASE_PREPARED_STATEMENTS is off, and while Django logs queries,
    because the log would show prepared statements without their values.
    The setting must be off behind PgBouncer in transaction mode before
    version 1.22, which cannot pass on the DEALLOCATE ALL that psycopg
    sends after a rollback.
    """
    # The proxy `django.db.connection` looks the connection up on every
    # attribute, so it is looked up once here.
    wrapper = connections[DEFAULT_DB_ALIAS]
    if (
        wrapper.vendor != "postgresql"
        or not settings.DATABASE_PREPARED_STATEMENTS
        or wrapper.queries_logged
    ):
        return wrapper.cursor()
    wrapper.close_if_health_check_failed()
    wrapper.ensure_connection()
    raw = wrapper.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _NEVER_AUTO_PREPARE
    with wrapper.wrap_database_errors:
        cursor = _PreparingCursor(raw)
    wrapper.validate_thread_sharing()
    return wrapper.make_cursor(cursor)


@cache
def model_columns(model, alias: str, vendor: str, names: tuple[str, ...] = ()):
    """Return what reading `model`'s rows by hand takes: a plan for `row_model`.

    The plan contains the SELECT list of its concrete columns under `alias`
    (a table name, or an alias from the caller's FROM clause), their
    attnames, and the converters Django applies to each value read. With
    field `names`, only those columns are read, in the model's field order
    as `Model.from_db` expects, and the other fields of the instances are
    deferred: reading one costs a query.
    Cached per model, alias, database vendor and names.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    fields = meta.concrete_fields
    if names:
        selected = {meta.get_field(name) for name in names}
        fields = [field for field in fields if field in selected]
    select = [f"{quote(alias)}.{quote(field.column)}" for field in fields]
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(alias)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        )
        if found:
            converters.append((index, column, found))
    return select, [field.attname for field in fields], converters


def row_model(model, plan, values):
    """Return the `model` instance built from its columns of a row.

    `values` are the columns in the plan's order, as the database returned
    them. Returns None when all are NULL, as when an outer join found no row.
    """
    _select, attnames, converters = plan
    if all(value is None for value in values):
        return None
    if converters:
        values = list(values)
        for index, column, functions in converters:
            for function in functions:
                values[index] = function(values[index], column, connection)
    return model.from_db(connection.alias, attnames, values)


@cache
def _select_statement(model, names: tuple[str, ...], vendor: str):
    meta = model._meta
    quote = connection.ops.quote_name
    plan = model_columns(model, meta.db_table, vendor)
    keys = [meta.get_field(name) for name in names]
    where = " AND ".join(f"{quote(field.column)} = %s" for field in keys)
    sql = (
        f"SELECT {', '.join(plan[0])} FROM {quote(meta.db_table)} WHERE {where} LIMIT 1"
    )
    return sql, plan, keys


def row_get(model, **filters):
    """Return the row that equality filters on unique columns select, or None.

    The same as `unique_row(model.objects.filter(**filters))` for plain
    field names (a foreign key takes an instance or its id), but the SELECT
    is built once per model and set of names, where the ORM compiles it on
    every call. For the hot paths of the send API.
    """
    names = tuple(sorted(filters))
    sql, plan, keys = _select_statement(model, names, connection.vendor)
    params = []
    for field, name in zip(keys, names, strict=True):
        value = filters[name]
        if isinstance(value, Model):
            value = value.pk
        params.append(field.get_db_prep_value(value, connection))

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return row_model(model, plan, row)


def values_in(model, fields: tuple[str, ...], **lists) -> list[tuple]:
    """Return `fields` of the rows of `model` whose columns are in the given lists.

    `values_in(GatewayEvent, ("event_id",), event_id=ids)` reads what
    `filter(event_id__in=ids).values_list("event_id")` reads. On PostgreSQL
    each list is one array parameter and the statement is built once. The
    ORM's IN list has a parameter per value, which Django prepares and
    psycopg quotes one by one.
    """
    if connection.vendor != "postgresql":
        filters = {f"{name}__in": values for name, values in lists.items()}
        return list(model.objects.filter(**filters).values_list(*fields))

    names = tuple(lists)
    with connection.cursor() as cursor:
        cursor.execute(
            _values_in_statement(model, fields, names),
            [list(lists[name]) for name in names],
        )
        return cursor.fetchall()


@cache
def _values_in_statement(model, fields: tuple[str, ...], names: tuple[str, ...]):
    meta = model._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in fields)
    conditions = " AND ".join(
        f"{quote(field.column)} = ANY(%s::{cast_type(field)}[])"
        for field in (meta.get_field(name) for name in names)
    )
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {conditions}"


@cache
def _build_plan(model):
    return [
        (field.name, field.attname, field.is_relation, field)
        for field in model._meta.concrete_fields
    ]


def row_build(model, **values):
    """Return a new, unsaved instance, as `model(**values)` would.

    Values are named by field name or attname, and a foreign key by an
    instance (cached on the new row) or by its id. A missing field takes its
    default, and an unknown name raises TypeError. Django sets positional
    values about three times faster than keyword ones (measured here), which
    matters for callbacks that build two rows per event.
    """
    args = []
    related = []
    used = 0
    for name, attname, is_relation, field in _build_plan(model):
        if name in values:
            value = values[name]
            used += 1
            if is_relation and isinstance(value, Model):
                related.append((field, value))
                value = value.pk
        elif attname in values:
            value = values[attname]
            used += 1
        else:
            value = field.get_default()
        args.append(value)
    if used != len(values):
        raise _unknown_names_error(model, values)
    obj = model(*args)
    for field, value in related:
        field.set_cached_value(obj, value)
    return obj


def _unknown_names_error(model, values) -> TypeError:
    """Return the error for the names in `values` that are not fields of `model`."""
    names = {name for name, *_rest in _build_plan(model)}
    names |= {attname for _name, attname, *_rest in _build_plan(model)}
    unknown = sorted(set(values) - names)
    return TypeError(
        f"{model.__name__} has no field named {', '.join(unknown)}; "
        "use field names or attnames."
    )


@cache
def _insert_statement(model, vendor: str):
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [
        field
        for field in meta.concrete_fields
        if not (field.primary_key and isinstance(field, AutoFieldMixin))
    ]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def row_create(model, **values):
    """Insert one new row and return its instance, as `objects.create` would.

    The INSERT is built once per model, where `create` compiles it on every
    call. Defaults and `auto_now`/`auto_now_add` are applied and the
    primary key is set. As with `bulk_create`, no signals are sent and
    `save()` is not called, so use it only for models that rely on
    neither. A unique violation raises IntegrityError.
    """
    obj = row_build(model, **values)
    sql, fields = _insert_statement(model, connection.vendor)
    params = [
        field.get_db_prep_save(field.pre_save(obj, True), connection)
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def rows_update(model, objs, fields: list[str]) -> None:
    """Save `fields` of several model instances in one statement.

    On PostgreSQL this is one ``UPDATE ... FROM jsonb_to_recordset(...)``
    whose rows travel as one JSON parameter (see `rows_json`). psycopg then
    reads the statement's placeholders once, where a VALUES list with a
    parameter per value made it split the text again on every run. The
    statement is not prepared, so that each run is planned for its number
    of rows and the table's size (see `json_rows_source`). Django's
    `bulk_update` builds a CASE expression per row and field, and compiling
    those took longer than the database's work for a callback's receipts.
    Other databases use `bulk_update`. As with `bulk_update`, no signals
    are sent and `auto_now` fields are not touched, so the caller sets
    `updated_at` itself.
    """
    objs = list(objs)
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return

    sql, plan = _update_statement(model, tuple(fields))
    rows = [
        {
            key: _json_value(field, getattr(obj, attname), native_type)
            for key, field, attname, native_type in plan
        }
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows_json(rows), len(rows)])


@cache
def _update_statement(model, fields: tuple[str, ...]):
    """Return the SQL of `rows_update` and the plan of each row's values.

    Each row is a JSON object whose keys are c0 (the primary key), c1 and
    so on, so a column's name never needs quoting in the record type.
    """
    meta = model._meta
    targets = [meta.pk, *(meta.get_field(name) for name in fields)]
    for field in targets:
        if getattr(field, "encoder", None) is not None:
            raise TypeError(
                f"rows_update cannot write {model.__name__}.{field.name}, a "
                "JSONField with an encoder of its own; save it with bulk_update."
            )
    keys = [f"c{index}" for index in range(len(targets))]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    record = ", ".join(
        f"{key} {cast_type(field)}" for key, field in zip(keys, targets, strict=True)
    )
    assignments = ", ".join(
        f"{quote(field.column)} = new.{key}"
        for key, field in zip(keys[1:], targets[1:], strict=True)
    )
    sql = (
        f"UPDATE {table} SET {assignments} "
        f"FROM {json_rows_source('new', record)} "
        f"WHERE {table}.{quote(meta.pk.column)} = new.c0"
    )
    plan = tuple(
        (key, field, field.attname, _json_native_type(field))
        for key, field in zip(keys, targets, strict=True)
    )
    return sql, plan


def json_rows_source(alias: str, record: str) -> str:
    """Return a FROM item that reads the rows of a `rows_json` parameter.

    `record` lists the columns and their types. The item takes two
    parameters: the document and its number of rows. PostgreSQL assumes
    that a function returns 100 rows, and for that many it read a table
    of about a thousand messages whole instead of looking each row up by
    its key, which made such an UPDATE take several milliseconds. The
    count in a LIMIT gives the planner the real number.
    """
    return (
        f"(SELECT * FROM jsonb_to_recordset(%s::jsonb) AS {alias} ({record}) "
        f"LIMIT %s) AS {alias}"
    )


def rows_json(rows: list) -> str:
    """Return `rows` as the JSON text of one ``jsonb_to_recordset`` parameter.

    PostgreSQL reads each value with its column type's input function, so a
    datetime goes as its ISO 8601 text, offset included, and a UUID as its
    text (`_json_value` prepares both).
    """
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


# In `_update_statement`'s plan, a JSONField, whose value goes into the
# document as it is. `_update_statement` rejects a JSONField with an
# encoder of its own.
_JSON_VALUE = object()


def _json_native_type(field):
    if field.get_internal_type() == "JSONField":
        return _JSON_VALUE
    return _native_type(field)


def _json_value(field, value, native_type):
    """Return `value` as a JSON document carries it for its column.

    Raises TypeError, naming the field, for a value that JSON cannot carry
    as its column reads it, such as bytes.
    """
    if native_type is _JSON_VALUE:
        return value
    value = _db_value(field, value, native_type)
    # Choices are str or int subclasses, which JSON writes as their values.
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    raise TypeError(
        f"rows_update cannot write the {type(value).__name__} value of "
        f"{field.model.__name__}.{field.name} as JSON; save that field with "
        "bulk_update instead."
    )


# The Python type that psycopg writes, to COPY or as a parameter, as the
# column expects, by Django field type. A value of that type skips the
# field's conversion.
# Anything else, and every JSONField value, goes through get_db_prep_save,
# as bulk_create would (True in a CharField becomes "True", a str in a
# JSONField becomes a JSON string).
_NATIVE_TYPES = {
    "AutoField": int,
    "BigAutoField": int,
    "SmallAutoField": int,
    "IntegerField": int,
    "BigIntegerField": int,
    "SmallIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveBigIntegerField": int,
    "PositiveSmallIntegerField": int,
    "BooleanField": bool,
    "CharField": str,
    "TextField": str,
    "UUIDField": uuid.UUID,
    "DateTimeField": datetime,
}


def rows_insert(model, objs) -> None:
    """Insert new model instances with COPY and set their primary keys.

    On PostgreSQL the rows go through one ``COPY ... FROM STDIN``, whose
    rows psycopg's binary package formats in C. It replaces `bulk_create`
    where that was most of a callback's time: Django prepares each value in
    Python, and psycopg quotes each element of the UNNEST arrays that
    Django 5.2 sends. Primary keys come from the table's sequence first, in
    one query. Other databases use `bulk_create`.

    As with `bulk_create`, no signals are sent and `save()` is not called,
    but defaults and `auto_now`/`auto_now_add` are applied. A unique
    violation raises IntegrityError and inserts nothing. Foreign keys are
    checked at commit, as Django creates them deferred on PostgreSQL.
    A model whose primary key is not an auto field uses `bulk_create`.
    """
    objs = list(objs)
    if not objs:
        return
    meta = model._meta
    pk = meta.pk
    if connection.vendor != "postgresql" or not isinstance(pk, AutoFieldMixin):
        model.objects.bulk_create(objs)
        return

    plan = _copy_plan(model)
    rows = []
    for obj in objs:
        row = []
        for field, attname, native_type, fills in plan:
            value = field.pre_save(obj, True) if fills else getattr(obj, attname)
            row.append(_copy_value(field, value, native_type))
        rows.append(row)
    keys = _copy_rows(model, [field for field, *_rest in plan], rows)

    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding = False
        obj._state.db = connection.alias


def rows_copy(model, rows, *, keys: bool = True) -> list | None:
    """Insert new rows given as dicts of field values; return their primary keys.

    The rows go to the database as `rows_insert` sends them, but without a
    model instance per row. Building and reading those instances took about
    a sixth of the instructions of a callback with 100 new messages. Keys
    are field names or attnames, and a foreign key is an instance or its
    id, as in `row_build`. A missing field takes its default, and every
    `auto_now` and `auto_now_add` field takes one time, the same for all
    the rows. An unknown name raises TypeError. Other databases, and a
    model with a field whose `pre_save` computes something else, build the
    instances and use `rows_insert`.

    With `keys` False, PostgreSQL numbers the rows as it inserts them, one
    query fewer, and None is returned.
    """
    rows = list(rows)
    if not rows:
        return [] if keys else None
    plan = None
    if connection.vendor == "postgresql" and isinstance(model._meta.pk, AutoFieldMixin):
        plan = _values_plan(model)
    if plan is None:
        objs = [row_build(model, **row) for row in rows]
        rows_insert(model, objs)
        return [obj.pk for obj in objs] if keys else None

    # As in Django's pre_save on an insert, the time replaces a value given.
    times = {datetime: timezone.now(), date: date.today()}
    values = []
    for row in rows:
        used = 0
        out = []
        for name, attname, is_relation, field, native_type, fill, default in plan:
            given = name in row or attname in row
            used += given
            if fill is not None:
                value = times[fill]
            elif not given:
                if default is _NEW_DEFAULT:
                    default = _copy_value(field, field.get_default(), native_type)
                out.append(default)
                continue
            else:
                value = row[name] if name in row else row[attname]
                if is_relation and isinstance(value, Model):
                    value = value.pk

            if type(value) is native_type and native_type is not datetime:
                # A str, int, bool or UUID goes as it is (see `_db_value`).
                out.append(value)
            else:
                out.append(_copy_value(field, value, native_type))
        if used != len(row):
            raise _unknown_names_error(model, row)
        values.append(out)
    return _copy_rows(model, [entry[3] for entry in plan], values, keys=keys)


# In `_values_plan`, the default of a field whose default is a callable,
# such as uuid4 or dict, which makes a new value for each row.
_NEW_DEFAULT = object()


@cache
def _values_plan(model):
    """Return, per column after the primary key, how `rows_copy` reads a row.

    Each entry is (name, attname, whether it is a relation, field, the
    native type or `_JSON_TEXT`, datetime or date for a field that
    `auto_now` or `auto_now_add` fills, else None, and the default as COPY
    takes it, or `_NEW_DEFAULT`). None when a field's `pre_save` computes a
    value of another kind, which only an instance can give it.
    """
    plan = []
    for field, attname, native_type, fills in _copy_plan(model):
        now_type = None
        if fills:
            if not isinstance(field, DateField) or not (
                getattr(field, "auto_now", False)
                or getattr(field, "auto_now_add", False)
            ):
                return None
            now_type = datetime if isinstance(field, DateTimeField) else date
        if field.has_default() and callable(field.default):
            default = _NEW_DEFAULT
        else:
            # Django gives every row this same value.
            default = _copy_value(field, field.get_default(), native_type)
        plan.append(
            (
                field.name,
                attname,
                field.is_relation,
                field,
                native_type,
                now_type,
                default,
            )
        )
    return tuple(plan)


def _copy_value(field, value, native_type):
    """Return `value` as COPY takes it for the column of `field`."""
    if native_type is not _JSON_TEXT:
        return _db_value(field, value, native_type)
    if type(value) in (dict, list):
        return json.dumps(value)
    return field.get_db_prep_save(value, connection)


def _copy_rows(model, fields, rows: list[list], *, keys: bool = True) -> list | None:
    """Write `rows`, the values of `fields` in order, with COPY; return their keys.

    The keys come from the table's sequence first, in one query, and are
    returned in the rows' order. With `keys` False the table's default
    numbers the rows, which saves that query, and None is returned.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    new_keys = None
    with connection.wrap_database_errors, connection.cursor() as cursor:
        if keys:
            # The sequence is looked up once. In the select list it was looked
            # up for every row, which took more than half of the query's time.
            cursor.execute(
                "WITH sequence AS MATERIALIZED (SELECT "
                "pg_get_serial_sequence(%s, %s)::regclass AS name) "
                "SELECT nextval(sequence.name) FROM sequence, generate_series(1, %s)",
                [meta.db_table, meta.pk.column, len(rows)],
            )
            new_keys = [row[0] for row in cursor.fetchall()]
            fields = [meta.pk, *fields]
            rows = [[key, *row] for key, row in zip(new_keys, rows, strict=True)]

        columns = ", ".join(quote(field.column) for field in fields)
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return new_keys


# In `_copy_plan`, the type of a JSONField without an encoder of its own.
# COPY writes a dict or list in it as the text `json.dumps` makes, which is
# what Django's JSONField and psycopg's Jsonb dumper make of it in three
# times the time. Other values go through the field as before.
_JSON_TEXT = object()


@cache
def _copy_plan(model):
    """Return, per column after the primary key, how `rows_insert` reads it.

    Each entry is (field, attname, the native type, `_JSON_TEXT` or None,
    whether pre_save fills the value). Only auto_now and auto_now_add fill
    one. Any other field's pre_save only reads the attribute, so it is read
    directly.
    """
    plan = []
    for field in model._meta.concrete_fields:
        if field is model._meta.pk:
            continue
        fills = getattr(field, "auto_now", False) or getattr(
            field, "auto_now_add", False
        )
        if not isinstance(field, DateField) and (
            type(field).pre_save is not Field.pre_save
        ):
            fills = True
        native_type = _native_type(field)
        if field.get_internal_type() == "JSONField" and field.encoder is None:
            native_type = _JSON_TEXT
        plan.append((field, field.attname, native_type, fills))
    return plan


def save_plan(fields) -> tuple:
    """Return the plan of `save_values` for model `fields`, in that order."""
    return tuple((field, _native_type(field)) for field in fields)


def save_values(obj, plan, *, add: bool) -> list:
    """Return the values of `obj`'s planned fields as a written-out INSERT
    (`add`) or UPDATE takes them.

    As in Django's save, each field's `pre_save` runs first (an `auto_now`
    field takes the time then), and its value is then prepared, except one
    of the column's native type, which psycopg writes as it is.
    """
    return [
        _db_value(field, field.pre_save(obj, add), native_type)
        for field, native_type in plan
    ]


def _native_type(field):
    if field.get_internal_type() == "JSONField":
        return None
    target = field.target_field if field.is_relation else field
    return _NATIVE_TYPES.get(target.get_internal_type())


def _db_value(field, value, native_type):
    """Return `value` as its column takes it, skipping Django's preparation
    for a value of the column's native type (`rows_insert`, `rows_update`)."""
    # The exact type is the common case and the quickest check. A datetime
    # still needs its offset checked.
    if type(value) is native_type and native_type is not datetime:
        return value
    if _is_native(value, native_type):
        return value
    return field.get_db_prep_save(value, connection)


def _is_native(value, native_type) -> bool:
    """Return True when psycopg can take `value` as it is for its column."""
    if native_type is None:
        return False
    if value is None:
        return True
    if native_type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if native_type is bool:
        return isinstance(value, bool)
    if native_type is datetime:
        return isinstance(value, datetime) and value.tzinfo is not None
    return isinstance(value, native_type)
