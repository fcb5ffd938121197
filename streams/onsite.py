"""POST /api/onsite: the best on-site content for a person on a page, now.

Decided in-process (policy.onsite) on a private copy of the state, so the
request never waits for Kafka; the impression is handed to the producer
without waiting for the broker and recorded by the agent that owns the
customer. Until it is recorded there, the impressions this worker returned
are laid over the state of the next request (streams/impressions.py), so
concurrent requests cannot show more than the caps allow. The decision time
is returned in a `Server-Timing` header and observed in
`nudge_onsite_decision_seconds`; content shown counts in `nudge_actions`.

The request is decided by the worker that owns the customer (streams/routing.py,
keyed by the body's customer or visitor id): its tables hold the state and its
pending impressions are the ones laid over, whichever worker was asked.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from faust import web

from nudge.policy import onsite
from nudge.policy.state import decode_state
from nudge.policy.stored import STATE_TABLE, decode_record
from nudge.schemas.codec import InvalidEvent
from nudge.streams import metrics
from nudge.streams.app import NudgeApp
from nudge.streams.impressions import PendingImpressions
from nudge.streams.views import auth_error, owner_router, read_body


def register_onsite(nudge: NudgeApp) -> None:
    app, settings = nudge.app, nudge.settings
    engine = nudge.processor.engine
    impressions = nudge.outputs[onsite.IMPRESSION_KIND]
    pending = PendingImpressions()
    owners = owner_router(nudge)

    @app.page("/api/onsite")
    class Onsite(web.View):
        async def post(self, request: web.Request) -> web.Response:
            denied = auth_error(self, request, settings.api_token)
            if denied is not None:
                return denied
            body = await read_body(self, request, onsite.MAX_REQUEST_BYTES)
            if not isinstance(body, bytes):
                return body
            try:
                wanted = onsite.decode_request(body)
            except InvalidEvent as exc:
                return self.json({"error": exc.reason, "detail": exc.detail}, status=400)
            subject = (wanted.customer_id or wanted.anonymous_id or "").encode()

            async def show() -> web.Response:
                started = time.perf_counter()
                state = decode_state(decode_record(nudge.tables[STATE_TABLE].get(subject)))
                pending.lay_over(engine, state, subject.decode())
                event_id = f"onsite-{uuid.uuid4().hex}"
                now = datetime.now(UTC)
                decision, impression = onsite.decide(engine, state, wanted, now, event_id)
                elapsed = time.perf_counter() - started
                metrics.ONSITE_SECONDS.observe(elapsed)
                if impression is not None:
                    # Counted before the first await, so the next request sees it.
                    pending.add(impression)
                    metrics.ACTIONS.labels(impression.channel, impression.action_id).inc()
                    await impressions.send(key=subject, value=onsite.encode_impression(impression))
                return self.json(
                    onsite.response_body(decision),
                    headers={"Server-Timing": f"decide;dur={elapsed * 1000:.3f}"},
                )

            return await owners.answer(self, request, subject, body, show)
