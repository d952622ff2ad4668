"""The benchmark report judges each goal on the scales that measured it."""

from __future__ import annotations

from bench.report import standing

CEILINGS = {"http": {"rate": 800.0}, "celery": {"rate": 1000.0}}


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


def test_skipped_parts_are_reported_as_not_measured():
    results = {"ceilings": CEILINGS, "scales": {1: _outbound(300.0, 120.0)}}

    lines = standing(results)

    assert lines[1] == "- Inbound batches of 100: not measured in this run."
    assert lines[3] == "- Gateway memory per idle session: not measured in this run."


def test_outbound_goal_uses_the_lowest_ratio():
    results = {
        "ceilings": CEILINGS,
        "scales": {1: _outbound(480.0, 50.0), 10: _outbound(360.0, 50.0)},
    }

    lines = standing(results)

    assert lines[0].startswith("- Outbound at least 0.5 of its ceiling: NOT met")
