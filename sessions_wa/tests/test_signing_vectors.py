"""The shared signing vectors, checked on the Python side."""

import json
from pathlib import Path

import pytest

from sessions_wa.signing import SignatureError, sign, verify

VECTORS_PATH = (
    Path(__file__).resolve().parents[2]
    / "gateway_node"
    / "test"
    / "fixtures"
    / "signing-vectors.json"
)
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: case["name"])
def test_signing_vector(case):
    kwargs = dict(
        header=case["header"],
        secrets=case["secrets"],
        method=case["method"],
        path=case["path"],
        body=case["body"].encode(),
        now=case["now"],
        max_age=VECTORS["max_age"],
    )
    if case["valid"]:
        verify(**kwargs)
    else:
        with pytest.raises(SignatureError):
            verify(**kwargs)


def test_sign_matches_first_valid_vector():
    case = VECTORS["cases"][0]
    timestamp = int(case["header"].split(",")[0][2:])

    header = sign(
        secret=case["secrets"][0],
        timestamp=timestamp,
        method=case["method"],
        path=case["path"],
        body=case["body"].encode(),
    )

    assert header == case["header"]


def test_path_with_lone_surrogate_is_rejected():
    header = sign(secret="s", timestamp=1000, method="POST", path="/a", body=b"")

    with pytest.raises(SignatureError, match="not valid Unicode"):
        verify(
            header=header,
            secrets=["s"],
            method="POST",
            path="/\ud800",
            body=b"",
            now=1000,
        )
