"""What aiohttp's server may log about a request: never its bytes.

aiohttp logs a request it cannot parse at ERROR, with a traceback whose message
quotes the offending input: the first 100 bytes of an over-long header (an
`Authorization: Bearer <token>` puts the token in the log), or the whole
buffered request with a caret under the bad character (a 10 KB path, every
header). A malformed request is the client's fault, answered 400: it becomes
one INFO line naming the error class and status, nothing from the
request. A handler's own failure keeps its traceback, with the exception's
message bounded and any secret replaced.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

#: aiohttp's logger for request errors (aiohttp.log.server_logger).
SERVER_LOGGER = "aiohttp.server"
#: A request's fault: its head cannot be parsed, or its body cannot be decoded
#: (raised again when aiohttp drains the body after the handler answered 400).
CLIENT_ERRORS = (HttpProcessingError, RequestPayloadError)
#: Characters of an exception message kept in a handler failure's traceback.
MESSAGE_LIMIT = 200
REDACTED = "<redacted>"


class RequestLogSanitizer(logging.Filter):
    """A filter for aiohttp's server logger: rewrites records in place."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CLIENT_ERRORS):
            record.msg = "rejected a malformed HTTP request (HTTP %d, %s)"
            record.args = (getattr(exc, "code", 400), type(exc).__name__)
            if record.levelno > logging.INFO:  # aiohttp says ERROR; a client's fault
                record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        elif exc is not None:
            record.exc_text = self._traceback(exc)
        record.msg, record.args = self._redact(record.getMessage()), ()
        return True

    def _traceback(self, exc: BaseException) -> str:
        """The frames as usual; the message (which may quote input) bounded."""
        frames = "".join(traceback.format_tb(exc.__traceback__))
        message = str(exc)
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "..."
        text = f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {message!r}"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def install(secrets: Iterable[str | None]) -> RequestLogSanitizer:
    """Attach a sanitizer to aiohttp's server logger (the logger itself, so
    the records are clean before any handler sees them)."""
    sanitizer = RequestLogSanitizer(secrets)
    logging.getLogger(SERVER_LOGGER).addFilter(sanitizer)
    return sanitizer
