"""aiohttp's request-error records after the sanitizer: a malformed request is
one INFO line without its bytes; a handler's failure keeps its traceback with
its message bounded and the secrets replaced. (The real worker is tested in
tests/reliability/test_http_hygiene.py.)"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage, InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestPayloadError
from mode.utils.logging import ExtensionFormatter

from nudge.streams.http_log import SERVER_LOGGER, RequestLogSanitizer

TOKEN = "sanitizer-test-token"


@pytest.fixture
def server_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """aiohttp's server logger with the sanitizer, writing to a string."""
    logger = logging.getLogger(SERVER_LOGGER)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # The worker's formatter: it rewrites record.args before rendering.
    handler.setFormatter(ExtensionFormatter(stream, fmt="%(levelname)s %(message)s", no_color=True))
    sanitizer = RequestLogSanitizer([TOKEN, None])
    logger.addFilter(sanitizer)
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeFilter(sanitizer)
    logger.removeHandler(handler)
    logger.propagate = True


def raised(exc: BaseException) -> BaseException:
    """The exception with a traceback, as aiohttp logs it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    "exc",
    [
        LineTooLong(b"Bearer " + TOKEN.encode() + b"A" * 80 + b"...", 8190),
        BadHttpMessage(f"Invalid header value char:\n\n  b'Authorization: Bearer {TOKEN}\\x01'"),
        InvalidURLError("Invalid char in url path:\n\n  b'GET /" + "R" * 10240 + "'"),
        RequestPayloadError(f"400, message:\n  Can not decode content-encoding: gzip {TOKEN}"),
    ],
    ids=["over-long header", "bad header char", "huge path", "undecodable body"],
)
def test_a_malformed_request_is_one_info_line_without_its_bytes(server_log, exc) -> None:
    logger, stream = server_log
    logger.exception("Error handling request from %s", "127.0.0.1", exc_info=raised(exc))
    text = stream.getvalue()
    assert text == f"INFO rejected a malformed HTTP request (HTTP 400, {type(exc).__name__})\n"


def test_a_handler_failure_keeps_its_traceback_without_secrets(server_log) -> None:
    logger, stream = server_log
    exc = raised(ValueError(f"bad value Bearer {TOKEN} " + "x" * 10_000))
    logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    text = stream.getvalue()
    assert text.startswith("ERROR Error handling request from 127.0.0.1\nTraceback")
    assert "in raised" in text, "the frames stay: a bug needs them"
    assert TOKEN not in text and "<redacted>" in text
    assert len(text) < 1000, "the exception's message is bounded"


def test_a_debug_record_stays_at_debug(server_log) -> None:
    logger, stream = server_log
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Error handling request from %s", "::1", exc_info=raised(LineTooLong(b"x")))
    finally:
        logger.setLevel(logging.NOTSET)
    assert stream.getvalue().startswith("DEBUG rejected a malformed HTTP request")
