"""Properties of the request signature scheme in `sessions_wa.signing`.

`verify` reads a header that anybody on the network can send. It must
reject every malformed or forged value with SignatureError and nothing
else. It must accept every request that `sign` produced with one of the
configured secrets, and reject a request that differs from the signed one
in any byte.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sessions_wa.signing import SignatureError, sign, verify

MAX_AGE = 300
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

secrets_lists = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4)
timestamps = st.integers(min_value=0, max_value=10**12 - 1)
paths = st.text(max_size=200)
bodies = st.binary(max_size=2000)
methods = st.sampled_from(HTTP_METHODS)

hex_digits = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
# Headers close to the valid shape reach the timestamp and HMAC checks;
# arbitrary text mostly tests the shape check.
near_valid_headers = st.builds(
    lambda t, digest, prefix, suffix: f"{prefix}t={t},v1={digest}{suffix}",
    st.integers(min_value=-(10**13), max_value=10**13),
    hex_digits,
    st.sampled_from(["", " ", "\t", "T", "v1=0,"]),
    st.sampled_from(["", " ", "\n", ",", "0", ",v1=" + "0" * 64]),
)
headers = st.one_of(st.none(), st.text(max_size=200), near_valid_headers)


@st.composite
def signed_requests(draw):
    """A request signed with one of the secrets, checked within max age."""
    secrets = draw(secrets_lists)
    secret = draw(st.sampled_from(secrets))
    timestamp = draw(timestamps)
    method = draw(methods)
    path = draw(paths)
    body = draw(bodies)
    now = timestamp + draw(st.integers(min_value=-MAX_AGE, max_value=MAX_AGE))
    header = sign(
        secret=secret, timestamp=timestamp, method=method, path=path, body=body
    )
    return {
        "header": header,
        "secrets": secrets,
        "method": method,
        "path": path,
        "body": body,
        "now": now,
        "max_age": MAX_AGE,
    }


@given(
    header=headers,
    secrets=secrets_lists,
    method=st.one_of(methods, st.text(max_size=10)),
    path=paths,
    body=bodies,
    now=st.integers(min_value=0, max_value=2**40),
)
@example(header="t=,v1=", secrets=["s"], method="GET", path="/", body=b"", now=0)
@example(
    header="t=0,v1=" + "0" * 64, secrets=["s"], method="GET", path="/", body=b"", now=0
)
def test_verify_raises_only_signature_error(header, secrets, method, path, body, now):
    try:
        verify(
            header=header,
            secrets=secrets,
            method=method,
            path=path,
            body=body,
            now=now,
            max_age=MAX_AGE,
        )
    except SignatureError:
        pass


@given(request=signed_requests())
def test_signed_request_verifies(request):
    verify(**request)


@given(request=signed_requests(), data=st.data())
def test_changed_body_byte_is_rejected(request, data):
    body = request["body"]
    if not body:
        body = b"\x00"
        request["header"] = _resign(request, body=body)
    position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = bytearray(body)
    changed[position] ^= flip

    with pytest.raises(SignatureError):
        verify(**{**request, "body": bytes(changed)})


@given(request=signed_requests(), data=st.data())
def test_added_or_removed_body_byte_is_rejected(request, data):
    body = request["body"]
    extra = data.draw(st.binary(min_size=1, max_size=1))
    changed = body[:-1] if body and data.draw(st.booleans()) else body + extra

    with pytest.raises(SignatureError):
        verify(**{**request, "body": changed})


@given(request=signed_requests(), data=st.data())
def test_changed_path_character_is_rejected(request, data):
    path = request["path"] or "/"
    request["header"] = _resign(request, path=path)
    position = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != path[position]))
    changed = path[:position] + replacement + path[position + 1 :]

    with pytest.raises(SignatureError):
        verify(**{**request, "path": changed})


@given(request=signed_requests(), data=st.data())
def test_other_method_is_rejected(request, data):
    other = data.draw(
        st.sampled_from(HTTP_METHODS).filter(lambda m: m != request["method"])
    )

    with pytest.raises(SignatureError):
        verify(**{**request, "method": other})


@given(request=signed_requests(), data=st.data())
def test_changed_header_character_is_rejected(request, data):
    header = request["header"]
    position = data.draw(st.integers(min_value=0, max_value=len(header) - 1))
    replacement = data.draw(
        st.characters(min_codepoint=0, max_codepoint=0x7F).filter(
            lambda c: c != header[position]
        )
    )
    changed = header[:position] + replacement + header[position + 1 :]

    with pytest.raises(SignatureError):
        verify(**{**request, "header": changed})


@given(request=signed_requests(), other_secret=st.text(min_size=1, max_size=40))
def test_unlisted_secret_is_rejected(request, other_secret):
    secrets = [s for s in request["secrets"] if s != other_secret] or [
        other_secret + "x"
    ]
    header = _resign(request, secret=other_secret)

    with pytest.raises(SignatureError):
        verify(**{**request, "header": header, "secrets": secrets})


@given(
    request=signed_requests(), skew=st.integers(min_value=MAX_AGE + 1, max_value=10**6)
)
def test_timestamp_outside_max_age_is_rejected(request, skew):
    timestamp = int(request["header"].split(",")[0][2:])

    with pytest.raises(SignatureError):
        verify(**{**request, "now": timestamp + skew})
    with pytest.raises(SignatureError):
        verify(**{**request, "now": timestamp - skew})


def test_timestamp_in_non_ascii_digits_is_rejected():
    # The gateway's parser (JavaScript \d) reads ASCII digits only, so both
    # sides must reject the same headers.
    header = sign(secret="s", timestamp=1719000000, method="POST", path="/", body=b"")
    timestamp, digest = header.split(",")
    arabic_indic = "".join(chr(0x660 + int(d)) for d in timestamp[2:])

    with pytest.raises(SignatureError):
        verify(
            header=f"t={arabic_indic},{digest}",
            secrets=["s"],
            method="POST",
            path="/",
            body=b"",
            now=1719000000,
        )


def _resign(request: dict, *, secret=None, path=None, body=None) -> str:
    """Sign `request` again with some parts replaced, at its own timestamp."""
    timestamp = int(request["header"].split(",")[0][2:])
    return sign(
        secret=secret if secret is not None else request["secrets"][0],
        timestamp=timestamp,
        method=request["method"],
        path=path if path is not None else request["path"],
        body=body if body is not None else request["body"],
    )
