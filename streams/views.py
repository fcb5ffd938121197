"""HTTP endpoints on the worker's web server: probes for Kubernetes/Compose,
and the explanation API (answered by the customer's owner: streams/routing.py).

/health answers while the process runs; /ready only once partitions are
assigned and the tables have recovered, so no traffic is routed to a worker
whose state is still being rebuilt.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from aiohttp.web_protocol import RequestPayloadError
from faust import web

from nudge.policy.explain import summarize_state, trace_outcome
from nudge.policy.state import decode_state
from nudge.policy.stored import STATE_TABLE, Parts, decode_record
from nudge.schemas.codec import InvalidEvent, decode_event
from nudge.streams.app import NudgeApp
from nudge.streams.routing import OwnerRouter
from nudge.streams.topics import INPUT_KINDS


def is_ready(nudge: NudgeApp) -> bool:
    app = nudge.app
    try:
        assigned = bool(app.consumer.assignment())
    except Exception:  # consumer not started yet
        return False
    return (
        assigned
        and app.tables.recovery.completed.is_set()
        and bool(app.tables.actives_ready)
        and not app.rebalancing
    )


def register_probes(nudge: NudgeApp) -> None:
    app = nudge.app

    @app.page("/health")
    async def health(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "alive"})

    @app.page("/ready")
    async def ready(self: web.View, request: web.Request) -> web.Response:
        ok = is_ready(nudge)
        return self.json({"ready": ok}, status=200 if ok else 503)


MAX_BODY_BYTES = 64 * 1024


def owner_router(nudge: NudgeApp) -> OwnerRouter:
    """Routes customer-keyed requests; serves locally only while ready."""
    return OwnerRouter(nudge, lambda: is_ready(nudge))


def auth_error(view: web.View, request: web.Request, token: str | None) -> web.Response | None:
    """401 without credentials, 403 with wrong ones (compared in constant time).

    The scheme is case-insensitive (RFC 7235). aiohttp keeps header bytes that
    are not UTF-8 as surrogates, which cannot be encoded: such a header carries
    no credentials (401), it must not become a 500.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return view.json({"error": "missing bearer token"}, status=401)
    try:
        offered = credentials.encode()
    except UnicodeEncodeError:
        return view.json({"error": "malformed bearer token"}, status=401)
    if token is None:
        return view.json({"error": "API disabled: NUDGE_API_TOKEN is not set"}, status=403)
    if not hmac.compare_digest(offered, token.encode()):
        return view.json({"error": "invalid token"}, status=403)
    return None


async def read_body(view: web.View, request: web.Request, limit: int) -> bytes | web.Response:
    """The body, or the answer when there is none to decide on: 413 over
    `limit` (with or without Content-Length), 400 when aiohttp cannot decode it
    (a bad chunk size or Content-Encoding raises in the read, a 500 otherwise)."""
    if (request.content_length or 0) <= limit:
        try:
            body = await request.content.read(limit + 1)
        except RequestPayloadError:
            return view.json({"error": "request body cannot be decoded"}, status=400)
        if len(body) <= limit:
            return body
    return view.json({"error": "request body too large"}, status=413)


def register_api(nudge: NudgeApp) -> None:
    """Explanations: a customer's state and a dry-run decision, read-only,
    both from the customer's owner (streams/routing.py)."""
    app, settings = nudge.app, nudge.settings
    engine = nudge.processor.engine
    owners = owner_router(nudge)

    def load(subject: str) -> Parts:
        return decode_record(nudge.tables[STATE_TABLE].get(subject.encode()))

    @app.page("/api/customers/{customer_id}")
    class CustomerState(web.View):
        async def get(self, request: web.Request, customer_id: str) -> web.Response:
            denied = auth_error(self, request, settings.api_token)
            if denied is not None:
                return denied

            async def summary() -> web.Response:
                parts = load(customer_id)
                if not any(parts.values()):
                    return self.json({"error": "no state for this customer"}, status=404)
                now = datetime.now(UTC)
                return self.json(
                    summarize_state(decode_state(parts), customer_id, engine.policy, now)
                )

            return await owners.answer(self, request, customer_id.encode(), None, summary)

    @app.page("/api/decide/{kind}")
    class DryRun(web.View):
        async def post(self, request: web.Request, kind: str) -> web.Response:
            denied = auth_error(self, request, settings.api_token)
            if denied is not None:
                return denied
            if kind not in INPUT_KINDS:
                return self.json({"error": f"unknown input kind {kind!r}"}, status=404)
            body = await read_body(self, request, MAX_BODY_BYTES)
            if not isinstance(body, bytes):
                return body
            now = datetime.now(UTC)
            try:
                event = decode_event(kind, body, None, now, check_key=False)
            except InvalidEvent as exc:
                return self.json({"error": exc.reason, "detail": exc.detail}, status=400)
            subject = event.subject_id or ""

            async def dry_run() -> web.Response:
                state = decode_state(load(subject))  # a private copy
                outcome = engine.process(state, event, now, subject, explain=True)
                return self.json(trace_outcome(outcome))

            return await owners.answer(self, request, subject.encode(), body, dry_run)
