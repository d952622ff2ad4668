"""Benchmark the product on its production shape; `make bench` runs this.

Starts PostgreSQL-backed gunicorn, a Celery worker on Redis and the Node
gateway (sim engine, acks without delay) on free 127.0.0.1 ports with a fresh
database, then measures:

1. the ceilings: a DRF view and a Celery task that do nothing, on the same
   processes;
2. outbound: subscribers sending through `POST /api/messages/send` until
   every message is delivered, at full load and at half of it;
3. inbound: signed `message.received` callback batches of 1, 10 and 100;
4. gateway memory per idle session and start-to-QR time, on a gateway
   process of its own;

with 1, 10 and 100 subscribers for 2 and 3. It prints a table and, unless
--quick or --no-write, writes it into docs/benchmarks.md. Every process is
stopped at the end. Figures are reported, never judged: the exit status is
non-zero only when the run itself broke.

    .venv/bin/python bench/run.py            # about 5 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # smoke test, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import ceilings, inbound, outbound, report  # noqa: E402
from bench.gateway_memory import gateway_memory  # noqa: E402
from bench.machine import load_average, machine_describe  # noqa: E402
from bench.processes import CpuMeter  # noqa: E402
from bench.stack import Stack, StackConfig  # noqa: E402
from bench.subscribers import sessions_connect, subscribers_create  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/wa_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"

# Send pacing (a token bucket per session: WA_SEND_RATE_PER_MINUTE and
# WA_SEND_BURST) keeps real numbers from being banned. The bench measures the
# pipeline, so it sets the bucket far above any rate it reaches.
PACING_ENV = {"WA_SEND_RATE_PER_MINUTE": "6000000", "WA_SEND_BURST": "1000000"}


@dataclass
class Sizes:
    """Work and time limits of each part of a run.

    Load phases stop starting new calls after `load_seconds`, so a slow
    machine gets a smaller sample rather than a longer run. The counts are
    upper bounds.
    """

    scales: list[int]
    load_seconds: float
    half_seconds: float
    messages: int
    inbound_events: int
    sessions: list[int]
    noop_requests: int
    noop_tasks: int
    qr_probe: int
    batch_sizes: tuple[int, ...] = (1, 10, 100)
    customers_each: int = 5
    client_concurrency: int = 8
    callback_concurrency: int = 4
    # Maximum seconds to wait for deliveries, sessions and queues to finish.
    wait_s: float = 90.0
    # Seconds the memory gateway rests before its memory is read.
    settle_s: float = 2.0


FULL = Sizes(
    scales=[1, 10, 100],
    load_seconds=20,
    half_seconds=10,
    messages=5000,
    inbound_events=20000,
    sessions=[1000, 10000],
    noop_requests=5000,
    noop_tasks=2000,
    qr_probe=50,
)
QUICK = Sizes(
    scales=[1, 10],
    load_seconds=2,
    half_seconds=2,
    messages=200,
    inbound_events=500,
    sessions=[200],
    noop_requests=300,
    noop_tasks=300,
    qr_probe=10,
    settle_s=1.0,
    wait_s=60.0,
)

_started = time.monotonic()


def progress(message: str) -> None:
    print(
        f"[{time.monotonic() - _started:6.1f} s] {message}", file=sys.stderr, flush=True
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers, e.g. 1,10,100"
        ) from None


# The parts of a run that --skip can leave out.
PARTS = ("outbound", "inbound", "gateway")


def _parts(text: str) -> set[str]:
    parts = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(parts - set(PARTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(map(repr, unknown))}; give a "
            f"comma-separated list of {', '.join(PARTS)}"
        )
    return parts


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, about a minute; writes no docs",
    )
    parser.add_argument(
        "--scales", type=_int_list, help="subscriber counts, e.g. 1,10,100"
    )
    parser.add_argument(
        "--messages",
        type=int,
        help="messages per full-load outbound run, over all subscribers",
    )
    parser.add_argument(
        "--sessions",
        type=_int_list,
        help="idle gateway sessions to measure, e.g. 1000,10000",
    )
    parser.add_argument(
        "--skip",
        type=_parts,
        default=set(),
        help="parts to leave out: outbound, inbound, gateway",
    )
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument(
        "--gunicorn-threads",
        type=int,
        default=1,
        help="threads per gunicorn worker; above 1 uses the gthread worker",
    )
    parser.add_argument("--celery-concurrency", type=int, default=4)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="database to drop, create and use (BENCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database to flush and use (BENCH_REDIS_URL)",
    )
    parser.add_argument(
        "--output", type=Path, default=BASE_DIR / "docs" / "benchmarks.md"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave the docs alone"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the database for inspection"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=20.0,
        help="stop the run (as a failure) after this many minutes",
    )
    return parser.parse_args(argv)


def django_setup(env: dict[str, str]) -> None:
    for name in (
        "DJANGO_SETTINGS_MODULE",
        "DATABASE_URL",
        "REDIS_URL",
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "WA_GATEWAY_URL",
        "WA_GATEWAY_SECRET",
        *PACING_ENV,
    ):
        os.environ[name] = env[name]
    # The bench process logs only its own warnings.
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


@contextmanager
def measured(stack):
    """Measure the work done inside the block, into the dict it yields.

    On exit the dict contains the CPU seconds each process used (`cpu`), the
    callback requests gunicorn served (`callback_requests`), and
    PostgreSQL's counters of the bench database (`database`).
    """
    figures: dict = {}
    callbacks_before = stack.callback_requests()
    database_before = database_counters()
    with CpuMeter(stack.cpu_groups) as meter:
        yield figures
    figures["cpu"] = meter.seconds()
    figures["callback_requests"] = stack.callback_requests() - callbacks_before
    database_after = database_counters()
    figures["database"] = {
        name: database_after[name] - database_before[name] for name in database_after
    }


def with_cpu(stack, function, *args, **kwargs) -> dict:
    """Call `function` and add what `measured` found to its result."""
    with measured(stack) as figures:
        result = function(*args, **kwargs)
    result.update(figures)
    return result


def database_counters() -> dict[str, int]:
    """Return the sessions and commits PostgreSQL has counted for this database.

    The server publishes these counters about once a second, so a reading
    right after a phase can miss its last second.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "select sessions, xact_commit from pg_stat_database "
            "where datname = current_database()"
        )
        sessions, commits = cursor.fetchone()
    return {"sessions": sessions, "commits": commits}


def http_noop_again(stack, sizes: Sizes, token: str, count: int, when: str) -> dict:
    """Measure the HTTP no-op once more, next to an outbound full-load run.

    The speed of a shared machine drifts over minutes, so the ceiling
    measured at the start of the run can be far from the one during a
    later scale's outbound run. Each outbound ratio is taken against the
    mean of a measurement just before its run and one just after it.
    """
    progress(f"{count} subscribers: HTTP no-op {when} the full-load run")
    run = with_cpu(
        stack,
        ceilings.http_noop,
        stack,
        token,
        total=max(sizes.noop_requests // 2, 1),
        concurrency=sizes.client_concurrency,
        deadline_s=sizes.load_seconds / 4,
    )
    progress(f"  {run['rate']:.0f} requests/s")
    return run


def run_scale(
    stack, sizes: Sizes, count: int, first_index: int, skip: set, probe_token: str
) -> dict:
    progress(f"{count} subscribers: creating accounts, customers and sessions")
    subscribers = subscribers_create(
        count=count, customers_each=sizes.customers_each, first_index=first_index
    )
    sessions_connect(stack, subscribers, timeout=sizes.wait_s)
    result: dict = {}

    if "outbound" not in skip:
        per_subscriber = -(-sizes.messages // count)
        around = {"before": http_noop_again(stack, sizes, probe_token, count, "before")}
        progress(
            f"{count} subscribers: outbound at full load for {sizes.load_seconds:.0f} s"
        )
        # Measured until the last delivery, without the reading of the
        # results that follows.
        full = outbound.outbound_full(
            stack,
            subscribers,
            measure=partial(measured, stack),
            per_subscriber=per_subscriber,
            concurrency=sizes.client_concurrency,
            send_seconds=sizes.load_seconds,
            wait_s=sizes.wait_s,
        )
        result["outbound_full"] = full
        progress(
            f"  {full['accepted']} messages, {full['rate']:.1f} messages/s "
            f"sustained, {full['errors']} errors"
        )
        around["after"] = http_noop_again(stack, sizes, probe_token, count, "after")
        result["http_noop_around"] = around

        rate = max(full["rate"] / 2, 1.0)
        progress(f"{count} subscribers: outbound at half load, {rate:.1f} messages/s")
        half = outbound.outbound_rate_limited(
            stack,
            subscribers,
            rate=rate,
            duration_s=sizes.half_seconds,
            wait_s=sizes.wait_s,
        )
        result["outbound_half"] = half
        progress(f"  accept→sent p99 {half['sent_ms']['p99']:.0f} ms")

    if "inbound" not in skip:
        result["inbound"] = {}
        for size in sizes.batch_sizes:
            progress(
                f"{count} subscribers: inbound batches of {size} for "
                f"{sizes.load_seconds:.0f} s"
            )
            run = with_cpu(
                stack,
                inbound.inbound_run,
                stack,
                subscribers,
                batch_size=size,
                total=sizes.inbound_events,
                concurrency=sizes.callback_concurrency,
                deadline_s=sizes.load_seconds,
            )
            result["inbound"][size] = run
            progress(
                f"  {run['accepted']} events, {run['events_rate']:.0f} events/s, "
                f"{run['errors']} errors"
            )
    return result


def _on_timeout(signum, frame):
    raise TimeoutError("The bench ran past --max-minutes and was stopped.")


def _on_sigterm(signum, frame):
    raise SystemExit("The bench was stopped by SIGTERM.")


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.scales:
        sizes.scales = args.scales
    if args.messages:
        sizes.messages = args.messages
    if args.sessions:
        sizes.sessions = args.sessions
    write_docs = not (args.quick or args.no_write)

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGALRM, _on_timeout)
    signal.alarm(int(args.max_minutes * 60))

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BASE_DIR / ".run" / "bench" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    config = StackConfig(
        database_url=args.database_url,
        redis_url=args.redis_url,
        gunicorn_workers=args.gunicorn_workers,
        gunicorn_threads=args.gunicorn_threads,
        celery_concurrency=args.celery_concurrency,
        max_sessions=max([*sizes.sessions, 1000]) + 1000,
        django_env=dict(PACING_ENV),
    )
    stack = Stack(config, run_dir)
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]])
    )
    results: dict = {
        "command": command,
        "quick": args.quick,
        "config": {
            "processes": {
                **config.describe(),
                "load generator": (
                    f"this script, {sizes.client_concurrency} client threads for "
                    f"API calls, {sizes.callback_concurrency} for callbacks "
                    "(the gateway's default WA_CALLBACK_CONCURRENCY), on the same "
                    "2 cores as everything else"
                ),
            },
            "notes": [
                "Send pacing set high for the bench: "
                + ", ".join(f"{k}={v}" for k, v in PACING_ENV.items())
                + "; subscribers are on an active plan with a daily quota "
                "of 10,000,000.",
                "Django runs with DEBUG=False, LOG_LEVEL=INFO, "
                "DATABASE_CONN_MAX_AGE=60 (the defaults), through "
                "`bench.bench_settings`, which only adds the two no-op probes.",
            ],
        },
    }

    try:
        load_before = load_average()
        progress(f"starting the stack; logs in {run_dir / 'logs'}")
        stack.start()
        results["machine"] = machine_describe(
            database_url=args.database_url.replace("postgres://", "postgresql://", 1),
            redis_url=args.redis_url,
        )
        results["machine"]["load_before"] = load_before
        django_setup(stack.django_env())

        progress("ceilings: HTTP no-op")
        probe_user = subscribers_create(count=1, customers_each=0, first_index=0)[0]
        ceilings.http_warm(
            stack, probe_user.token, concurrency=sizes.client_concurrency
        )
        results["ceilings"] = {
            "http": with_cpu(
                stack,
                ceilings.http_noop,
                stack,
                probe_user.token,
                total=sizes.noop_requests,
                concurrency=sizes.client_concurrency,
                deadline_s=sizes.load_seconds / 2,
            )
        }
        progress(f"  {results['ceilings']['http']['rate']:.0f} requests/s")
        progress("ceilings: Celery no-op")
        results["ceilings"]["celery"] = ceilings.celery_noop(
            stack, total=sizes.noop_tasks, deadline_s=sizes.wait_s
        )
        progress(f"  {results['ceilings']['celery']['rate']:.0f} tasks/s")

        results["scales"] = {}
        first_index = 1
        for count in sizes.scales:
            results["scales"][count] = run_scale(
                stack, sizes, count, first_index, args.skip, probe_user.token
            )
            first_index += count

        if "gateway" not in args.skip:
            progress(f"gateway memory at {sizes.sessions} idle sessions")
            results["gateway"] = gateway_memory(
                stack,
                levels=sizes.sessions,
                concurrency=sizes.client_concurrency,
                probe_count=sizes.qr_probe,
                settle_s=sizes.settle_s,
                deadline_s=sizes.wait_s,
            )
    finally:
        signal.alarm(0)
        progress("stopping the stack")
        stack.stop()
        if not args.keep_database:
            from bench.stack import database_drop

            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001 - Django may not be set up yet
                pass
            database_drop(args.database_url)

    results.setdefault("machine", {})["load_after"] = load_average()
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    section = report.render(results)
    print(section)
    if write_docs:
        report.docs_write(args.output, section)
        progress(f"wrote {args.output}")
    progress(f"done; raw results in {run_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
