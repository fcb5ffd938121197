"""On-site decisions: the best web content for a person on a page, right now.

A web page or app asks while the person is there, so the decision is made
in-process on a private copy of their state, restricted to the `web` channel,
under the same consent, fatigue, cap and cooldown rules as every other
decision. The impression (content shown) must still count as a contact, but
Faust cannot write tables from a web request: it travels as a small record
through an internal topic to the agent that owns the customer, which records
it once per decision id (policy.processor, IMPRESSION_KIND).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from nudge.policy.engine import Engine
from nudge.policy.state import CustomerState
from nudge.schemas.codec import InvalidEvent
from nudge.schemas.events import Channel, ClickEvent, ClickType, Identifier, Label
from nudge.schemas.outputs import Action, Decision

#: Internal topic kind carrying impressions to the customer's partition.
IMPRESSION_KIND = "onsite-impressions"
WEB = frozenset({"web"})
MAX_REQUEST_BYTES = 4096


class OnsiteRequest(msgspec.Struct, kw_only=True, frozen=True):
    """The body of `POST /api/onsite`: who is on which page."""

    customer_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    page: Annotated[str, Meta(min_length=1, max_length=512)]
    product_id: Identifier | None = None
    category: Label | None = None
    type: Annotated[
        ClickType | None,
        Meta(description="What the person is doing; default product_view or page_view."),
    ] = None


class Impression(msgspec.Struct, kw_only=True, frozen=True):
    """On-site content that was shown, on its way to the customer's state."""

    decision_id: str
    customer_id: str  # the subject: customer id, else anonymous id; also the key
    action_id: str
    channel: Channel = "web"
    at: datetime


_request_decoder = msgspec.json.Decoder(OnsiteRequest)
_impression_decoder = msgspec.json.Decoder(Impression)
_encoder = msgspec.json.Encoder()


def decode_request(body: bytes) -> OnsiteRequest:
    """Validate a request body; raises InvalidEvent with a reason code."""
    try:
        request = _request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidEvent("schema_violation", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("malformed", str(exc)[:200]) from None
    if not (request.customer_id or request.anonymous_id):
        raise InvalidEvent("missing_subject", "neither customer_id nor anonymous_id")
    return request


def decode_impression(value: bytes) -> Impression:
    return _impression_decoder.decode(value)


def encode_impression(impression: Impression) -> bytes:
    return _encoder.encode(impression)


def decide(
    engine: Engine, state: CustomerState, request: OnsiteRequest, now: datetime, event_id: str
) -> tuple[Decision | None, Impression | None]:
    """The web-only decision for this page view on `state` (changed in place:
    pass a private copy) and, if content is shown, the impression to record."""
    event = ClickEvent(
        event_id=event_id,
        ts=now,
        customer_id=request.customer_id,
        anonymous_id=request.anonymous_id,
        type=request.type or ("product_view" if request.product_id else "page_view"),
        page=request.page,
        product_id=request.product_id,
        category=request.category,
    )
    subject = event.subject_id or ""
    decision = engine.process(state, event, now, subject, channels=WEB).decision
    if not isinstance(decision, Action):
        return decision, None
    impression = Impression(
        decision_id=decision.decision_id,
        customer_id=subject,
        action_id=decision.action_id,
        channel=decision.channel,
        at=now,
    )
    return decision, impression


def response_body(decision: Decision | None) -> dict[str, Any]:
    """`content` is the action (as the actions topic carries it), or null
    with the reasons nothing may be shown (none: no content fits the page)."""
    if isinstance(decision, Action):
        return {"content": msgspec.to_builtins(decision), "reasons": []}
    if decision is None:
        return {"content": None, "reasons": []}
    return {
        "content": None,
        "reasons": list(decision.reasons),
        "decision_id": decision.decision_id,
    }
