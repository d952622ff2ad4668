"""Gateway memory: resident memory of one gateway process per idle session.

A separate gateway process (sim engine) is started with no sessions, then
sessions are started through its signed `POST /start` until it has each
level. Sessions stay at `qr_pending`: the QR lifetime is set to an hour, so
nothing rotates or expires while memory is read. Callbacks go to a small
receiver in the bench process that accepts every batch and notes when each
user's first `session.qr` arrived, which gives the start-to-QR time as
Django would see it (gateway work plus outbox delivery).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.load import closed_loop, http, open_loop, percentile
from bench.processes import ManagedProcess, http_ok, rss_bytes
from bench.signed import signed_post
from bench.stack import GATEWAY_SERVER, Stack
from tests.harness import free_port

QR_TTL_MS = "3600000,3600000"
# Starts a second for the start-to-QR probe.
PROBE_RATE = 10.0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The gateway closes idle keep-alive connections when it stops.
        pass


class CallbackReceiver:
    """An HTTP server that accepts callback batches and records QR arrivals."""

    def __init__(self):
        self.qr_at: dict[int, float] = {}
        self.events = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                arrived = time.perf_counter()
                events = body.get("events") or []
                with receiver.lock:
                    receiver.events += len(events)
                    for event in events:
                        if event.get("type") == "session.qr":
                            receiver.qr_at.setdefault(int(event["user_id"]), arrived)
                reply = json.dumps({"accepted": len(events), "duplicates": 0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):
                pass

        self.port = free_port()
        self.server = _QuietServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/settings/whatsapp/session/update"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _qr_summary(receiver, started_at: dict, user_ids) -> dict:
    seconds = [
        receiver.qr_at[uid] - started_at[uid]
        for uid in user_ids
        if uid in receiver.qr_at and uid in started_at
    ]
    return {
        "count": len(seconds),
        "p50": percentile(seconds, 50) * 1000,
        "p95": percentile(seconds, 95) * 1000,
    }


def _outbox_empty(url: str) -> bool:
    try:
        return http().get(f"{url}/healthz", timeout=5).json().get("outbox_pending") == 0
    except (ValueError, OSError):
        return False


def gateway_memory(
    stack: Stack,
    *,
    levels: list[int],
    concurrency: int,
    probe_count: int,
    settle_s: float,
    deadline_s: float,
):
    """Return RSS at 0 and at each level of idle sessions, and start-to-QR."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="gateway-memory-", dir=stack.run_dir))
    results = {"levels": [], "qr_pending_ttl_ms": QR_TTL_MS}

    with CallbackReceiver() as receiver:
        env = stack.gateway_env(port=port, data_dir=data_dir, callback_url=receiver.url)
        env["WA_SIM_QR_TTL_MS"] = QR_TTL_MS
        env["WA_MAX_SESSIONS"] = str(max(levels) + 100)
        gateway = ManagedProcess(
            "gateway-memory",
            ["node", str(GATEWAY_SERVER)],
            env=env,
            cwd=GATEWAY_SERVER.parent.parent,
            log_dir=stack.log_dir,
            ready=http_ok(f"{url}/healthz"),
        )
        stack.group.start(gateway)
        try:
            time.sleep(settle_s)
            results["levels"].append({"sessions": 0, "rss": rss_bytes(gateway.pid)})

            started_at: dict[int, float] = {}

            def start(user_id):
                started_at[user_id] = time.perf_counter()
                response = signed_post(
                    url, "/start", {"user_id": user_id}, secret=stack.gateway_secret
                )
                if response.status_code != 202:
                    raise RuntimeError(
                        f"/start returned {response.status_code}: {response.text[:200]}"
                    )

            held = 0
            for level in levels:
                fill = range(held + 1, level + 1)
                load = closed_loop(
                    start, fill, concurrency=concurrency, deadline_s=deadline_s
                )
                held = level
                all_qr = _wait(lambda n=level: len(receiver.qr_at) >= n, deadline_s)
                _wait(lambda: _outbox_empty(url), deadline_s)
                time.sleep(settle_s)
                rss = rss_bytes(gateway.pid)

                # Start-to-QR on a gateway that is not busy starting others:
                # a few sessions at a steady rate, after the memory reading.
                probe = range(held + 1, held + probe_count + 1)
                open_loop(
                    start,
                    probe,
                    rate=PROBE_RATE,
                    max_in_flight=4,
                    deadline_s=deadline_s,
                )
                held += probe_count
                _wait(lambda n=held: len(receiver.qr_at) >= n, deadline_s)
                results["levels"].append(
                    {
                        "sessions": level,
                        "rss": rss,
                        "start_errors": len(load.errors),
                        "error_sample": load.errors[:3],
                        "start_rate": load.rate,
                        "all_qr": all_qr,
                        "burst_qr_ms": _qr_summary(receiver, started_at, fill),
                        "qr_ms": _qr_summary(receiver, started_at, probe),
                    }
                )
            results["callback_events"] = receiver.events
        finally:
            stack.group.stop(gateway)

    baseline = results["levels"][0]["rss"]
    for level in results["levels"][1:]:
        level["per_session"] = (level["rss"] - baseline) / level["sessions"]
    return results
