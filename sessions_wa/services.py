"""Writes and business rules for WhatsApp sessions and gateway callbacks.

Every change of `WhatsAppSession.state` goes through `session_transition`,
which checks the move against `TRANSITIONS`. Callers hold a row lock
(`select_for_update`) on the session while they decide and transition.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict, deque
from datetime import datetime, timedelta
from functools import cache

from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import subscription_inactive_message, subscription_require_active
from messaging.phones import normalize_jid
from whatsapp_saas.exceptions import ApplicationError
from whatsapp_saas.queries import (
    model_columns,
    row_build,
    row_model,
    rows_copy,
    values_in,
)

from . import reasons
from .events import (
    MESSAGING_TYPE_PREFIXES,
    SESSION_CONNECTED,
    SESSION_DISCONNECTED,
    SESSION_EVENT_TYPES,
    SESSION_LOGGED_OUT,
    SESSION_QR,
    GatewayEventIn,
    data_redact,
    events_validate,
    parse_time,
    text_clean,
)
from .gateway import gateway_url_for_user
from .masking import mask_phone
from .models import GatewayEvent, WhatsAppSession

logger = logging.getLogger(__name__)

State = WhatsAppSession.State
Outcome = GatewayEvent.Outcome

# Moves to a different state; staying in the current state is always allowed
# and refreshes that state's fields (a rotated QR, a new push name).
TRANSITIONS: dict[str, frozenset[str]] = {
    State.NEW: frozenset({State.STARTING}),
    State.STARTING: frozenset(
        {
            State.QR_PENDING,
            State.CONNECTED,
            State.DISCONNECTED,
            State.LOGGED_OUT,
            State.FAILED,
        }
    ),
    State.QR_PENDING: frozenset(
        {
            State.QR_EXPIRED,
            State.CONNECTED,
            State.DISCONNECTED,
            State.LOGGED_OUT,
            State.FAILED,
        }
    ),
    State.QR_EXPIRED: frozenset({State.STARTING, State.LOGGED_OUT}),
    State.CONNECTED: frozenset({State.DISCONNECTED, State.LOGGED_OUT, State.FAILED}),
    # A reconnect of a session that was still pairing shows a new QR code.
    State.DISCONNECTED: frozenset(
        {
            State.STARTING,
            State.QR_PENDING,
            State.CONNECTED,
            State.LOGGED_OUT,
            State.FAILED,
        }
    ),
    State.LOGGED_OUT: frozenset({State.STARTING}),
    State.FAILED: frozenset({State.STARTING, State.LOGGED_OUT}),
}

# A start request in these states changes nothing and enqueues nothing.
START_NOOP_STATES = frozenset({State.STARTING, State.QR_PENDING, State.CONNECTED})
# States in which the gateway may be holding a client for the user.
LIVE_STATES = frozenset(
    {State.STARTING, State.QR_PENDING, State.CONNECTED, State.DISCONNECTED}
)

# Gateway /status states mapped to Django states; "stopped" is a client the
# gateway closed while keeping its auth.
GATEWAY_STATES = {
    "starting": State.STARTING,
    "qr_pending": State.QR_PENDING,
    "qr_expired": State.QR_EXPIRED,
    "connected": State.CONNECTED,
    "disconnected": State.DISCONNECTED,
    "logged_out": State.LOGGED_OUT,
    "failed": State.FAILED,
    "stopped": State.DISCONNECTED,
}

# Maximum time WhatsAppSession.last_activity_at may lag behind the latest callback.
ACTIVITY_PRECISION = timedelta(minutes=1)

_DEVICE_SUFFIX_RE = re.compile(r":\d+(?=@)")
PUSH_NAME_MAX_LENGTH = WhatsAppSession._meta.get_field("push_name").max_length


class SessionTransitionError(ApplicationError):
    """The requested state change is not in the transition table."""

    def __init__(self, current: str, target: str):
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        super().__init__(
            f"A WhatsApp session cannot move from {current} to {target}; "
            f"from {current} it can move to: {allowed}.",
            code="invalid_session_transition",
            extra={"from": current, "to": target},
            status_code=409,
        )


def transition_allowed(current: str, target: str) -> bool:
    return current == target or target in TRANSITIONS[current]


def session_transition(
    session: WhatsAppSession,
    target: str,
    *,
    fields: dict | None = None,
    error_code: str = "",
    error_detail: str = "",
    at: datetime | None = None,
) -> WhatsAppSession:
    """Move `session` to `target`, update its fields and save it.

    Raises SessionTransitionError, leaving the session untouched, when the
    move is not in `TRANSITIONS`. The error code and detail describe why the
    session is in its new state; a transition without them clears the last
    error. `at` is when the change happened (the event time for callbacks).
    """
    current = session.state
    if not transition_allowed(current, target):
        raise SessionTransitionError(current, target)

    now = at or timezone.now()
    session.state = target
    session.connected = target == State.CONNECTED

    if target == State.CONNECTED:
        if current != State.CONNECTED or session.connected_since is None:
            session.connected_since = now
    else:
        session.connected_since = None

    if target != State.QR_PENDING:
        session.qr = ""
        session.qr_expires_at = None
    if target == State.LOGGED_OUT:
        # The gateway wiped the login, so the next scan may link another phone.
        session.jid = session.phone = session.lid = session.push_name = ""

    session.last_error_code = error_code
    session.last_error = reasons.reason_message_en(error_code, error_detail)

    for name, value in (fields or {}).items():
        setattr(session, name, value)
    session.save()

    if current != target:
        logger.info(
            "Session %s of user %s moved from %s to %s%s",
            session.pk,
            session.user_id,
            current,
            target,
            f" ({error_code})" if error_code else "",
        )
    return session


def transition_path(current: str, target: str) -> list[str] | None:
    """Return the shortest list of states that leads from `current` to `target`.

    The list excludes `current`, is empty when both are equal, and is None
    when the table has no path.
    """
    if current == target:
        return []

    previous: dict[str, str] = {current: current}
    queue = deque([current])
    while queue:
        state = queue.popleft()
        for following in sorted(TRANSITIONS[state]):
            if following in previous:
                continue
            previous[following] = state
            if following == target:
                path = [target]
                while previous[path[-1]] != current:
                    path.append(previous[path[-1]])
                return path[::-1]
            queue.append(following)
    return None


# Requests from the subscriber.


def session_get_or_create(*, user: User) -> tuple[WhatsAppSession, bool]:
    """Return the user's session, creating it in state `new` when missing."""
    return WhatsAppSession.objects.get_or_create(
        user=user,
        defaults={
            "session_key": WhatsAppSession.key_for_user_id(user.pk),
            "gateway_url": gateway_url_for_user(user.pk),
        },
    )


def session_start_request(*, user: User) -> tuple[WhatsAppSession, bool]:
    """Start linking the user's WhatsApp; returns the session and if it is new.

    Raises ApplicationError (subscription_inactive) unless the subscription is
    active. A session that is already starting, showing a QR code or
    connected is returned unchanged. Otherwise it moves to `starting` and the
    start task is enqueued once the transaction commits.
    """
    from .tasks import session_start as session_start_task

    subscription_require_active(user)

    with transaction.atomic():
        session, created = session_get_or_create(user=user)
        session = WhatsAppSession.objects.select_for_update().get(pk=session.pk)
        if session.state in START_NOOP_STATES:
            logger.info(
                "Start of session %s ignored: it is already %s",
                session.pk,
                session.state,
            )
            return session, created

        # gateway_url keeps naming the node that held the session until the
        # start task has moved it, so the task can stop it there first.
        session_transition(
            session, State.STARTING, fields={"last_activity_at": timezone.now()}
        )
        session_start_task.delay_on_commit(session.pk)

    return session, created


def session_logout_request(*, user: User) -> WhatsAppSession | None:
    """Log the user's WhatsApp out and wipe its login on the gateway.

    Returns None when the user has no session. The session shows
    `logged_out` at once; the logout task removes the login from the gateway.
    """
    from .tasks import session_logout as session_logout_task

    with transaction.atomic():
        session = WhatsAppSession.objects.select_for_update().filter(user=user).first()
        if session is None:
            return None

        already_done = session.state == State.LOGGED_OUT and (
            session.last_error_code != reasons.LOGOUT_UNREACHABLE
        )
        if session.state == State.NEW or already_done:
            return session

        session_transition(
            session, State.LOGGED_OUT, fields={"last_activity_at": timezone.now()}
        )
        session_logout_task.delay_on_commit(session.pk)

    return session


# Outcomes of gateway calls made by the tasks.


def session_start_succeeded(
    *, session_id: int, gateway_url: str, expected_updated_at: datetime, status: dict
) -> None:
    """Record the node that runs the session and apply the state /start returned."""
    WhatsAppSession.objects.filter(pk=session_id).update(gateway_url=gateway_url)
    session_gateway_status_apply(
        session_id=session_id, expected_updated_at=expected_updated_at, status=status
    )


def session_start_failed(*, session_id: int, error_code: str, detail: str) -> None:
    """Move a session whose start cannot succeed to `failed`, with the reason."""
    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update().filter(pk=session_id).first()
        )
        if session is None or session.state != State.STARTING:
            return
        session_transition(
            session, State.FAILED, error_code=error_code, error_detail=detail
        )


def session_logout_failed(*, session_id: int, detail: str) -> None:
    """Tell the subscriber to unlink the device on the phone instead."""
    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update().filter(pk=session_id).first()
        )
        if session is None or session.state != State.LOGGED_OUT:
            return
        session_transition(
            session,
            State.LOGGED_OUT,
            error_code=reasons.LOGOUT_UNREACHABLE,
            error_detail=detail,
        )


def session_stopped(*, session_id: int, error_code: str) -> None:
    """Show a session whose client the gateway closed as `disconnected`."""
    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update().filter(pk=session_id).first()
        )
        if session is None or session.state not in LIVE_STATES:
            return
        session_transition(session, State.DISCONNECTED, error_code=error_code)


def session_idle_delete(*, session_id: int, cutoff: datetime) -> bool:
    """Delete the session if it is still unused since `cutoff`; True if deleted."""
    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update().filter(pk=session_id).first()
        )
        if session is None:
            return False
        if session.state == State.CONNECTED or session.last_activity_at >= cutoff:
            return False
        session.delete()

    logger.info("Deleted session %s, unused since %s", session_id, cutoff)
    return True


def session_gateway_unreachable_mark(*, session_id: int) -> None:
    """Record that the gateway did not respond about the session.

    The first miss sets the time; later ones keep it. `updated_at` is left
    alone, because reconcile compares it to detect newer callbacks.
    """
    marked = WhatsAppSession.objects.filter(
        pk=session_id, gateway_unreachable_since__isnull=True
    ).update(gateway_unreachable_since=timezone.now())
    if marked:
        logger.warning(
            "Gateway did not respond about session %s, so it is marked unreachable",
            session_id,
        )


def session_gateway_reachable_mark(*, session_ids) -> None:
    """Clear the unreachable mark of sessions the gateway responded for."""
    if not session_ids:
        return
    cleared = WhatsAppSession.objects.filter(
        pk__in=list(session_ids), gateway_unreachable_since__isnull=False
    ).update(gateway_unreachable_since=None)
    if cleared:
        logger.info(
            "Gateway reachable again for %s sessions (%s)",
            cleared,
            ", ".join(str(pk) for pk in sorted(session_ids)),
        )


def session_gateway_status_apply(
    *, session_id: int, expected_updated_at: datetime, status: dict | None
) -> str:
    """Repair the session from the gateway's own view of it.

    `status` is the gateway's /status (or /start) response, or None when the
    gateway does not know the session (404). Nothing changes when the
    session was updated after `expected_updated_at`, because a callback
    newer than the gateway response may have been applied since. Returns a
    word for the log: missing, changed, in_sync, repaired, restarted or
    unreachable_state.
    """
    from .tasks import session_start as session_start_task

    with transaction.atomic():
        session = (
            WhatsAppSession.objects.select_for_update().filter(pk=session_id).first()
        )
        if session is None:
            return "missing"
        if session.updated_at != expected_updated_at:
            return "changed"

        if status is None:
            return _session_unknown_to_gateway(session, session_start_task)

        target = GATEWAY_STATES.get(str(status.get("state")))
        if target is None:
            logger.warning(
                "Gateway reported unknown state %r for session %s",
                status.get("state"),
                session.pk,
            )
            return "unreachable_state"

        fields = {}
        if target == State.CONNECTED:
            fields = _identity_fields(status, default=session)
        if target == session.state:
            if fields:
                session_transition(session, target, fields=fields)
            return "in_sync"

        path = transition_path(session.state, target)
        if path is None:
            logger.warning(
                "No transition leads session %s from %s to the gateway's %s",
                session.pk,
                session.state,
                target,
            )
            return "unreachable_state"

        error_code = _gateway_state_error_code(str(status.get("state")))
        for step in path:
            is_last = step == target
            session_transition(
                session,
                step,
                fields=fields if is_last else None,
                error_code=error_code if is_last else "",
            )

    logger.info("Session %s moved to the gateway's state %s", session_id, target)
    return "repaired"


def _session_unknown_to_gateway(session: WhatsAppSession, start_task) -> str:
    reconnecting = session.state == State.DISCONNECTED and session.last_error_code in (
        reasons.NETWORK,
        reasons.RESTART,
    )
    if session.state == State.CONNECTED or reconnecting:
        # The node restarted or the user moved to another node. The saved
        # login may still be valid, so start again: the gateway restores it
        # without a QR code, or reports logged_out(restore_failed).
        if subscription_inactive_message(session.user) is not None:
            session_transition(
                session, State.DISCONNECTED, error_code=reasons.SUBSCRIPTION_INACTIVE
            )
            return "repaired"

        session_transition(session, State.DISCONNECTED, error_code=reasons.RESTART)
        session_transition(session, State.STARTING)
        start_task.delay_on_commit(session.pk)
        logger.info("Session %s unknown to the gateway; starting it again", session.pk)
        return "restarted"

    if session.state == State.STARTING:
        session_transition(session, State.FAILED, error_code=reasons.GATEWAY_LOST)
        return "repaired"

    if session.state == State.QR_PENDING:
        session_transition(session, State.QR_EXPIRED)
        return "repaired"

    return "in_sync"


def _gateway_state_error_code(gateway_state: str) -> str:
    return {
        "disconnected": reasons.NETWORK,
        "stopped": reasons.STOPPED,
        "failed": reasons.GATEWAY_FAILED,
        "logged_out": reasons.LOGGED_OUT,
    }.get(gateway_state, "")


def _identity_fields(data: dict, *, default: WhatsAppSession | None = None) -> dict:
    """Return jid, phone, lid and push_name from gateway data, normalised."""
    jid = data.get("jid") or (default.jid if default else "")
    try:
        # Without a device suffix, in lower case and on the current server.
        jid = normalize_jid(jid) if jid else ""
    except ValidationError:
        # The gateway's status is not checked as a callback is; its JID is
        # kept as it came, without a device suffix.
        jid = _DEVICE_SUFFIX_RE.sub("", jid).replace("@c.us", "@s.whatsapp.net")

    phone = data.get("phone")
    if not phone and jid.endswith("@s.whatsapp.net"):
        digits = jid.split("@", 1)[0]
        phone = f"+{digits}" if digits.isdigit() else ""
    if not phone and default is not None:
        phone = default.phone

    fields = {"jid": text_clean(jid), "phone": phone or ""}
    for name in ("lid", "push_name"):
        value = data.get(name)
        if value is None and default is not None:
            value = getattr(default, name)
        fields[name] = text_clean(value or "")
    # WhatsApp allows long profile names; the column keeps the first 255.
    fields["push_name"] = fields["push_name"][:PUSH_NAME_MAX_LENGTH]
    return fields


# Gateway callbacks.


def gateway_events_apply(payload) -> dict:
    """Apply one callback batch in one transaction; returns accepted/duplicates.

    The batch is validated first, so a malformed event raises EventBatchError
    and nothing is written. Each event id is recorded under a unique
    constraint: an id seen before, including one committed a moment ago by a
    concurrent delivery, counts as a duplicate and changes nothing. Ids are
    only seen once this transaction commits, so a failed batch is retried in
    full by the gateway.
    """
    events = events_validate(payload)
    user_ids = {event.user_id for event in events}
    duplicates = 0

    with transaction.atomic():
        # Messaging reads user.whatsapp_session for each event, and these
        # users come with it cached.
        users, sessions = _callback_rows_locked(user_ids)
        # A callback shows that the gateway of these sessions is up. The
        # rows are loaded already, so only marked ones cost a query. The
        # loaded rows are cleared too, because applying an event saves them.
        marked = [
            session
            for session in sessions.values()
            if session.gateway_unreachable_since is not None
        ]
        session_gateway_reachable_mark(session_ids=[session.pk for session in marked])
        for session in marked:
            session.gateway_unreachable_since = None
        active_user_ids = set()
        new_event_ids = _events_record(events, users)
        # (outcome, detail) -> event ids; rows were inserted as applied.
        changed_outcomes = defaultdict(list)

        new_events = []
        for event in events:
            if event.event_id not in new_event_ids:
                duplicates += 1
                continue
            # A second copy of the id later in this batch is a duplicate.
            new_event_ids.discard(event.event_id)
            new_events.append(event)
        accepted = len(new_events)

        for run, shared in _event_runs(new_events, users):
            if shared:
                results = _event_run_apply(run, users, sessions)
            else:
                event = run[0]
                results = [
                    _event_dispatch_isolated(
                        event, users.get(event.user_id), sessions.get(event.user_id)
                    )
                ]
            for event, (outcome, detail) in zip(run, results, strict=True):
                if outcome != Outcome.APPLIED or detail:
                    changed_outcomes[(outcome, detail[:255])].append(event.event_id)
                if event.user_id in users and outcome == Outcome.APPLIED:
                    active_user_ids.add(event.user_id)

        for (outcome, detail), event_ids in changed_outcomes.items():
            GatewayEvent.objects.filter(event_id__in=event_ids).update(
                outcome=outcome, detail=detail
            )

        # Idle-session clean-up counts in days, so one write per user and
        # minute is enough. It saves a busy subscriber an UPDATE per callback.
        now = timezone.now()
        stale_user_ids = [
            user_id
            for user_id in active_user_ids
            if user_id not in sessions
            or sessions[user_id].last_activity_at < now - ACTIVITY_PRECISION
        ]
        if stale_user_ids:
            WhatsAppSession.objects.filter(user_id__in=stale_user_ids).update(
                last_activity_at=now
            )

    logger.debug(
        "Gateway callback batch: %s accepted, %s duplicates", accepted, duplicates
    )
    return {"accepted": accepted, "duplicates": duplicates}


def _callback_rows_locked(user_ids: set[int]) -> tuple[dict, dict]:
    """Read the users of `user_ids` and their sessions, and lock the sessions.

    Returns two dicts keyed by user id: the users, and the sessions of the
    users that have one. An unknown id is in neither. Each user and its
    session cache each other, so `user.whatsapp_session` and `session.user`
    cost no query. The sessions are locked in primary-key order, which keeps
    two batches from deadlocking.

    On PostgreSQL one statement, built once per process, reads each session
    with its user. The ORM took two queries and compiled both on every
    callback. Users without a session take a second query.
    """
    if connection.vendor != "postgresql":
        users = User.objects.in_bulk(user_ids)
        sessions = {
            session.user_id: session
            for session in WhatsAppSession.objects.select_for_update()
            .filter(user_id__in=user_ids)
            .order_by("pk")
        }
    else:
        sql, session_plan, user_plan = _callback_rows_statement(connection.vendor)
        with connection.cursor() as cursor:
            cursor.execute(sql, [sorted(user_ids)])
            rows = cursor.fetchall()

        width = len(session_plan[1])
        users, sessions = {}, {}
        for row in rows:
            user = row_model(User, user_plan, row[width:])
            users[user.pk] = user
            sessions[user.pk] = row_model(WhatsAppSession, session_plan, row[:width])
        without_session = [user_id for user_id in user_ids if user_id not in users]
        if without_session:
            users.update(User.objects.in_bulk(without_session))

    user_field = WhatsAppSession._meta.get_field("user")
    for user_id, user in users.items():
        session = sessions.get(user_id)
        User.whatsapp_session.related.set_cached_value(user, session)
        if session is not None:
            user_field.set_cached_value(session, user)
    return users, sessions


@cache
def _callback_rows_statement(vendor: str):
    quote = connection.ops.quote_name
    session_plan = model_columns(WhatsAppSession, "w", vendor)
    user_plan = model_columns(User, "u", vendor)
    session_pk = quote(WhatsAppSession._meta.pk.column)
    session_user = quote(WhatsAppSession._meta.get_field("user").column)
    sql = (
        f"SELECT {', '.join([*session_plan[0], *user_plan[0]])} "
        f"FROM {quote(WhatsAppSession._meta.db_table)} {quote('w')} "
        f"INNER JOIN {quote(User._meta.db_table)} {quote('u')} "
        f"ON {quote('u')}.{quote(User._meta.pk.column)} = {quote('w')}.{session_user} "
        f"WHERE {quote('w')}.{session_user} = ANY(%s::bigint[]) "
        f"ORDER BY {quote('w')}.{session_pk} FOR UPDATE OF {quote('w')}"
    )
    return sql, session_plan, user_plan


def _events_record(events: list[GatewayEventIn], users: dict) -> set[uuid.UUID]:
    """Insert the log rows of a batch's new events; return their event ids.

    One query finds the ids already recorded and one bulk insert records the
    rest, instead of a savepoint and an insert per event. When a concurrent
    delivery of the same events commits between the two, the bulk insert
    fails on the unique event id and the events are recorded one by one,
    which counts those as duplicates.
    """
    event_ids = list(dict.fromkeys(event.event_id for event in events))
    known = {
        row[0] for row in values_in(GatewayEvent, ("event_id",), event_id=event_ids)
    }
    new_events = {}
    for event in events:
        if event.event_id not in known and event.event_id not in new_events:
            new_events[event.event_id] = event
    if not new_events:
        return set()

    rows = [
        _event_values(event, users.get(event.user_id)) for event in new_events.values()
    ]
    try:
        with transaction.atomic():
            rows_copy(GatewayEvent, rows, keys=False)
    except IntegrityError:
        logger.info(
            "Gateway events of this batch were recorded concurrently; "
            "recording them one by one"
        )
        return {
            event.event_id
            for event in new_events.values()
            if _event_record(event, users.get(event.user_id)) is not None
        }
    return set(new_events)


def _event_values(event: GatewayEventIn, user: User | None) -> dict:
    return {
        "event_id": event.event_id,
        "user": user,
        "gateway_user_id": event.user_id,
        "seq": event.seq,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "data": data_redact(event.data),
        "outcome": Outcome.APPLIED,
    }


def _event_record(event: GatewayEventIn, user: User | None) -> GatewayEvent | None:
    """Insert the event's log row; None when its id was already recorded."""
    try:
        with transaction.atomic():
            record = row_build(GatewayEvent, **_event_values(event, user))
            record.save(force_insert=True)
            return record
    except IntegrityError:
        if GatewayEvent.objects.filter(event_id=event.event_id).exists():
            return None
        raise


# Errors that show this one event's data cannot be applied. Retrying the batch
# would fail the same way forever. Anything else (a lost connection, a
# deadlock) rolls the batch back so the gateway retries it.
EVENT_DATA_ERRORS = (
    DataError,
    IntegrityError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
)


def _event_runs(events: list[GatewayEventIn], users: dict):
    """Yield the batch's runs in order, each as (events, shared).

    A shared run goes to `_event_run_apply`: consecutive `RUN_EVENT_TYPES`
    events of known users, of one subscriber or several. It may be a single
    event, because the shared path uses a few statements built once, where
    the one-event path compiles ORM queries. Every other event is a run of
    its own, dispatched alone. Order is kept, so each subscriber's events
    stay in the order they happened.
    """
    from messaging.services.events import RUN_EVENT_TYPES

    run: list[GatewayEventIn] = []
    for event in events:
        if event.type not in RUN_EVENT_TYPES or event.user_id not in users:
            if run:
                yield run, True
                run = []
            yield [event], False
            continue
        run.append(event)
    if run:
        yield run, True


def _event_run_apply(
    run: list[GatewayEventIn], users: dict, sessions: dict
) -> list[tuple[str, str]]:
    """Apply a run of messaging events together, in a savepoint.

    If applying them together fails, nothing of it is kept and each event
    is applied alone, so a bad event fails only itself.
    """
    from messaging import services as messaging_services

    def apply_one(index: int) -> tuple[str, str]:
        event = run[index]
        return _event_dispatch_isolated(
            event, users.get(event.user_id), sessions.get(event.user_id)
        )

    try:
        with transaction.atomic():
            results = messaging_services.gateway_event_run_apply(
                users=users, events=[event.raw for event in run], apply_one=apply_one
            )
    except (ApplicationError, *EVENT_DATA_ERRORS):
        logger.warning(
            "Applying %s events of users %s together failed; applying them one by one",
            len(run),
            sorted({event.user_id for event in run}),
            exc_info=True,
        )
        return [apply_one(index) for index in range(len(run))]
    return [(str(outcome)[:16], detail) for outcome, detail in results]


def _event_dispatch_isolated(
    event: GatewayEventIn, user: User | None, session: WhatsAppSession | None
) -> tuple[str, str]:
    """Dispatch one event in a savepoint; a data error fails only this event.

    The event stays in the log with outcome `failed` for an operator, and
    the rest of the batch is applied.
    """
    try:
        with transaction.atomic():
            return _event_dispatch(event, user, session)
    except ApplicationError as error:
        logger.warning(
            "Gateway event %s (%s) of user %s rejected: %s",
            event.event_id,
            event.type,
            event.user_id,
            error.message,
        )
        return Outcome.REJECTED, error.message
    except EVENT_DATA_ERRORS as error:
        logger.exception(
            "Gateway event %s (%s) of user %s failed; recorded as failed",
            event.event_id,
            event.type,
            event.user_id,
        )
        if session is not None:
            # The savepoint undid the row; the cached object must match it.
            session.refresh_from_db()
        return Outcome.FAILED, f"{type(error).__name__} while applying the event"


def _event_dispatch(
    event: GatewayEventIn, user: User | None, session: WhatsAppSession | None
) -> tuple[str, str]:
    if user is None:
        # Counted as accepted, so the gateway stops retrying it.
        logger.warning(
            "Gateway event %s names unknown user %s; ignored",
            event.event_id,
            event.user_id,
        )
        return Outcome.IGNORED, f"no user with id {event.user_id}"

    if event.type in SESSION_EVENT_TYPES:
        if session is None:
            return Outcome.IGNORED, "the user has no WhatsApp session"
        return _session_event_apply(session, event)

    if event.type.startswith(MESSAGING_TYPE_PREFIXES):
        return _messaging_event_apply(event, user)

    logger.info(
        "Gateway event %s has unknown type %s; ignored", event.event_id, event.type
    )
    return Outcome.IGNORED, f"unknown event type {event.type}"


def _messaging_event_apply(event: GatewayEventIn, user: User) -> tuple[str, str]:
    from messaging import services as messaging_services

    # ApplicationError (a rejected event) leaves through the savepoint of
    # _event_dispatch_isolated, so it leaves no partial rows behind.
    outcome = messaging_services.gateway_event_apply(user=user, event=event.raw)
    return str(outcome or Outcome.APPLIED)[:16], ""


def _session_event_apply(
    session: WhatsAppSession, event: GatewayEventIn
) -> tuple[str, str]:
    if session.last_event_at is not None:
        last_key = (session.last_event_at, session.last_event_seq or 0)
        if event.order_key <= last_key:
            return Outcome.STALE, (
                f"older than the last applied session event (seq "
                f"{session.last_event_seq} at {session.last_event_at.isoformat()})"
            )

    plan = _session_event_plan(session, event)
    if isinstance(plan, str):
        return Outcome.IGNORED, plan
    target, fields, error_code, error_detail = plan

    fields["last_event_at"] = event.occurred_at
    fields["last_event_seq"] = event.seq
    try:
        session_transition(
            session,
            target,
            fields=fields,
            error_code=error_code,
            error_detail=error_detail,
            at=event.occurred_at,
        )
    except SessionTransitionError as error:
        logger.warning(
            "Gateway event %s (%s, seq %s) rejected for session %s: %s",
            event.event_id,
            event.type,
            event.seq,
            session.pk,
            error.message,
        )
        return Outcome.REJECTED, error.message

    if event.type == SESSION_CONNECTED:
        logger.info("Session %s connected as %s", session.pk, mask_phone(session.phone))
    return Outcome.APPLIED, ""


def _session_event_plan(session: WhatsAppSession, event: GatewayEventIn):
    """Return (target, fields, error code, detail), or why the event is ignored."""
    data = event.data

    if event.type == SESSION_QR:
        fields = {
            "qr": text_clean(data["qr"]),
            "qr_expires_at": parse_time(data["expires_at"]),
        }
        return State.QR_PENDING, fields, "", ""

    if event.type == SESSION_CONNECTED:
        return State.CONNECTED, _identity_fields(data), "", ""

    if event.type == SESSION_DISCONNECTED:
        reason = data["reason"]
        if reason == reasons.QR_TIMEOUT:
            return State.QR_EXPIRED, {}, "", ""
        if reason in (reasons.REPLACED, reasons.BANNED, reasons.FATAL):
            return State.FAILED, {}, reason, ""
        pairing = session.state in (State.STARTING, State.QR_PENDING)
        if reason == reasons.RESTART and data["will_reconnect"] and pairing:
            # WhatsApp requests a restart right after the scan, and the engine
            # reconnects at once with the new login, so the page goes straight
            # from the QR code to connected. A restart of a connected session
            # (the gateway shutting down) shows as reconnecting below.
            return "a restart the engine reconnects from at once"
        if reason in (reasons.NETWORK, reasons.RESTART, reasons.STOPPED):
            return State.DISCONNECTED, {}, reason, ""
        return State.DISCONNECTED, {}, "", f"reason {reason}"

    if event.type == SESSION_LOGGED_OUT:
        reason = data["reason"]
        if reason == reasons.REQUESTED:
            return State.LOGGED_OUT, {}, "", ""
        if reason in (reasons.DEVICE_REMOVED, reasons.RESTORE_FAILED):
            return State.LOGGED_OUT, {}, reason, ""
        return (
            State.LOGGED_OUT,
            {},
            reasons.LOGGED_OUT,
            f"reason {reason}" if reason else "",
        )

    return f"unknown session event type {event.type}"


def gateway_event_prune(*, before: datetime, batch_size: int = 5000) -> int:
    """Delete event log rows received before `before`; returns how many."""
    deleted = 0
    while True:
        ids = list(
            GatewayEvent.objects.filter(received_at__lt=before).values_list(
                "pk", flat=True
            )[:batch_size]
        )
        if not ids:
            break
        deleted += GatewayEvent.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        logger.info("Pruned %s gateway events received before %s", deleted, before)
    return deleted
