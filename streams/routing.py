"""Customer-keyed API requests are answered from the worker that owns the customer.

A customer's state lives in one worker's tables: the worker assigned the
partition the customer id hashes to (every topic and table is co-partitioned
and keyed by customer). Any other worker would answer 404 or decide on empty
state, so it forwards the request to the owner, with the same method, path,
Authorization header and body, and answers with the owner's status and body.

Who owns what comes from Faust's assignment metadata, which every worker
receives at each rebalance: partition -> the owner's `canonical_url`
(`NUDGE_ADVERTISED_URL`). A request is only ever forwarded to a URL in that
map, never to one taken from the request.

Why not Faust's `app.table_route`: its forwarder (`Router._route_req`) sends
no body, so `POST /api/decide` and `POST /api/onsite`, whose customer is in
the body and is known only once it is read, would reach the owner empty; it
has no timeout; it returns every answer as text; and a worker whose
assignment is stale forwards again, so two workers can bounce a request
between them. This module keeps Faust's map and adds those four things.

No loops: a forwarded request carries `X-Nudge-Forwarded`. A worker receiving
one answers from its own tables or, when it does not own the partition (its
assignment changed meanwhile), says 503; it never forwards again. A worker
that is rebalancing or still recovering its tables says 503 too, rather than
answer from partial state: clients retry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import aiohttp
from aiokafka.partitioner import murmur2
from faust import web
from yarl import URL

from nudge.streams.app import NudgeApp

log = logging.getLogger("nudge.routing")

#: Marks a request one worker forwarded to another: it is not forwarded again.
FORWARDED_HEADER = "X-Nudge-Forwarded"
#: How long a worker waits for the owner's whole answer.
FORWARD_TIMEOUT_S = 3.0
#: Request headers the owner needs: the credentials (it checks them again) and the body's type.
PASSED_HEADERS = ("Authorization", "Content-Type")
#: The owner's response headers passed back (the on-site decision time).
RETURNED_HEADERS = ("Server-Timing",)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as upstream
    producers and the worker's own producer use) puts this key in."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Route:
    """Serve locally, forward to `url`, or neither (503, with `reason`)."""

    local: bool = False
    url: str | None = None
    reason: str = ""


def choose_route(
    partition: int,
    *,
    ready: bool,
    owned: Collection[int],
    owners: Mapping[int, str],
    self_url: str,
    forwarded: bool,
) -> Route:
    """Where a request for `partition` is answered. `owned`: the partitions
    this worker is active for; `owners`: partition -> owner URL, from the
    same assignment."""
    if ready and partition in owned:
        return Route(local=True)
    if not ready:
        return Route(reason="rebalancing")
    if forwarded:  # the sender's map was stale: say so, never forward twice
        return Route(reason="not the owner")
    url = owners.get(partition)
    if url is None or url.rstrip("/") == self_url.rstrip("/"):
        return Route(reason="owner unknown")
    return Route(url=url)


def forward_url(owner: str, request: web.Request) -> URL:
    """The owner's URL with this request's path and query, still encoded."""
    return URL(owner.rstrip("/") + request.rel_url.raw_path_qs, encoded=True)


class OwnerRouter:
    """Answers a customer-keyed request locally or from the customer's owner."""

    def __init__(self, nudge: NudgeApp, is_ready: Callable[[], bool]) -> None:
        self.app = nudge.app
        self.partitions = nudge.settings.partitions
        # All tables are co-partitioned: one changelog topic names every owner.
        self.topic = next(iter(nudge.tables.values())).changelog_topic.get_topic_name()
        self.is_ready = is_ready

    def route(self, key: bytes, forwarded: bool) -> Route:
        assignor = self.app.assignor
        owned = {tp.partition for tp in assignor.assigned_actives() if tp.topic == self.topic}
        owners = {
            partition: url
            for url, topics in assignor.changelog_distribution.items()
            for partition in topics.get(self.topic, ())
        }
        return choose_route(
            partition_for(key, self.partitions),
            ready=self.is_ready(),
            owned=owned,
            owners=owners,
            self_url=str(self.app.conf.canonical_url),
            forwarded=forwarded,
        )

    async def answer(
        self,
        view: web.View,
        request: web.Request,
        key: bytes,
        body: bytes | None,
        serve: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        """`serve()` when this worker owns `key`, else the owner's answer."""
        route = self.route(key, FORWARDED_HEADER in request.headers)
        if route.local:
            return await serve()
        if route.url is None:
            return view.json(
                {"error": f"owner unknown or rebalancing ({route.reason}): retry"},
                status=503,
                headers={"Retry-After": "1"},
            )
        return await self.forward(view, request, route.url, body)

    async def forward(
        self, view: web.View, request: web.Request, owner: str, body: bytes | None
    ) -> web.Response:
        headers = {
            name: request.headers[name] for name in PASSED_HEADERS if name in request.headers
        }
        headers[FORWARDED_HEADER] = "1"
        try:
            async with self.app.http_client.request(
                request.method,
                forward_url(owner, request),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            ) as response:
                answer = await response.read()
                returned = {
                    h: response.headers[h] for h in RETURNED_HEADERS if h in response.headers
                }
                return view.bytes(
                    answer,
                    content_type=response.content_type,
                    status=response.status,
                    headers=returned,
                )
        except TimeoutError:  # asyncio's, aiohttp's total timeout
            log.warning("API owner %s did not answer within %.1f s", owner, FORWARD_TIMEOUT_S)
            return view.json({"error": "the owner did not answer in time"}, status=504)
        except (aiohttp.ClientError, OSError) as exc:
            # Never the request: its headers carry the token.
            log.warning("API owner %s unreachable (%s)", owner, type(exc).__name__)
            return view.json({"error": "the owner could not be reached"}, status=502)
