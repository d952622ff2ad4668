"""The benchmark's command line rejects parts it does not know."""

from __future__ import annotations

import pytest

from bench.run import parse_args


def test_skip_takes_listed_parts_with_spaces():
    args = parse_args(["--skip", "inbound, gateway"])

    assert args.skip == {"inbound", "gateway"}


def test_skip_rejects_unknown_part(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--skip", "inbuond"])

    assert exit_info.value.code == 2
    assert "unknown part 'inbuond'" in capsys.readouterr().err
