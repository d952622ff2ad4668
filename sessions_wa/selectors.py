"""Reads of WhatsApp sessions: per subscriber for pages and the API, and the
operator-wide lists that the periodic tasks work through."""

from __future__ import annotations

import logging
from datetime import datetime

import requests
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Subscription, User

from . import reasons
from .gateway import GatewayClient, gateway_url_for_user
from .models import WhatsAppSession

logger = logging.getLogger(__name__)

State = WhatsAppSession.State

# The settings page reads the engine name from the gateway's /healthz: at most
# one request per node every ENGINE_CACHE_SECONDS, with a 1 s timeout so a
# dead gateway cannot make the page slow.
ENGINE_CACHE_SECONDS = 30
ENGINE_UNREACHABLE_CACHE_SECONDS = 10
ENGINE_TIMEOUT_SECONDS = 1.0


def session_get_for_user(*, user: User) -> WhatsAppSession | None:
    """Return the user's own session, or None when they never started one."""
    return WhatsAppSession.objects.filter(user=user).first()


def session_list_to_reconcile(*, updated_before: datetime) -> QuerySet:
    """Sessions Django believes live and that no event touched for a while.

    A disconnected session counts as live while it is expected to reconnect
    by itself (a network drop or a restart).
    """
    reconnecting = Q(
        state=State.DISCONNECTED,
        last_error_code__in=[reasons.NETWORK, reasons.RESTART],
    )
    return (
        WhatsAppSession.objects.filter(
            Q(state__in=[State.STARTING, State.QR_PENDING, State.CONNECTED])
            | reconnecting,
            updated_at__lt=updated_before,
        )
        .order_by("pk")
        .only("pk", "updated_at")
    )


def session_list_to_stop(*, now: datetime | None = None) -> QuerySet:
    """Live sessions whose subscription is canceled, missing or past its end."""
    now = now or timezone.now()
    inactive = (
        Q(user__subscription__isnull=True)
        | Q(user__subscription__status=Subscription.Status.CANCELED)
        | Q(user__subscription__current_period_end__lt=now)
    )
    already_stopped = Q(
        state=State.DISCONNECTED,
        last_error_code__in=[reasons.STOPPED, reasons.SUBSCRIPTION_INACTIVE],
    )
    return (
        WhatsAppSession.objects.filter(
            inactive,
            state__in=[
                State.STARTING,
                State.QR_PENDING,
                State.CONNECTED,
                State.DISCONNECTED,
            ],
        )
        .exclude(already_stopped)
        .order_by("pk")
        .only("pk")
    )


def session_list_idle(*, cutoff: datetime) -> QuerySet:
    """Sessions not connected and unused since `cutoff`."""
    return (
        WhatsAppSession.objects.filter(last_activity_at__lt=cutoff)
        .exclude(state=State.CONNECTED)
        .order_by("pk")
        .only("pk")
    )


def gateway_engine_get(*, user: User) -> str | None:
    """Return the engine name of the user's gateway node, or None if unreachable."""
    base_url = gateway_url_for_user(user.pk)
    cache_key = f"sessions_wa:gateway_engine:{base_url}"
    cached = cache.get(cache_key)
    if cached is not None:
        return cached or None

    try:
        health = GatewayClient(base_url, timeout=ENGINE_TIMEOUT_SECONDS).health()
        engine = str(health.get("engine") or "")
    except (requests.RequestException, ValueError, AttributeError) as error:
        logger.info(
            "Gateway %s health check failed: %s", base_url, error.__class__.__name__
        )
        cache.set(cache_key, "", ENGINE_UNREACHABLE_CACHE_SECONDS)
        return None

    cache.set(cache_key, engine, ENGINE_CACHE_SECONDS)
    return engine or None
