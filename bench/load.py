"""A small load generator: closed-loop and rate-limited open-loop runs.

Requests go through one `requests.Session` per thread, so connections are
reused where the server allows it. Every loop is bounded by its item list and
by a deadline, so a stuck server ends a run instead of hanging it.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

_local = threading.local()


def http() -> requests.Session:
    """Return this thread's HTTP session."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the `pct` percentile (0-100) of `values`, nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class LoadResult:
    """Result of a load run: wall time, per-call latencies and errors."""

    started: float
    finished: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.nan


def _record(result: LoadResult, lock: threading.Lock, call, item) -> None:
    began = time.perf_counter()
    try:
        value = call(item)
    except Exception as error:  # noqa: BLE001 - every failure is counted
        with lock:
            result.errors.append(f"{type(error).__name__}: {error}")
        return
    elapsed = time.perf_counter() - began
    with lock:
        result.latencies.append(elapsed)
        result.results.append(value)


def closed_loop(
    call: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    concurrency: int,
    deadline_s: float,
) -> LoadResult:
    """Call `call(item)` for each item from `concurrency` threads at once.

    Each thread starts its next call as soon as its previous one returns.
    Items still waiting when `deadline_s` seconds have passed are skipped.
    """
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        pending.put(item)
    lock = threading.Lock()
    result = LoadResult(started=time.perf_counter(), finished=0.0)
    stop_at = result.started + deadline_s

    def worker() -> None:
        while time.perf_counter() < stop_at:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            _record(result, lock, call, item)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.perf_counter()) + 30)
    result.finished = time.perf_counter()
    return result


def open_loop(
    call: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    rate: float,
    max_in_flight: int,
    deadline_s: float,
) -> LoadResult:
    """Start `call(item)` at a fixed `rate` per second, whatever the replies.

    Item i is due at start + i / rate. Up to `max_in_flight` calls run at
    once. When all of them are busy, a due item waits for a free thread, so
    the offered rate falls below `rate`, and the result's `rate` shows it.
    """
    due: queue.SimpleQueue = queue.SimpleQueue()
    lock = threading.Lock()
    result = LoadResult(started=time.perf_counter(), finished=0.0)
    stop_at = result.started + deadline_s

    def worker() -> None:
        while True:
            item = due.get()
            if item is _STOP:
                return
            _record(result, lock, call, item)

    threads = [
        threading.Thread(target=worker, daemon=True) for _ in range(max_in_flight)
    ]
    for thread in threads:
        thread.start()

    interval = 1.0 / rate
    for index, item in enumerate(items):
        start_at = result.started + index * interval
        if start_at >= stop_at:
            break
        delay = start_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        due.put(item)
    for _ in threads:
        due.put(_STOP)
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.perf_counter()) + 30)
    result.finished = time.perf_counter()
    return result


_STOP = object()


def lanes_loop(
    call: Callable[[Any], Any],
    lanes: Sequence[Sequence[Any]],
    *,
    concurrency: int,
    deadline_s: float,
) -> LoadResult:
    """Call `call(item)` for the items of each lane, one lane item at a time.

    Up to `concurrency` threads run at once, but never two items of the same
    lane: a thread takes a lane, makes one call, and puts the lane back at
    the end of the queue. This is how the gateway's outbox posts callbacks,
    one batch in flight per user. Items not started within `deadline_s`
    seconds are skipped.
    """
    # queue.Queue: a SimpleQueue.get(timeout=...) was seen here not to
    # return after its timeout once the last lane had finished.
    ready: queue.Queue = queue.Queue()
    remaining = 0
    for lane in lanes:
        if lane:
            ready.put((list(lane), 0))
            remaining += len(lane)
    lock = threading.Lock()
    result = LoadResult(started=time.perf_counter(), finished=0.0)
    stop_at = result.started + deadline_s
    state = {"remaining": remaining}

    def worker() -> None:
        while time.perf_counter() < stop_at:
            with lock:
                if state["remaining"] == 0:
                    return
            try:
                lane, index = ready.get(timeout=0.05)
            except queue.Empty:
                continue
            _record(result, lock, call, lane[index])
            with lock:
                state["remaining"] -= 1
            if index + 1 < len(lane):
                ready.put((lane, index + 1))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.perf_counter()) + 30)
    result.finished = time.perf_counter()
    return result
