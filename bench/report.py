"""Turn the results of a run into Markdown tables and write them to the docs.

`docs/benchmarks.md` keeps hand-written notes around a generated section
between RESULTS_BEGIN and RESULTS_END; a run replaces only that section.
"""

from __future__ import annotations

import math
from pathlib import Path

RESULTS_BEGIN = "<!-- bench/run.py results: begin -->"
RESULTS_END = "<!-- bench/run.py results: end -->"

# Goals the figures are compared with.
GOAL_OUTBOUND_CEILING_RATIO = 0.5
GOAL_INBOUND_EVENTS_PER_S = 2000
GOAL_SENT_P99_MS = 100
GOAL_SESSION_BYTES = 100 * 1024


def _num(value, digits=0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ms3(summary: dict) -> str:
    return " / ".join(_num(summary[key]) for key in ("p50", "p95", "p99"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def outbound_ceiling(ceilings: dict, scale: dict | None = None) -> float:
    """Messages/s ceiling: one API call and one task per message, at no cost.

    The HTTP part is the mean of the no-op runs just before and after the
    scale's full-load run where the scale has them, else the one at the
    start of the run.
    """
    http = ceilings["http"]["rate"]
    around = (scale or {}).get("http_noop_around")
    if around:
        http = (around["before"]["rate"] + around["after"]["rate"]) / 2
    return min(http, ceilings["celery"]["rate"])


def _outbound_rows(scales: dict, ceilings: dict) -> list[list[str]]:
    keys = list(scales)

    def row(label, value, goal=""):
        return [label, *[value(scales[key]) for key in keys], goal]

    def full(scale):
        return scale["outbound_full"]

    def half(scale):
        return scale["outbound_half"]

    return [
        row(
            "messages sent at full load (each until delivered)",
            lambda s: _num(full(s)["accepted"]),
        ),
        row("sustained messages/s, full load", lambda s: _num(full(s)["rate"], 1)),
        row(
            "HTTP no-op requests/s just before / after the full-load run",
            _around_rates,
        ),
        row(
            "ceiling: min of the two no-ops' mean and the Celery no-op",
            lambda s: _num(outbound_ceiling(ceilings, s), 1),
        ),
        row(
            "ratio to the ceiling",
            lambda s: _num(full(s)["rate"] / outbound_ceiling(ceilings, s), 3),
            f"≥ {GOAL_OUTBOUND_CEILING_RATIO}",
        ),
        row("API accepts/s, full load", lambda s: _num(full(s)["api_rate"], 1)),
        row(
            "API call p50 / p99 ms, full load",
            lambda s: f"{_num(full(s)['api_p50_ms'])} / {_num(full(s)['api_p99_ms'])}",
        ),
        row(
            "accept→sent p50 / p95 / p99 ms, full load",
            lambda s: _ms3(full(s)["sent_ms"]),
        ),
        row(
            "accept→delivered p50 / p95 / p99 ms, full load",
            lambda s: _ms3(full(s)["delivered_ms"]),
        ),
        row(
            "half load: messages/s offered (achieved)",
            lambda s: (
                f"{_num(half(s)['offered_rate'], 1)} "
                f"({_num(half(s)['achieved_rate'], 1)})"
            ),
        ),
        row("half load: messages", lambda s: _num(half(s)["accepted"])),
        row(
            "accept→sent p50 / p95 / p99 ms, half load",
            lambda s: _ms3(half(s)["sent_ms"]),
            f"p99 < {GOAL_SENT_P99_MS}",
        ),
        row(
            "accept→delivered p50 / p95 / p99 ms, half load",
            lambda s: _ms3(half(s)["delivered_ms"]),
        ),
        row(
            "gateway callback requests per message, full load",
            lambda s: _num(
                full(s)["callback_requests"] / max(full(s)["accepted"], 1), 2
            ),
        ),
        row(
            "database connections opened / commits per message, full load",
            lambda s: (
                f"{_num(full(s)['database']['sessions'] / _delivered(full(s)), 2)} / "
                f"{_num(full(s)['database']['commits'] / _delivered(full(s)), 1)}"
            ),
        ),
        row(
            "send errors (full + half)",
            lambda s: _num(full(s)["errors"] + half(s)["errors"]),
        ),
        row("statuses at the end, full load", lambda s: _statuses(full(s)["statuses"])),
    ]


def _around_rates(scale: dict) -> str:
    around = scale.get("http_noop_around")
    if not around:
        return ""
    return f"{_num(around['before']['rate'], 1)} / {_num(around['after']['rate'], 1)}"


def _delivered(run: dict) -> int:
    return max(run["delivered_ms"]["count"], 1)


def _statuses(counts: dict) -> str:
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))


def _inbound_rows(scales: dict, http_rate: float) -> list[list[str]]:
    keys = list(scales)
    sizes = list(next(iter(scales.values()))["inbound"])
    rows = []
    for size in sizes:
        goal = f"≥ {GOAL_INBOUND_EVENTS_PER_S:,}" if size == 100 else ""
        rows.append(
            [f"events stored/s, batches of {size}"]
            + [_num(scales[key]["inbound"][size]["events_rate"]) for key in keys]
            + [goal]
        )
    for size in sizes:
        rows.append(
            [f"requests/s as a ratio to the HTTP no-op, batches of {size}"]
            + [
                _num(scales[key]["inbound"][size]["requests_rate"] / http_rate, 3)
                for key in keys
            ]
            + [""]
        )
    for size in sizes:
        rows.append(
            [f"request p50 / p99 ms, batches of {size}"]
            + [
                f"{_num(scales[key]['inbound'][size]['p50_ms'])} / "
                f"{_num(scales[key]['inbound'][size]['p99_ms'])}"
                for key in keys
            ]
            + [""]
        )
    for size in sizes:
        rows.append(
            [f"database connections opened / commits per event, batches of {size}"]
            + [
                _per_event(scales[key]["inbound"][size], "sessions", 2)
                + " / "
                + _per_event(scales[key]["inbound"][size], "commits", 2)
                for key in keys
            ]
            + [""]
        )
    rows.append(
        ["events posted / stored / errors (all sizes)"]
        + [
            " / ".join(
                _num(sum(run[field] for run in scales[key]["inbound"].values()))
                for field in ("events", "stored", "errors")
            )
            for key in keys
        ]
        + [""]
    )
    rows.append(
        ["a repeated batch comes back as duplicates"]
        + [
            "yes"
            if all(
                run["repeat_duplicates"] == run["repeat_size"]
                for run in scales[key]["inbound"].values()
            )
            else "NO"
            for key in keys
        ]
        + [""]
    )
    return rows


def _per_event(run: dict, counter: str, digits: int) -> str:
    return _num(run["database"][counter] / max(run["accepted"], 1), digits)


def _gateway_rows(gateway: dict) -> list[list[str]]:
    rows = []
    for level in gateway["levels"]:
        per_session = level.get("per_session")
        qr = level.get("qr_ms")
        burst = level.get("burst_qr_ms")
        rows.append(
            [
                _num(level["sessions"]),
                _num(level["rss"] / 1024 / 1024, 1),
                _num(per_session / 1024, 1) if per_session is not None else "",
                f"{_num(qr['p50'])} / {_num(qr['p95'])}" if qr else "",
                f"{_num(burst['p50'])} / {_num(burst['p95'])}" if burst else "",
                _num(level["start_rate"]) if "start_rate" in level else "",
            ]
        )
    return rows


def _cpu_rows(scales: dict, part: str, unit_count, unit: str) -> list[list[str]]:
    keys = list(scales)
    components = list(next(iter(scales.values()))[part]["cpu"])
    rows = []
    for component in components:
        rows.append(
            [f"{component}, CPU ms per {unit}"]
            + [
                _num(
                    scales[key][part]["cpu"][component]
                    * 1000
                    / max(unit_count(scales[key][part]), 1),
                    2,
                )
                for key in keys
            ]
            + [""]
        )
    return rows


def _cpu_per(run: dict, count: int) -> float:
    return sum(run["cpu"].values()) * 1000 / max(count, 1)


def _outbound_cpu_totals(scales: dict) -> list[list[str]]:
    """Return rows of all processes' CPU per message and per no-op request."""
    keys = list(scales)

    def noop(scale) -> str:
        around = scale.get("http_noop_around")
        if not around or "cpu" not in around["before"]:
            return ""
        runs = (around["before"], around["after"])
        return _num(sum(_cpu_per(run, run["requests"]) for run in runs) / 2, 2)

    def message(scale) -> str:
        full = scale["outbound_full"]
        return _num(_cpu_per(full, full["delivered_ms"]["count"]), 2)

    return [
        ["all processes, CPU ms per message", *[message(scales[k]) for k in keys], ""],
        [
            "all processes, CPU ms per HTTP no-op request around the run",
            *[noop(scales[k]) for k in keys],
            "",
        ],
    ]


def standing(results: dict) -> list[str]:
    """Return one line per goal: the figure it is judged on, and met or not.

    Each goal is judged on the scales that measured it, and a figure that
    could not be computed (NaN, as when no message reached `sent`) misses
    its goal. A goal that no scale measured, as when its part was skipped,
    is reported as not measured.
    """
    ceilings = results["ceilings"]
    scales = results["scales"]
    ratio_goal = f"Outbound at least {GOAL_OUTBOUND_CEILING_RATIO} of its ceiling"
    inbound_goal = (
        f"Inbound batches of 100 at least {GOAL_INBOUND_EVENTS_PER_S:,} events/s"
    )
    p99_goal = f"Accept-to-sent p99 under {GOAL_SENT_P99_MS} ms at half load"
    memory_goal = (
        f"Under {GOAL_SESSION_BYTES // 1024} KB of gateway memory per idle session"
    )
    lines = []

    full = {key: scale for key, scale in scales.items() if "outbound_full" in scale}
    if full:
        limits = {key: outbound_ceiling(ceilings, scale) for key, scale in full.items()}
        ratios = {
            key: scale["outbound_full"]["rate"] / limits[key]
            for key, scale in full.items()
        }
        met = _all_met(ratios.values(), lambda r: r >= GOAL_OUTBOUND_CEILING_RATIO)
        lines.append(
            f"- {ratio_goal}: {met} "
            f"(ratios {', '.join(f'{_num(r, 3)} at {k}' for k, r in ratios.items())} "
            "subscribers; ceilings "
            f"{', '.join(f'{_num(v, 1)}/s' for v in limits.values())})."
        )
    else:
        lines.append(_not_measured(ratio_goal))

    inbound = {
        key: scale["inbound"][100]["events_rate"]
        for key, scale in scales.items()
        if 100 in scale.get("inbound", {})
    }
    if inbound:
        met = _all_met(inbound.values(), lambda v: v >= GOAL_INBOUND_EVENTS_PER_S)
        lines.append(
            f"- {inbound_goal}: {met} "
            f"({', '.join(f'{_num(v)} at {k}' for k, v in inbound.items())} "
            "subscribers)."
        )
    else:
        lines.append(_not_measured(inbound_goal))

    p99s = {
        key: scale["outbound_half"]["sent_ms"]["p99"]
        for key, scale in scales.items()
        if "outbound_half" in scale
    }
    if p99s:
        met = _all_met(p99s.values(), lambda v: v < GOAL_SENT_P99_MS)
        lines.append(
            f"- {p99_goal}: {met} "
            f"({', '.join(f'{_num(v)} ms at {k}' for k, v in p99s.items())} "
            "subscribers)."
        )
    else:
        lines.append(_not_measured(p99_goal))

    gateway = results.get("gateway")
    if gateway:
        last = gateway["levels"][-1]
        per = last["per_session"]
        figure = (
            f"{_num(per / 1024, 1)} KiB per session at {_num(last['sessions'])} "
            "sessions"
        )
        if results.get("quick"):
            # A few hundred sessions weigh little beside the process's own
            # growth, which the division spreads over them.
            lines.append(
                f"- {memory_goal}: not judged at --quick sizes ({figure}); "
                "a full run measures 10,000 sessions."
            )
        else:
            met = _all_met([per], lambda v: v < GOAL_SESSION_BYTES)
            lines.append(f"- {memory_goal}: {met} ({figure}).")
    else:
        lines.append(_not_measured(memory_goal))
    return lines


def _all_met(figures, meets) -> str:
    """Return "met" when every figure is a number that meets the goal."""
    met = all(not math.isnan(figure) and meets(figure) for figure in figures)
    return "met" if met else "NOT met"


def _not_measured(goal: str) -> str:
    return f"- {goal}: not measured in this run."


# A 1-minute load average above this before a run means other work shared
# the CPUs with the bench (the bench itself raises the load after it).
BUSY_LOAD = 0.5


def _busy_warning(machine: dict) -> str | None:
    load = float(machine.get("load_before", "0").split()[0])
    if load <= BUSY_LOAD:
        return None
    return (
        f"**Other work was running**: the 1-minute load average was {load:.2f} "
        "before the run, so the processes shared the CPUs with it and the "
        "rates below are lower than on an idle machine. Compare figures only "
        "with runs made under a similar load."
    )


def render(results: dict) -> str:
    machine = results["machine"]
    config = results["config"]
    ceilings = results["ceilings"]
    scales = results["scales"]
    lines = [
        f"Command: `{results['command']}`"
        + (" (quick mode)" if results["quick"] else ""),
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory']} RAM, Linux {machine['kernel']}. "
        f"Run on {machine['date']}. Load average (1, 5, 15 min) before the "
        f"run {machine['load_before']}, after it {machine['load_after']}; other "
        "work on the machine shows up as a load above 0 before the run.",
        "",
        "Versions: "
        + ", ".join(
            f"{name} {machine[key]}"
            for name, key in [
                ("Python", "python"),
                ("Django", "Django"),
                ("DRF", "djangorestframework"),
                ("Celery", "celery"),
                ("gunicorn", "gunicorn"),
                ("psycopg", "psycopg"),
                ("redis-py", "redis"),
                ("PostgreSQL", "postgresql"),
                ("Redis", "redis_server"),
                ("Node", "node"),
            ]
        )
        + ".",
        "",
        "Processes, all on 127.0.0.1 and started by the script, with a fresh database:",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in config["processes"].items()]
    lines += [f"- {text}" for text in config["notes"]]
    busy = _busy_warning(machine)
    if busy:
        lines += ["", busy]
    lines += ["", "### Where the product stands", ""]
    lines += standing(results)

    lines += ["", "### Ceilings (same processes, same run)", ""]
    http = ceilings["http"]
    celery = ceilings["celery"]
    lines += _table(
        ["probe", "rate", "p50 / p99 ms", "size"],
        [
            [
                "DRF no-op view `GET /bench/noop` (token auth), "
                f"{http['concurrency']} clients",
                f"{_num(http['rate'], 1)} requests/s",
                f"{_num(http['p50_ms'], 1)} / {_num(http['p99_ms'], 1)}",
                f"{_num(http['requests'])} requests, {http['errors']} errors",
            ],
            [
                f"Celery no-op task, concurrency {celery['concurrency']}",
                f"{_num(celery['rate'], 1)} tasks/s",
                "",
                f"{_num(celery['tasks'])} tasks"
                + ("" if celery["drained"] else ", queue NOT drained in time"),
            ],
        ],
    )
    if "cpu" in http:
        shares = ", ".join(
            f"{component} {_num(seconds * 1000 / max(http['requests'], 1), 2)}"
            for component, seconds in http["cpu"].items()
        )
        note = f"CPU ms per no-op request, by process: {shares}."
        if any("outbound_full" in scale for scale in scales.values()):
            note += (
                " A message's CPU in the outbound tables below compares with "
                "these figures."
            )
        lines += ["", note]

    header = [
        "figure",
        *[f"{key} subscriber{'s' if key != 1 else ''}" for key in scales],
        "goal",
    ]
    if scales and all("outbound_full" in scale for scale in scales.values()):
        lines += ["", "### Outbound: `POST /api/messages/send` until delivered", ""]
        lines += _table(header, _outbound_rows(scales, ceilings))
        lines += ["", "CPU time per delivered message at full load, by process:", ""]
        lines += _table(
            header,
            _cpu_rows(
                scales,
                "outbound_full",
                lambda run: run["delivered_ms"]["count"],
                "message",
            )
            + _outbound_cpu_totals(scales),
        )
    if scales and all("inbound" in scale for scale in scales.values()):
        lines += ["", "### Inbound: signed `message.received` callback batches", ""]
        lines += _table(header, _inbound_rows(scales, http["rate"]))
        if all(100 in scale["inbound"] for scale in scales.values()):
            lines += ["", "CPU time per stored event, batches of 100, by process:", ""]
            batch = {
                key: {"run": scale["inbound"][100]} for key, scale in scales.items()
            }
            lines += _table(
                header, _cpu_rows(batch, "run", lambda run: run["accepted"], "event")
            )

    gateway = results.get("gateway")
    if gateway:
        lines += [
            "",
            "### Gateway: one process, idle sim sessions at `qr_pending`",
            "",
        ]
        lines += _table(
            [
                "sessions",
                "RSS MiB",
                "KiB per session beyond 0",
                "start-to-QR p50 / p95 ms, paced",
                "start-to-QR p50 / p95 ms, while filling",
                "starts/s while filling",
            ],
            _gateway_rows(gateway),
        )
    return "\n".join(lines) + "\n"


DOC_HEADER = """# Benchmarks

Numbers from `make bench` (`bench/run.py`). The section between the markers
below is rewritten by each full run; the notes around it are kept.

"""


def docs_write(path: Path, section: str) -> None:
    """Replace the generated section of `path`, keeping the rest of the file."""
    block = f"{RESULTS_BEGIN}\n{section}{RESULTS_END}\n"
    text = path.read_text() if path.exists() else DOC_HEADER
    if RESULTS_BEGIN in text and RESULTS_END in text:
        before = text[: text.index(RESULTS_BEGIN)]
        after = text[text.index(RESULTS_END) + len(RESULTS_END) :].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
