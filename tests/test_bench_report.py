"""The benchmark report judges each goal on the scales that measured it."""

from __future__ import annotations

import pytest

from bench.report import standing

CEILINGS = {"http": {"rate": 800.0}, "celery": {"rate": 1000.0}}
NAN = float("nan")


def _outbound(rate: float, p99: float) -> dict:
    return {
        "outbound_full": {"rate": rate},
        "outbound_half": {"sent_ms": {"p99": p99}},
    }


def test_outbound_only_run_judges_outbound_goals():
    results = {
        "ceilings": CEILINGS,
        "scales": {1: _outbound(420.0, 57.0), 100: _outbound(400.0, 61.0)},
    }

    lines = standing(results)

    assert lines[0] == (
        "- Outbound at least 0.5 of its ceiling: met (ratios 0.525 at 1, "
        "0.500 at 100 subscribers; ceilings 800.0/s, 800.0/s)."
    )
    assert lines[2] == (
        "- Accept-to-sent p99 under 100 ms at half load: met "
        "(57 ms at 1, 61 ms at 100 subscribers)."
    )


def test_skipped_part_not_measured():
    results = {"ceilings": CEILINGS, "scales": {1: _outbound(300.0, 120.0)}}

    lines = standing(results)

    assert lines[1] == (
        "- Inbound batches of 100 at least 2,000 events/s: not measured in this run."
    )
    assert lines[3] == (
        "- Under 100 KB of gateway memory per idle session: not measured in this run."
    )


def test_outbound_goal_uses_lowest_ratio():
    results = {
        "ceilings": CEILINGS,
        "scales": {1: _outbound(480.0, 50.0), 10: _outbound(360.0, 50.0)},
    }

    lines = standing(results)

    assert lines[0].startswith("- Outbound at least 0.5 of its ceiling: NOT met")


@pytest.mark.parametrize("p99s", [(50.0, NAN), (NAN, 50.0)])
def test_missing_p99_misses_the_goal(p99s):
    scales = {
        key: _outbound(480.0, p99) for key, p99 in zip((1, 10), p99s, strict=True)
    }

    lines = standing({"ceilings": CEILINGS, "scales": scales})

    assert lines[2].startswith(
        "- Accept-to-sent p99 under 100 ms at half load: NOT met"
    )


def test_ratio_needs_only_full_load():
    scales = {1: {"outbound_full": {"rate": 500.0}}}

    lines = standing({"ceilings": CEILINGS, "scales": scales})

    assert lines[0].startswith("- Outbound at least 0.5 of its ceiling: met")
    assert lines[2] == (
        "- Accept-to-sent p99 under 100 ms at half load: not measured in this run."
    )


def test_quick_run_skips_memory_goal():
    gateway = {"levels": [{"sessions": 200, "per_session": 60 * 1024}]}
    results = {"ceilings": CEILINGS, "scales": {}, "gateway": gateway, "quick": True}

    lines = standing(results)

    assert lines[3] == (
        "- Under 100 KB of gateway memory per idle session: not judged at --quick "
        "sizes (60.0 KiB per session at 200 sessions); a full run measures "
        "10,000 sessions."
    )
