"""Writes and business rules for customers and messages.

Split by concept: `customers` (create, update, identify, merge), `imports`
(CSV), `sending` (outbound messages and their send outcome), `send_queue`
(a subscriber's new messages sent in batches), `events`
(gateway callbacks) and `updates` (receipts, edits, revokes, reactions).
"""

from .customers import (
    customer_create,
    customer_delete,
    customer_for_phone,
    customer_identify,
    customer_merge,
    customer_update,
)
from .events import gateway_event_apply, gateway_event_run_apply
from .imports import ImportReport, customer_import_csv
from .sending import (
    message_claim,
    message_fail,
    message_record_sent,
    message_release,
    message_send,
    messages_delete,
)
from .updates import conversation_mark_read

__all__ = [
    "ImportReport",
    "conversation_mark_read",
    "customer_create",
    "customer_delete",
    "customer_for_phone",
    "customer_identify",
    "customer_import_csv",
    "customer_merge",
    "customer_update",
    "gateway_event_apply",
    "gateway_event_run_apply",
    "message_claim",
    "message_fail",
    "message_record_sent",
    "message_release",
    "message_send",
    "messages_delete",
]
