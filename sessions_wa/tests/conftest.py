import socket
from unittest import mock

import pytest
from django.core.cache import cache

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from sessions_wa import tasks
from sessions_wa.models import WhatsAppSession
from sessions_wa.tests.helpers import FakeGateway


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache():
    # The gateway engine is cached per node URL; each test starts without it.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner(db):
    return subscriber_create("owner@example.com")


@pytest.fixture
def outsider(db):
    return subscriber_create("outsider@example.com")


@pytest.fixture
def canceled_subscriber(db):
    return subscriber_create(
        "canceled@example.com", status=Subscription.Status.CANCELED
    )


@pytest.fixture
def make_session():
    def make(user, state=WhatsAppSession.State.NEW, **fields):
        return WhatsAppSession.objects.create(
            user=user,
            session_key=WhatsAppSession.key_for_user_id(user.pk),
            state=state,
            connected=state == WhatsAppSession.State.CONNECTED,
            **fields,
        )

    return make


@pytest.fixture
def fake_gateway(settings):
    gateway = FakeGateway(settings.WA_GATEWAY_SECRETS).start()
    settings.WA_GATEWAY_URL = gateway.url
    settings.WA_GATEWAY_URLS = []
    settings.WA_GATEWAY_TIMEOUT = 2.0
    yield gateway
    gateway.close()


@pytest.fixture
def unreachable_gateway(settings):
    """A gateway URL on a port nothing listens on: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WA_GATEWAY_URL = f"http://127.0.0.1:{port}"
    settings.WA_GATEWAY_URLS = []
    settings.WA_GATEWAY_TIMEOUT = 1.0
    return settings.WA_GATEWAY_URL


@pytest.fixture
def enqueued():
    """Record the tasks enqueued through delay instead of running them.

    Wrap the action in `django_capture_on_commit_callbacks(execute=True)`,
    because services enqueue only once their transaction commits.
    """
    names = ["session_start", "session_logout", "session_stop", "session_reconcile"]
    patches = [mock.patch.object(getattr(tasks, name), "delay") for name in names]
    mocks = {
        name: patcher.start() for name, patcher in zip(names, patches, strict=True)
    }
    yield mocks
    for patcher in patches:
        patcher.stop()


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process, as the embedded default does without Redis."""
    from whatsapp_saas.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
