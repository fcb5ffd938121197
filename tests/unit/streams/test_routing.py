"""Which worker answers a customer-keyed API request (streams/routing.py): the
pure choice, the partition a key hashes to, the forwarded URL, and the URL a
worker advertises. Two real workers: tests/integration/test_routing_live.py."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from aiokafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_python_murmur2
from yarl import URL

from nudge.ops.local_kafka import free_port
from nudge.policy.config import ConfigError
from nudge.streams import routing
from nudge.streams.log_limits import RepeatLimiter
from nudge.streams.routing import Route, choose_route, forward_url, partition_for
from nudge.streams.settings import Settings

SELF = "http://10.0.0.1:6066"
OTHER = "http://10.0.0.2:6066"
OWNERS = {0: SELF, 1: OTHER, 2: OTHER}


def route(partition: int, *, ready: bool = True, forwarded: bool = False) -> Route:
    return choose_route(
        partition, ready=ready, owned={0}, owners=OWNERS, self_url=SELF, forwarded=forwarded
    )


def test_the_owner_answers_itself_and_others_forward_to_it() -> None:
    assert route(0) == Route(local=True)
    assert route(1) == Route(url=OTHER)


def test_a_forwarded_request_is_answered_locally_or_refused_never_forwarded_again() -> None:
    assert route(0, forwarded=True) == Route(local=True)
    assert route(1, forwarded=True) == Route(reason="not the owner")


def test_no_answer_while_rebalancing_even_for_an_owned_partition() -> None:
    assert route(0, ready=False) == Route(reason="rebalancing")
    assert route(1, ready=False) == Route(reason="rebalancing")


def test_only_hosts_in_the_assignment_and_never_this_worker_are_forwarded_to() -> None:
    assert route(3) == Route(reason="owner unknown")  # in no member's assignment
    # The map still names this worker for a partition it no longer holds.
    stale = choose_route(
        2, ready=True, owned={0}, owners={2: SELF + "/"}, self_url=SELF, forwarded=False
    )
    assert stale == Route(reason="owner unknown")


@pytest.mark.parametrize("partitions", [1, 4, 8, 12])
def test_partition_is_kafkas_default_partitioner(partitions: int) -> None:
    """The same partition upstream producers (kafka-python, Java's murmur2) and
    the worker's aiokafka producer choose, so the owner holds the state."""
    aiokafka_partitioner = DefaultPartitioner()
    for n in range(500):
        key = f"customer-{n}".encode()
        expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
        assert partition_for(key, partitions) == expected
        assert aiokafka_partitioner(key, list(range(partitions)), []) == expected


class _Request:
    def __init__(self, path_qs: str) -> None:
        self.rel_url = URL(path_qs, encoded=True)


def test_the_forwarded_url_keeps_path_and_query_as_received() -> None:
    request = _Request("/api/customers/a%2Fb%20c?x=1&y=%C3%A9")
    url = forward_url(OTHER + "/", request)  # type: ignore[arg-type]
    assert str(url) == "http://10.0.0.2:6066/api/customers/a%2Fb%20c?x=1&y=%C3%A9"


def test_advertised_url_defaults_to_the_bind_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NUDGE_ADVERTISED_URL", "NUDGE_WEB_HOST", "NUDGE_WEB_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().canonical_url() == "http://127.0.0.1:6066"
    monkeypatch.setenv("NUDGE_WEB_PORT", "7001")
    assert Settings().canonical_url() == "http://127.0.0.1:7001"
    # A wildcard bind address reaches nobody: the host name stands in.
    monkeypatch.setenv("NUDGE_WEB_HOST", "0.0.0.0")
    assert Settings().canonical_url() == f"http://{socket.gethostname()}:7001"
    monkeypatch.setenv("NUDGE_WEB_HOST", "fd00::5")
    assert Settings().canonical_url() == "http://[fd00::5]:7001"
    monkeypatch.setenv("NUDGE_ADVERTISED_URL", "https://worker-3.nudge.svc:8443/")
    assert Settings().canonical_url() == "https://worker-3.nudge.svc:8443"


def test_advertised_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_ADVERTISED_URL", "worker-3:6066")
    with pytest.raises(ConfigError, match="NUDGE_ADVERTISED_URL"):
        Settings()


class _View:
    """Captures the answer a view would build (faust's View.bytes / View.json)."""

    def bytes(self, value: bytes, *, content_type: str, status: int, headers: dict) -> tuple:
        return status, content_type, value, headers

    def json(self, value: dict, *, status: int) -> tuple:
        return status, "application/json", json.dumps(value).encode(), {}


def _forward(handler, monkeypatch: pytest.MonkeyPatch, port: int | None = None) -> tuple:
    """Forward one POST through OwnerRouter.forward to a real aiohttp server
    running `handler` (or to `port`, where nothing listens)."""
    monkeypatch.setattr(routing, "FORWARD_TIMEOUT_S", 0.5)

    async def run() -> tuple:
        server = None
        if handler is not None:
            app = web.Application()
            app.router.add_post("/api/onsite", handler)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
        target = f"http://127.0.0.1:{server.port if server else port}"
        request = make_mocked_request(
            "POST",
            "/api/onsite?v=1",
            headers={
                "Authorization": "Bearer t0ken",
                "Content-Type": "application/json",
                "Cookie": "not-passed",
            },
        )
        async with aiohttp.ClientSession() as session:
            router = object.__new__(routing.OwnerRouter)
            router.app = SimpleNamespace(http_client=session)
            try:
                return await router.forward(_View(), request, target, b'{"customer_id": "c"}')  # type: ignore[arg-type]
            finally:
                if server is not None:
                    await server.close()

    return asyncio.run(run())


def test_forward_passes_credentials_and_body_and_returns_the_owners_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict = {}

    async def owner(request: web.Request) -> web.Response:
        seen.update(
            headers=dict(request.headers), body=await request.read(), qs=request.query_string
        )
        return web.json_response({"mine": True}, status=404, headers={"Server-Timing": "decide"})

    status, content_type, body, headers = _forward(owner, monkeypatch)
    assert (status, content_type, json.loads(body)) == (404, "application/json", {"mine": True})
    assert headers == {"Server-Timing": "decide"}
    assert seen["body"] == b'{"customer_id": "c"}' and seen["qs"] == "v=1"
    assert seen["headers"]["Authorization"] == "Bearer t0ken"
    assert seen["headers"][routing.FORWARDED_HEADER] == "1"  # so the owner never forwards it
    assert "Cookie" not in seen["headers"]


def test_a_slow_owner_is_a_504_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    started = time.monotonic()
    status, _, body, _ = _forward(slow, monkeypatch)
    assert status == 504 and time.monotonic() - started < 3, body
    assert "t0ken" not in caplog.text and "did not answer" in caplog.text


def test_an_unreachable_owner_is_a_502(monkeypatch: pytest.MonkeyPatch) -> None:
    status, _, body, _ = _forward(None, monkeypatch, port=free_port())
    assert status == 502, body


def test_a_down_owner_warns_once_per_interval_not_once_per_request() -> None:
    """While an owner is unreachable every forwarded request fails: the worker's
    repeat limiter (streams/log_limits.py) keeps one line per 10 s."""
    limiter = RepeatLimiter(clock=lambda: 0.0)
    records = [
        logging.LogRecord(routing.log.name, logging.WARNING, __file__, 1,
                          "API owner %s unreachable (%s)", (OTHER, "ClientConnectorError"), None)
        for _ in range(100)
    ]  # fmt: skip
    assert [limiter.filter(r) for r in records].count(True) == 1
