"""Celery tasks: every call from Django to the gateway about sessions.

Each task re-reads its session, exits when the session no longer needs the
call (so a redelivered or repeated task does nothing), calls the gateway and
hands the outcome to a service. Transient gateway failures are retried with
exponential backoff and jitter; permanent ones are recorded on the session.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from . import reasons, selectors, services
from .gateway import GatewayClient, GatewayError, gateway_url_for_user
from .masking import mask_phone
from .models import WhatsAppSession

logger = get_task_logger(__name__)

State = WhatsAppSession.State

MAX_RETRIES = 5
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 120.0


def retry_countdown(retries: int) -> float:
    """Return the delay before retry number `retries + 1`, in seconds.

    The ceiling doubles with each retry up to RETRY_CAP_SECONDS, and the delay
    is drawn from the upper half of it, so workers retrying together spread
    out without ever retrying at once.
    """
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _status_detail(error: GatewayError) -> str:
    """Describe a gateway failure without the gateway's address."""
    if error.status is None:
        return "gateway unreachable"
    return f"gateway returned {error.status} {error.code or ''}".strip()


def _holding_node_client(session: WhatsAppSession) -> GatewayClient:
    """Return a client for the node that runs the session's client now."""
    return GatewayClient(session.gateway_url or None)


def _session_get(session_id: int) -> WhatsAppSession | None:
    session = WhatsAppSession.objects.filter(pk=session_id).first()
    if session is None:
        logger.info("Session %s no longer exists; nothing to do", session_id)
    return session


@shared_task(bind=True, max_retries=MAX_RETRIES)
def session_start(self, session_id: int) -> None:
    """Ask the gateway to start the client of a session in state `starting`."""
    session = _session_get(session_id)
    if session is None:
        return
    if session.state != State.STARTING:
        logger.info(
            "Session %s is %s, not starting; start skipped", session_id, session.state
        )
        return

    attempt = self.request.retries + 1
    node_url = gateway_url_for_user(session.user_id)
    if session.gateway_url and session.gateway_url != node_url:
        _stop_on_previous_node(session, node_url)

    logger.info("Starting session %s on the gateway (attempt %s)", session_id, attempt)
    try:
        status = GatewayClient(node_url).start(session.user_id)
    except GatewayError as error:
        if error.permanent:
            logger.error(
                "Gateway rejected the start of session %s (%s %s): %s",
                session_id,
                error.status,
                error.code,
                error.message,
            )
            services.session_start_failed(
                session_id=session_id,
                error_code=reasons.START_REJECTED,
                detail=error.message,
            )
            return

        if self.request.retries >= self.max_retries:
            error_code = (
                reasons.GATEWAY_FULL
                if error.code == "GW_ERR_MAX_SESSIONS"
                else reasons.GATEWAY_UNREACHABLE
            )
            logger.error(
                "Gave up starting session %s after %s attempts: %s",
                session_id,
                attempt,
                error.message,
            )
            # The detail is shown to API clients, so it leaves out the
            # gateway's address that error.message contains.
            services.session_start_failed(
                session_id=session_id,
                error_code=error_code,
                detail=f"gateway unreachable after {attempt} attempts",
            )
            return

        countdown = retry_countdown(self.request.retries)
        logger.warning(
            "Start of session %s failed (%s); retrying in %.1f s: %s",
            session_id,
            error.status or "no response",
            countdown,
            error.message,
        )
        raise self.retry(exc=error, countdown=countdown) from error

    services.session_start_succeeded(
        session_id=session_id,
        gateway_url=node_url,
        expected_updated_at=session.updated_at,
        status=status if isinstance(status, dict) else {},
    )
    logger.info("Gateway accepted the start of session %s", session_id)


def _stop_on_previous_node(session: WhatsAppSession, node_url: str) -> None:
    # The node list changed and the user now hashes to another node. Two
    # nodes running one login would make WhatsApp close one as "replaced",
    # so the old node closes its client (keeping the login) first.
    logger.info(
        "Session %s moves from %s to %s; stopping it on the old node",
        session.pk,
        session.gateway_url,
        node_url,
    )
    try:
        GatewayClient(session.gateway_url).stop(session.user_id)
    except GatewayError as error:
        # A removed node cannot be reached; the start goes ahead regardless.
        logger.warning(
            "Could not stop session %s on %s (%s): %s",
            session.pk,
            session.gateway_url,
            error.status or "no response",
            error.message,
        )


@shared_task(bind=True, max_retries=MAX_RETRIES)
def session_logout(self, session_id: int, idle_cutoff: str | None = None) -> None:
    """Log a session out on the gateway, which deletes its saved login.

    Without `idle_cutoff` the session must be `logged_out` (the subscriber or
    an operator asked). With it, cleanup asked: the session must still be
    unused since that ISO time, and it is deleted after the logout.
    """
    session = _session_get(session_id)
    if session is None:
        return

    cutoff = datetime.fromisoformat(idle_cutoff) if idle_cutoff else None
    if cutoff is not None:
        if session.state == State.CONNECTED or session.last_activity_at >= cutoff:
            logger.info("Session %s was used again; idle logout skipped", session_id)
            return
    elif session.state != State.LOGGED_OUT:
        logger.info("Session %s is %s; logout skipped", session_id, session.state)
        return

    logger.info("Logging out session %s on the gateway", session_id)
    try:
        _holding_node_client(session).logout(session.user_id)
    except GatewayError as error:
        if error.status == 404:
            logger.info("Gateway has no login for session %s to delete", session_id)
        elif error.permanent or self.request.retries >= self.max_retries:
            logger.error(
                "Logout of session %s failed for good (%s): %s",
                session_id,
                error.status or "no response",
                error.message,
            )
            if cutoff is None:
                services.session_logout_failed(
                    session_id=session_id, detail=_status_detail(error)
                )
            return
        else:
            countdown = retry_countdown(self.request.retries)
            logger.warning(
                "Logout of session %s failed (%s); retrying in %.1f s",
                session_id,
                error.status or "no response",
                countdown,
            )
            raise self.retry(exc=error, countdown=countdown) from error

    if cutoff is not None:
        services.session_idle_delete(session_id=session_id, cutoff=cutoff)


@shared_task(bind=True, max_retries=MAX_RETRIES)
def session_stop(
    self, session_id: int, error_code: str = reasons.SUBSCRIPTION_INACTIVE
) -> None:
    """Close a session's client on the gateway and keep its saved login."""
    session = _session_get(session_id)
    if session is None:
        return
    if session.state not in services.LIVE_STATES:
        logger.info("Session %s is %s; stop skipped", session_id, session.state)
        return

    logger.info("Stopping session %s on the gateway (%s)", session_id, error_code)
    try:
        _holding_node_client(session).stop(session.user_id)
    except GatewayError as error:
        if error.status == 404:
            logger.info("Gateway has no client for session %s to stop", session_id)
        elif error.permanent or self.request.retries >= self.max_retries:
            # cleanup enqueues the stop again on its next run.
            logger.error(
                "Stop of session %s failed (%s): %s",
                session_id,
                error.status or "no response",
                error.message,
            )
            return
        else:
            countdown = retry_countdown(self.request.retries)
            logger.warning(
                "Stop of session %s failed; retrying in %.1f s", session_id, countdown
            )
            raise self.retry(exc=error, countdown=countdown) from error

    services.session_stopped(session_id=session_id, error_code=error_code)


@shared_task(bind=True)
def session_sim_scan(self, session_id: int, phone: str) -> None:
    """Development only: have the sim engine scan the pending QR code."""
    session = _session_get(session_id)
    if session is None:
        return
    if session.state != State.QR_PENDING:
        logger.info("Session %s shows no QR code; simulated scan skipped", session_id)
        return

    logger.info("Simulating a scan of session %s by %s", session_id, mask_phone(phone))
    try:
        _holding_node_client(session).sim("scan", session.user_id, phone=phone)
    except GatewayError as error:
        logger.warning(
            "Simulated scan of session %s failed (%s): %s",
            session_id,
            error.status or "no response",
            error.message,
        )


@shared_task(bind=True)
def session_reconcile(self, session_id: int) -> str:
    """Compare one session with the gateway's /status and repair any drift.

    The node the user hashes to now is asked, so a user moved to another
    node reads as unknown there and is started again on it.
    """
    session = _session_get(session_id)
    if session is None:
        return "missing"

    try:
        status = GatewayClient().status(session.user_id)
    except GatewayError as error:
        if error.status != 404:
            # An unreachable gateway is no evidence about the session's state,
            # but the subscriber is shown that it may be stale.
            logger.warning(
                "Could not reconcile session %s (%s): %s",
                session_id,
                error.status or "no response",
                error.message,
            )
            services.session_gateway_unreachable_mark(session_id=session_id)
            return "unreachable"
        status = None

    if session.gateway_unreachable_since is not None:
        services.session_gateway_reachable_mark(session_ids=[session_id])
    result = services.session_gateway_status_apply(
        session_id=session_id, expected_updated_at=session.updated_at, status=status
    )
    if result not in ("in_sync", "changed"):
        logger.info("Reconciled session %s: %s", session_id, result)
    return result


@shared_task(bind=True)
def reconcile(self) -> int:
    """Periodic: enqueue a reconcile of every session Django believes live."""
    updated_before = timezone.now() - timedelta(
        seconds=settings.WA_RECONCILE_GRACE_SECONDS
    )
    count = 0
    for session in selectors.session_list_to_reconcile(
        updated_before=updated_before
    ).iterator():
        session_reconcile.delay(session.pk)
        count += 1
    logger.info("Reconcile enqueued %s sessions", count)
    return count


@shared_task(bind=True)
def cleanup(self) -> dict:
    """Periodic: stop sessions without an active subscription, delete unused
    ones and prune the gateway event log."""
    now = timezone.now()

    stopped = 0
    for session in selectors.session_list_to_stop(now=now).iterator():
        session_stop.delay(session.pk, reasons.SUBSCRIPTION_INACTIVE)
        stopped += 1

    idle_cutoff = now - timedelta(days=settings.WA_SESSION_MAX_IDLE_DAYS)
    deleted = 0
    for session in selectors.session_list_idle(cutoff=idle_cutoff).iterator():
        session_logout.delay(session.pk, idle_cutoff=idle_cutoff.isoformat())
        deleted += 1

    pruned = services.gateway_event_prune(
        before=now - timedelta(days=settings.WA_EVENT_LOG_RETENTION_DAYS)
    )
    logger.info(
        "Cleanup enqueued %s stops and %s idle logouts, pruned %s events",
        stopped,
        deleted,
        pruned,
    )
    return {"stopped": stopped, "idle": deleted, "pruned": pruned}
