"""Malformed HTTP requests against a real worker: never a 500, never a secret
or an echo of the request in its log.

aiohttp logged an over-long header at ERROR with its first 100 bytes (the
bearer token), and a request line or header with a bad character with the
whole buffered request (a 10 KB path); a non-UTF-8 Authorization header made
the API answer 500 with a traceback. Requests go over raw sockets, so the
bytes are exactly the ones written here.
"""

from __future__ import annotations

import re
import secrets
import socket
import uuid
from contextlib import suppress

import pytest

from nudge.testing import WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.reliability

#: Repeated to make huge paths: its presence in the log is an echo of a path.
MARKER = f"pathmark{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def worker(module_workers: Workers, token: str) -> WorkerProcess:
    # The production log level: what operators collect.
    return module_workers.start(env={"NUDGE_API_TOKEN": token, "NUDGE_LOG_LEVEL": "info"})


def send(worker: WorkerProcess, request: bytes) -> int:
    """Write raw bytes, return the response's status code (0: no response)."""
    with socket.create_connection(("127.0.0.1", worker.web_port), timeout=10) as conn:
        with suppress(ConnectionError):  # answered and closed before reading it all
            conn.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return int(match.group(1)) if match else 0


def get(path: bytes, authorization: bytes | None = None) -> bytes:
    """A GET request with exactly these bytes."""
    auth = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
    return b"GET " + path + b" HTTP/1.1\r\nHost: nudge\r\n" + auth + b"Connection: close\r\n\r\n"


def unknown_customer() -> bytes:
    return f"/api/customers/nobody-{uuid.uuid4().hex[:8]}".encode()


# First in the module: aiohttp logs every request error with one template, so
# the first one decides what a repeat limiter lets through.
@pytest.mark.parametrize("token_first", [True, False], ids=["token-first", "token-last"])
def test_an_over_long_authorization_header_is_a_400(
    worker: WorkerProcess, token: str, token_first: bool
) -> None:
    padding = b"A" * 20_000
    value = token.encode() + padding if token_first else padding + token.encode()
    assert send(worker, get(unknown_customer(), b"Bearer " + value)) == 400


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(worker: WorkerProcess, token: str, scheme) -> None:
    """404: authenticated, and no state for this customer."""
    assert send(worker, get(unknown_customer(), f"{scheme} {token}".encode())) == 404
    assert send(worker, get(unknown_customer(), f"{scheme} wrong-{token}".encode())) == 403
    assert send(worker, get(unknown_customer(), f"{scheme}{token}".encode())) == 401


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe", b"Bearer \xff\xfe{token}", b"Bearer {token}\xc3", b"bearer \xed\xa0\x80"],
    ids=["only-bad-bytes", "bad-bytes-then-token", "token-then-truncated-utf8", "surrogate"],
)
def test_a_non_utf8_authorization_header_is_a_401(
    worker: WorkerProcess, token: str, authorization: bytes
) -> None:
    header = authorization.replace(b"{token}", token.encode())
    assert send(worker, get(unknown_customer(), header)) == 401
    body = b'{"event_id": "x"}'
    post = (
        b"POST /api/decide/clickstream HTTP/1.1\r\nHost: nudge\r\nAuthorization: " + header
        + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )  # fmt: skip
    assert send(worker, post) == 401


def test_a_header_with_a_control_character_is_a_400(worker: WorkerProcess, token: str) -> None:
    for value in (f"Bearer {token}\x01", f"Bearer \x00{token}"):
        assert send(worker, get(unknown_customer(), value.encode())) == 400


@pytest.mark.parametrize("path", [b"/api/decide/clickstream", b"/api/onsite"])
def test_a_body_that_cannot_be_decoded_is_a_400(worker: WorkerProcess, token: str, path) -> None:
    """aiohttp raises the body's framing or encoding error in the handler's read."""
    head = (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: nudge\r\nAuthorization: Bearer %s\r\n" % (token.encode())
    )
    garbage = MARKER.encode() * 4
    gzip = b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(garbage) + garbage
    chunked = b"Transfer-Encoding: chunked\r\n\r\n" + b"ZZ" + garbage + b"\r\n"
    assert send(worker, head + gzip) == 400
    assert send(worker, head + chunked) == 400


def test_huge_or_odd_paths_are_answered_without_a_500(worker: WorkerProcess, token: str) -> None:
    auth = f"Bearer {token}".encode()
    huge = b"/api/customers/" + MARKER.encode() * (10_240 // len(MARKER))
    assert send(worker, get(huge, auth)) == 400  # over aiohttp's 8190-byte line limit
    assert send(worker, get(huge)) == 400
    assert send(worker, get(huge[:6000] + b"\x01", auth)) == 400  # a bad character in it
    assert send(worker, get(huge[:6000], auth)) == 404  # long but legal: no such customer
    assert send(worker, get(huge[:6000])) == 401
    assert send(worker, get(b"/api/customers/%FF%FE%ED%A0%80", auth)) == 404
    assert send(worker, get(b"/api/customers/\xff\xfe", auth)) in (400, 404)
    assert send(worker, get(b"/api/decide/" + MARKER.encode() * 100, auth)) == 405


def test_the_worker_still_serves_and_its_log_holds_no_secret_or_echo(
    worker: WorkerProcess, token: str
) -> None:
    """Last in the module: every request above has reached the worker."""
    assert worker.get("/health")[0] == 200
    assert worker.get(unknown_customer().decode(), token=token)[0] == 404
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert token not in log, "the API token is in the worker log"
    assert token[:12] not in log, "a prefix of the API token is in the worker log"
    assert MARKER not in log, "a path was echoed into the worker log"
    assert "AAAAAAAAAA" not in log, "a header value was echoed into the worker log"
    assert "Traceback" not in log, worker.tail(60)
    assert "rejected a malformed HTTP request (HTTP 400, LineTooLong)" in log
    assert not [line for line in log.splitlines() if len(line) > 1000], "an over-long log line"
