"""The prebuilt statements of hot paths: `rows_insert`, `rows_copy`,
`rows_update` and `values_in` for callbacks, `row_get` and `row_create` for
the send API, and `row_build`, which builds the new rows of both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Customer, Message, PendingMessageUpdate
from sessions_wa.models import GatewayEvent
from whatsapp_saas.queries import (
    cast_type,
    row_build,
    row_create,
    row_get,
    rows_copy,
    rows_insert,
    rows_update,
    save_plan,
    save_values,
    values_in,
)

from .helpers import customer_make, outbound_make

AWKWARD_TEXT = "Tab\there, line\nbreak, back\\slash, 'quotes' \"too\", 号码 🎉"


def _inbound_values(user, customer, gateway_id: str, **fields) -> dict:
    values = {
        "owner_id": user.pk,
        "customer_id": customer.pk,
        "direction": Message.Direction.INBOUND,
        "source": Message.Source.CONTACT,
        "kind": Message.Kind.TEXT,
        "body": AWKWARD_TEXT,
        "metadata": {"list": [1, "two", None], "text": AWKWARD_TEXT},
        "status": Message.Status.RECEIVED,
        "chat_jid": "5511900000001@s.whatsapp.net",
        "gateway_message_id": gateway_id,
        "timestamp": timezone.now(),
    }
    values.update(fields)
    return values


def _inbound(user, customer, gateway_id: str, **fields) -> Message:
    return Message(**_inbound_values(user, customer, gateway_id, **fields))


def _event_values(user, event_id: uuid.UUID, seq: int) -> dict:
    return {
        "event_id": event_id,
        "user": user,
        "gateway_user_id": user.pk,
        "seq": seq,
        "type": "message.status",
        "occurred_at": timezone.now(),
        "data": {"status": "read", "note": AWKWARD_TEXT},
        "outcome": GatewayEvent.Outcome.APPLIED,
    }


def _stored(**lookup) -> dict:
    """Return the stored columns of one message, except its ids and times."""
    row = Message.objects.filter(**lookup).values().get()
    for key in ("id", "code", "gateway_message_id", "created_at", "updated_at"):
        row.pop(key)
    return row


def test_insert_stores_what_bulk_create_stores(alice):
    customer = customer_make(alice)
    copied = _inbound(alice, customer, "3EB0COPY")
    created = _inbound(alice, customer, "3EB0BULK", timestamp=copied.timestamp)

    rows_insert(Message, [copied])
    Message.objects.bulk_create([created])

    assert _stored(pk=copied.pk) == _stored(pk=created.pk)


def test_insert_json_matches_bulk_create(alice):
    customer = customer_make(alice)
    json_fields = {
        "edit_history": [{"text": AWKWARD_TEXT, "at": "2026-12-05T10:00:00Z"}],
        "reactions": {"5511900000001@s.whatsapp.net": "👍", "tab\tkey": ""},
        "metadata": {},
    }
    copied = _inbound(alice, customer, "3EB0JSONCOPY", **json_fields)
    created = _inbound(
        alice, customer, "3EB0JSONBULK", timestamp=copied.timestamp, **json_fields
    )

    rows_insert(Message, [copied])
    Message.objects.bulk_create([created])

    assert _stored(pk=copied.pk) == _stored(pk=created.pk)
    assert Message.objects.get(pk=copied.pk).edit_history == json_fields["edit_history"]


def test_insert_sets_primary_keys_in_order(alice):
    customer = customer_make(alice)
    rows = [_inbound(alice, customer, f"3EB0K{number}") for number in range(5)]

    rows_insert(Message, rows)

    stored = dict(Message.objects.values_list("gateway_message_id", "pk"))
    assert [message.pk for message in rows] == [
        stored[m.gateway_message_id] for m in rows
    ]
    assert all(not message._state.adding for message in rows)


def test_insert_fills_auto_now_fields(alice):
    customer = customer_make(alice)
    message = _inbound(alice, customer, "3EB0NOW")
    before = timezone.now()

    rows_insert(Message, [message])

    stored = Message.objects.get(pk=message.pk)
    assert stored.created_at >= before
    assert stored.updated_at >= before


@pytest.mark.parametrize(
    ("insert", "make"),
    [
        pytest.param(rows_insert, lambda *args: _inbound(*args), id="instances"),
        pytest.param(rows_copy, lambda *args: _inbound_values(*args), id="dicts"),
    ],
)
def test_insert_conflict_raises_and_inserts_nothing(alice, insert, make):
    customer = customer_make(alice)
    insert(Message, [make(alice, customer, "3EB0TAKEN")])
    rows = [
        make(alice, customer, "3EB0FREE"),
        make(alice, customer, "3EB0TAKEN"),
    ]

    with pytest.raises(IntegrityError), transaction.atomic():
        insert(Message, rows)

    assert not Message.objects.filter(gateway_message_id="3EB0FREE").exists()


def test_insert_stores_gateway_event_rows(alice):
    event_id = uuid.uuid4()
    row = GatewayEvent(**_event_values(alice, event_id, seq=7))

    rows_insert(GatewayEvent, [row])

    stored = GatewayEvent.objects.get(event_id=event_id)
    assert stored.pk == row.pk
    assert stored.data == {"status": "read", "note": AWKWARD_TEXT}
    assert stored.user_id == alice.pk


def test_insert_makes_no_query_without_rows(alice):
    with CaptureQueriesContext(connection) as queries:
        rows_insert(Message, [])

    assert queries.captured_queries == []


def test_copy_matches_bulk_create(alice):
    customer = customer_make(alice)
    values = _inbound_values(alice, customer, "3EB0DICT")
    created = Message(**{**values, "gateway_message_id": "3EB0BULK"})

    rows_copy(Message, [values])
    Message.objects.bulk_create([created])

    assert _stored(gateway_message_id="3EB0DICT") == _stored(
        gateway_message_id="3EB0BULK"
    )


def test_copy_returns_primary_keys_in_order(alice):
    customer = customer_make(alice)
    rows = [_inbound_values(alice, customer, f"3EB0D{number}") for number in range(5)]

    keys = rows_copy(Message, rows)

    stored = dict(Message.objects.values_list("gateway_message_id", "pk"))
    assert keys == [stored[f"3EB0D{number}"] for number in range(5)]


def test_copy_calls_default_per_row(alice):
    customer = customer_make(alice)
    rows = [_inbound_values(alice, customer, f"3EB0C{number}") for number in range(3)]
    for row in rows:
        del row["metadata"]

    keys = rows_copy(Message, rows)

    stored = Message.objects.filter(pk__in=keys)
    assert len({message.code for message in stored}) == 3
    assert [message.metadata for message in stored] == [{}, {}, {}]
    assert {message.error for message in stored} == {""}


def test_copy_auto_now_replaces_given_time(alice):
    customer = customer_make(alice)
    long_ago = timezone.now() - timedelta(days=400)
    before = timezone.now()

    (key,) = rows_copy(
        Message,
        [_inbound_values(alice, customer, "3EB0AUTO", created_at=long_ago)],
    )

    stored = Message.objects.get(pk=key)
    assert stored.created_at >= before
    assert stored.updated_at >= before


def test_copy_takes_foreign_keys_as_instances(alice):
    customer = customer_make(alice)
    values = _inbound_values(alice, customer, "3EB0INST")
    del values["owner_id"], values["customer_id"]

    (key,) = rows_copy(Message, [{**values, "owner": alice, "customer": customer}])

    stored = Message.objects.get(pk=key)
    assert (stored.owner_id, stored.customer_id) == (alice.pk, customer.pk)


def test_copy_without_keys_uses_table_default(alice):
    event_ids = [uuid.uuid4(), uuid.uuid4()]
    rows = [
        _event_values(alice, event_id, seq) for seq, event_id in enumerate(event_ids)
    ]

    assert rows_copy(GatewayEvent, rows, keys=False) is None

    stored = GatewayEvent.objects.filter(event_id__in=event_ids).order_by("pk")
    assert [event.event_id for event in stored] == event_ids
    assert stored[0].data == {"status": "read", "note": AWKWARD_TEXT}
    assert stored[0].received_at is not None


def test_copy_rejects_unknown_names(alice):
    customer = customer_make(alice)
    values = _inbound_values(alice, customer, "3EB0NAME", colour="red")

    with pytest.raises(TypeError, match="colour"):
        rows_copy(Message, [values])

    assert not Message.objects.filter(gateway_message_id="3EB0NAME").exists()


def test_copy_makes_no_query_without_rows(alice):
    with CaptureQueriesContext(connection) as queries:
        assert rows_copy(Message, []) == []
        assert rows_copy(GatewayEvent, [], keys=False) is None

    assert queries.captured_queries == []


def test_values_in_matches_values_list(alice, charlie):
    for owner, gateway_id in [(alice, "3EB0A"), (alice, "3EB0B"), (charlie, "3EB0A")]:
        PendingMessageUpdate.objects.create(
            owner=owner, gateway_message_id=gateway_id, kind="status"
        )
    lists = {"owner_id": [alice.pk], "gateway_message_id": ["3EB0A", "3EB0C"]}
    fields = ("owner_id", "gateway_message_id")

    found = values_in(PendingMessageUpdate, fields, **lists)

    filters = {f"{name}__in": values for name, values in lists.items()}
    expected = PendingMessageUpdate.objects.filter(**filters).values_list(*fields)
    assert found == list(expected)
    assert found == [(alice.pk, "3EB0A")]


def test_values_in_reads_uuid_columns(alice):
    event_id = uuid.uuid4()
    GatewayEvent.objects.create(**_event_values(alice, event_id, seq=1))

    found = values_in(GatewayEvent, ("event_id",), event_id=[event_id, uuid.uuid4()])

    assert found == [(event_id,)]


def test_values_in_empty_list_finds_nothing(alice):
    PendingMessageUpdate.objects.create(
        owner=alice, gateway_message_id="3EB0A", kind="status"
    )

    found = values_in(
        PendingMessageUpdate, ("owner_id",), owner_id=[alice.pk], gateway_message_id=[]
    )

    assert found == []


def test_update_saves_each_rows_values(alice):
    customer = customer_make(alice)
    first = outbound_make(alice, customer, status="sent")
    second = outbound_make(alice, customer, status="sent")
    delivered = timezone.now() - timedelta(minutes=5)
    first.status, first.delivered_at = "delivered", delivered
    second.status, second.read_at = "read", delivered + timedelta(minutes=1)

    rows_update(Message, [first, second], ["status", "delivered_at", "read_at"])

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.delivered_at, first.read_at) == (
        "delivered",
        delivered,
        None,
    )
    assert (second.status, second.read_at) == ("read", delivered + timedelta(minutes=1))


def test_update_leaves_other_fields(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sent", body="Keep me")
    message.status = "delivered"
    message.body = "Changed in memory only"

    rows_update(Message, [message], ["status"])

    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.body == "Keep me"


def test_update_writes_a_column_of_nulls(alice):
    customer = customer_make(alice)
    rows = [
        outbound_make(alice, customer, status="failed", failed_at=timezone.now())
        for _ in range(2)
    ]
    for message in rows:
        message.failed_at = None

    rows_update(Message, rows, ["failed_at"])

    assert not Message.objects.filter(failed_at__isnull=False).exists()


def test_update_keeps_quotes_and_scripts(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="failed")
    message.error = "O'Brien's \"number\" – 号码无效 \\ end"

    rows_update(Message, [message], ["error"])

    message.refresh_from_db()
    assert message.error == "O'Brien's \"number\" – 号码无效 \\ end"


def test_update_converts_json_choices_times(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sent")
    message.metadata = {"part": 2, "note": "it's"}
    message.status = Message.Status.READ
    three_behind = dt_timezone(timedelta(hours=-3))
    message.read_at = datetime(2026, 3, 1, 9, 30, tzinfo=three_behind)

    rows_update(Message, [message], ["metadata", "status", "read_at"])

    stored = Message.objects.values("metadata", "status", "read_at").get(pk=message.pk)
    assert stored == {
        "metadata": {"part": 2, "note": "it's"},
        "status": "read",
        "read_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    }


def test_update_runs_one_statement(alice):
    customer = customer_make(alice)
    rows = [outbound_make(alice, customer, status="sent") for _ in range(20)]
    for message in rows:
        message.status = "delivered"

    with CaptureQueriesContext(connection) as queries:
        rows_update(Message, rows, ["status"])

    assert len(queries.captured_queries) == 1
    assert Message.objects.filter(status="delivered").count() == 20


def _update_plans(execute, sql, params, many, context, *, plans):
    if sql.startswith("UPDATE "):
        context["cursor"].execute(f"EXPLAIN {sql}", params)
        plans.append("\n".join(row[0] for row in context["cursor"].fetchall()))
    return execute(sql, params, many, context)


@pytest.mark.postgres
def test_small_update_reads_rows_by_key(alice):
    # Planned for the 100 rows PostgreSQL assumes a function returns, the
    # UPDATE read this table whole instead of two rows by their key.
    customer = customer_make(alice)
    rows_insert(
        Message,
        [
            _inbound(alice, customer, f"3EB0PLAN{n:05}", body="x", metadata={})
            for n in range(3000)
        ],
    )
    rows = list(Message.objects.order_by("pk")[:2])
    for message in rows:
        message.status = Message.Status.READ
    plans = []

    with connection.execute_wrapper(partial(_update_plans, plans=plans)):
        rows_update(Message, rows, ["status"])

    assert "Index Scan using messaging_message_pkey" in plans[0]
    assert "Seq Scan on messaging_message" not in plans[0]


def test_update_makes_no_query_without_rows(alice):
    with CaptureQueriesContext(connection) as queries:
        rows_update(Message, [], ["status"])

    assert queries.captured_queries == []


def test_insert_keeps_a_json_string(alice):
    customer = customer_make(alice)
    message = _inbound(alice, customer, "3EB0JSONSTR", metadata='{"a": 1}')

    rows_insert(Message, [message])

    assert Message.objects.get(pk=message.pk).metadata == '{"a": 1}'


def test_insert_stores_json_true(alice):
    customer = customer_make(alice)
    message = _inbound(alice, customer, "3EB0JSONTRUE", metadata=True)

    rows_insert(Message, [message])

    assert Message.objects.get(pk=message.pk).metadata is True


def test_insert_converts_bool_in_char_field(alice):
    customer = customer_make(alice)
    message = _inbound(alice, customer, "3EB0BOOLCHAR", chat_jid=True)

    rows_insert(Message, [message])

    # As bulk_create stores it: CharField.to_python gives "True", COPY "t".
    assert Message.objects.get(pk=message.pk).chat_jid == "True"


def _all_fields(obj) -> dict:
    fields = obj._meta.concrete_fields
    return {field.attname: getattr(obj, field.attname) for field in fields}


def test_get_reads_what_the_orm_reads(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice,
        customer,
        metadata={"part": 1, "text": AWKWARD_TEXT},
        reactions={"5511900000002@s.whatsapp.net": "👍"},
        sent_at=timezone.now(),
    )

    found = row_get(Message, owner=alice, code=message.code)

    assert _all_fields(found) == _all_fields(Message.objects.get(pk=message.pk))
    assert found._state.adding is False


def test_get_takes_an_id_for_a_foreign_key(alice):
    customer = customer_make(alice)

    found = row_get(Customer, owner=alice.pk, code=customer.code)

    assert found.pk == customer.pk


def test_get_returns_none_for_another_owners_row(alice, charlie):
    customer = customer_make(alice)

    assert row_get(Customer, owner=charlie, code=customer.code) is None


def test_get_runs_one_query(alice):
    customer = customer_make(alice)

    with CaptureQueriesContext(connection) as queries:
        row_get(Customer, owner=alice, code=customer.code)

    assert len(queries) == 1


def test_create_stores_what_the_orm_stores(alice):
    customer = customer_make(alice)
    values = {
        "owner": alice,
        "customer": customer,
        "direction": Message.Direction.OUTBOUND,
        "source": Message.Source.API,
        "kind": Message.Kind.TEXT,
        "body": AWKWARD_TEXT,
        "metadata": {"part": 1, "parts": 2},
        "status": Message.Status.QUEUED,
        "chat_jid": customer.wa_jid,
        "timestamp": timezone.now(),
        "idempotency_key": "key-1",
    }

    created = row_create(Message, **values)
    by_orm = Message.objects.create(**{**values, "idempotency_key": "key-2"})

    stored = _stored(pk=created.pk)
    expected = _stored(pk=by_orm.pk)
    assert stored.pop("idempotency_key") == "key-1"
    expected.pop("idempotency_key")
    assert stored == expected


def _queued_values(user, customer) -> dict:
    return {
        "owner": user,
        "customer": customer,
        "direction": Message.Direction.OUTBOUND,
        "source": Message.Source.API,
        "kind": Message.Kind.TEXT,
        "body": "Hello",
        "status": Message.Status.QUEUED,
        "timestamp": timezone.now(),
    }


def test_create_sets_key_defaults_and_times(alice):
    customer = customer_make(alice)

    message = row_create(Message, **_queued_values(alice, customer))

    stored = Message.objects.get(pk=message.pk)
    assert message.code == stored.code
    assert stored.created_at is not None
    assert stored.created_at == message.created_at
    assert message._state.adding is False


def test_create_raises_on_a_unique_conflict(alice):
    customer = customer_make(alice)
    existing = outbound_make(alice, customer)

    with pytest.raises(IntegrityError), transaction.atomic():
        row_create(Message, **_queued_values(alice, customer), code=existing.code)

    assert Message.objects.filter(code=existing.code).count() == 1


def test_build_matches_keyword_construction(alice):
    customer = customer_make(alice)
    values = {**_queued_values(alice, customer), "body": AWKWARD_TEXT}

    built = _all_fields(row_build(Message, **values))
    by_keywords = _all_fields(Message(**values))

    # The code is a new random UUID each time.
    assert isinstance(built.pop("code"), uuid.UUID)
    by_keywords.pop("code")
    assert built == by_keywords


def test_build_caches_foreign_key_instance(alice):
    customer = customer_make(alice)

    message = row_build(Message, owner=alice, customer_id=customer.pk)

    with CaptureQueriesContext(connection) as queries:
        assert message.owner is alice
    assert len(queries) == 0
    assert message.customer_id == customer.pk


def test_build_takes_none_for_user():
    event_id = uuid.uuid4()

    row = row_build(GatewayEvent, event_id=event_id, user=None, seq=3, type="a.b")

    assert row.user_id is None
    assert row.event_id == event_id
    assert row._state.adding is True


def test_build_rejects_unknown_names():
    with pytest.raises(TypeError, match="colour"):
        row_build(Message, body="Hi", colour="red")


@pytest.mark.postgres
def test_cast_type_drops_length_and_precision():
    from django.contrib.postgres.fields import ArrayField
    from django.db import models

    assert cast_type(Message._meta.get_field("status")) == "varchar"
    assert cast_type(models.DecimalField(max_digits=9, decimal_places=2)) == "numeric"
    assert cast_type(ArrayField(models.CharField(max_length=10))) == "varchar[]"


def _save_plan(*names):
    return save_plan([Message._meta.get_field(name) for name in names])


def test_save_values_set_auto_now_fields(alice):
    message = row_build(Message, owner=alice, body="Hi", updated_at=None)

    values = save_values(message, _save_plan("owner", "body", "updated_at"), add=True)

    assert values[:2] == [alice.pk, "Hi"]
    assert values[2] is message.updated_at
    assert timezone.is_aware(message.updated_at)


def test_save_values_prepare_a_value_of_another_type(alice):
    code = uuid.uuid4()
    message = row_build(Message, owner=alice, code=str(code), unread=0)

    values = save_values(message, _save_plan("code", "unread"), add=True)

    # A database without a UUID type stores the 32 hex digits.
    stored_code = code if connection.features.has_native_uuid_field else code.hex
    assert values == [stored_code, False]
