"""Security against real parts: a Kafka broker of its own that demands SASL
(PLAIN) and real worker processes.

- With the right password the worker, `nudge topics` and the test clients
  authenticate and a decision comes out; with a wrong one the worker stops at
  once with an error that names the variables to check, never the password.
- Every HTTP API endpoint answers 401 without a token, 403 with a wrong one
  and 200 with the right one; bodies over the limit get 413 (with and without
  Content-Length); nothing the worker serves without the token carries a
  customer id or a personal field; a worker without NUDGE_API_TOKEN keeps its
  API closed.
- After the run, the worker logs (at the production level) and /metrics hold
  no customer id, no API token and no password; neither do the broker's logs.

Passwords and tokens are generated per run and reach the worker only through
its environment.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge.ops import local_kafka
from nudge.policy.onsite import MAX_REQUEST_BYTES as ONSITE_LIMIT
from nudge.streams.views import MAX_BODY_BYTES as DECIDE_LIMIT
from nudge.testing import WorkerProcess
from tests.events import purchase
from tests.workers import Workers

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
USER = "nudge"
OUTPUTS = ("actions", "suppressions")
#: Pages served without a token: probes and metrics, no personal data.
PUBLIC_PAGES = {"/health", "/ready", "/metrics"}
#: Every page under /api, as registered in streams/ (a test keeps this list complete).
PROTECTED_PAGES = {"/api/customers/{customer_id}", "/api/decide/{kind}", "/api/onsite"}
#: Faust's built-in pages and guesses: each must be off (404) or free of personal data.
PROBED_PATHS = (
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/table",
    "/table/recency",
    "/router",
    "/stats",
    "/stats/",
    "/assignment",
    "/assignment/",
    "/signal",
    "/signal/",
    "/graph",
    "/graph/",
    "/performance",
    "/api",
    "/api/customers",
    "/api/customers/",
    "/api/onsite",
)
#: Keys of a customer summary: none may appear in an answer given without the token.
PERSONAL_FIELDS = ("customer_id", "anonymous_id", "marketing_allowed", "records", "contacts")
#: Metric labels that would carry a person.
PERSONAL_LABELS = {"customer", "customer_id", "anonymous_id", "subject", "key", "user"}


@dataclass
class SecureBroker:
    """A broker whose only client listener is SASL_PLAINTEXT with user `nudge`."""

    bootstrap: str
    data_dir: Path
    password: str

    def client_security(self) -> dict[str, str]:
        """kafka-python options, as Settings.kafka_security() builds them."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": USER,
            "sasl_plain_password": self.password,
        }

    def worker_env(self, password: str | None = None) -> dict[str, str]:
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": self.password if password is None else password,
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    data_dir = tmp_path_factory.mktemp("sasl-kafka")
    password = secrets.token_urlsafe(24)
    handle = local_kafka.start(
        port=local_kafka.free_port(), data_dir=data_dir, sasl_users={USER: password}
    )
    assert handle.security_protocol == "SASL_PLAINTEXT"
    try:
        yield SecureBroker(handle.bootstrap_servers, data_dir, password)
    finally:
        local_kafka.stop(data_dir)


@dataclass
class Run:
    """A worker on the SASL broker and what went through it."""

    worker: WorkerProcess
    token: str
    customer: str  # has state: a purchase was decided
    topics_output: str
    decision: dict
    seen_ids: list[str] = field(default_factory=list)  # every customer id the test used
    other_logs: list[Path] = field(default_factory=list)


def run_cli(worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """A `nudge` command with the worker's environment (the SASL settings included)."""
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", *args],
        env=worker.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def run(broker: SecureBroker, module_workers: Workers) -> Run:
    token = secrets.token_urlsafe(24)
    worker = module_workers.new(
        bootstrap=broker.bootstrap,
        env={
            **broker.worker_env(),
            "NUDGE_API_TOKEN": token,
            "NUDGE_LOG_LEVEL": "info",  # production level: what operators collect
        },
    )
    # Topic creation as a deployment step, over SASL like everything else.
    topics = run_cli(worker, "topics")
    assert topics.returncode == 0, topics.stderr
    worker.start(ready_timeout=90)
    publisher = module_workers.publisher(worker, **broker.client_security())
    reader = module_workers.reader(worker, OUTPUTS, **broker.client_security())
    customer = f"pii-{uuid.uuid4().hex[:10]}"
    event = purchase(customer)
    publisher.send("purchases", event).get(10)
    reader.wait_for(lambda got: bool([r for r in got if r.key == customer.encode()]), 30)
    decision = next(r for r in reader.received if r.key == customer.encode())
    deadline = time.monotonic() + 10  # the state is written before the output is sent
    while worker.get(f"/api/customers/{customer}", token=token)[0] != 200:
        assert time.monotonic() < deadline, "no state for the customer"
        time.sleep(0.1)
    return Run(
        worker,
        token,
        customer,
        topics.stdout + topics.stderr,
        {**decision.value, "topic": decision.kind},
        seen_ids=[customer],
    )


# -- Kafka SASL ----------------------------------------------------------------------------


def test_with_the_right_password_the_worker_and_the_tools_work(run: Run) -> None:
    assert "co-partitioned" in run.topics_output
    assert run.decision["topic"] == "actions"
    assert run.decision["action_id"] == "order_confirmation"
    assert run.worker.get("/ready")[0] == 200


def test_a_wrong_password_stops_the_worker_with_a_clear_error(
    broker: SecureBroker, workers: Workers
) -> None:
    wrong = secrets.token_urlsafe(24)
    worker = workers.new(
        bootstrap=broker.bootstrap,
        policy=None,
        env={**broker.worker_env(password=wrong), "NUDGE_API_TOKEN": "unused-test-token"},
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="worker exited"):  # never became ready
        worker.start(ready_timeout=60)
    assert worker.process is not None and worker.process.returncode == 1
    assert time.monotonic() - started < 30, "wrong credentials must fail fast, not time out"
    log = worker.log_path.read_text(errors="replace")
    assert f"refused the PLAIN credentials of user '{USER}'" in log, log
    assert "KAFKA_SASL_PASSWORD" in log
    assert "Traceback" not in log, "a configuration error deserves one line, not a traceback"
    tool = run_cli(worker, "topics")  # the same check guards the tools
    assert tool.returncode == 1
    assert "refused the PLAIN credentials" in tool.stderr, tool.stderr
    for text in (log, tool.stdout, tool.stderr):
        assert wrong not in text and broker.password not in text


# -- HTTP API ------------------------------------------------------------------------------


def call(
    worker: WorkerProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    authorization: str | None = None,
    chunked: bool = False,
) -> tuple[int, bytes]:
    """One request with exactly the headers given; chunked sends no Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.web_port, timeout=10)
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        if chunked and body is not None:
            connection.request(method, path, body=iter([body]), headers=headers)
        else:
            connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def endpoints(run: Run) -> list[tuple[str, str, bytes | None]]:
    """(method, path, valid body) for every protected page."""
    view = {
        "event_id": f"{run.customer}-view",
        "type": "product_view",
        "customer_id": run.customer,
        "ts": datetime.now(UTC).isoformat(),
        "product_id": "sku-2",
        "category": "lighting",
    }
    return [
        ("GET", f"/api/customers/{run.customer}", None),
        ("POST", "/api/decide/clickstream", json.dumps(view).encode()),
        ("POST", "/api/onsite", json.dumps({"customer_id": run.customer, "page": "/"}).encode()),
    ]


def test_the_tested_pages_are_every_page_the_worker_registers() -> None:
    """A new endpoint fails this test until it is listed (and so probed) above."""
    registered = set()
    for source in (ROOT / "streams").glob("*.py"):
        registered |= set(re.findall(r"\.page\(\s*\"([^\"]+)\"", source.read_text()))
    registered.add("/metrics")  # served by Faust's Prometheus sensor when it is on
    assert registered == PUBLIC_PAGES | PROTECTED_PAGES


def test_every_api_endpoint_needs_the_right_token(run: Run) -> None:
    token = run.token
    for method, path, body in endpoints(run):
        refused = {
            None: 401,
            f"Basic {token}": 401,
            f"Token {token}": 401,
            "Bearer ": 401,  # HTTP strips the trailing space: no token at all
            f"Bearer {secrets.token_urlsafe(24)}": 403,
            f"Bearer {token[:-1]}": 403,
            f"Bearer {token}x": 403,
            f"Bearer  {token}": 403,
        }
        for authorization, expected in refused.items():
            status, answer = call(run.worker, method, path, body, authorization)
            assert status == expected, (path, authorization and authorization[:8], answer)
            assert set(json.loads(answer)) == {"error"}
            assert run.customer.encode() not in answer
        status, answer = call(run.worker, method, path, body, f"Bearer {token}")
        assert status == 200, (path, answer)
    # Without the token an unknown customer looks exactly like a known one.
    unknown = f"/api/customers/pii-{uuid.uuid4().hex[:10]}"
    run.seen_ids.append(unknown.rsplit("/", 1)[1])
    for authorization, expected in ((None, 401), ("Bearer nope-test", 403)):
        known = call(run.worker, "GET", f"/api/customers/{run.customer}", None, authorization)
        assert call(run.worker, "GET", unknown, None, authorization) == known
        assert known[0] == expected
    assert call(run.worker, "GET", unknown, None, f"Bearer {token}")[0] == 404


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_over_the_limit_are_refused(run: Run, chunked: bool) -> None:
    auth = f"Bearer {run.token}"
    for path, limit in (("/api/decide/clickstream", DECIDE_LIMIT), ("/api/onsite", ONSITE_LIMIT)):
        big = b"{" + b" " * limit + b"}"
        status, answer = call(run.worker, "POST", path, big, auth, chunked=chunked)
        assert status == 413, (path, answer)
        # Authentication comes first: no size oracle for strangers either.
        assert call(run.worker, "POST", path, big, None, chunked=chunked)[0] == 401


def test_nothing_served_without_the_token_carries_personal_data(run: Run) -> None:
    customer = run.customer.encode()
    for path in (*PROBED_PATHS, f"/table/recency/{run.customer}", f"/router/x/{run.customer}"):
        for method in ("GET", "POST"):
            status, answer = call(run.worker, method, path, b"{}" if method == "POST" else None)
            assert customer not in answer, (method, path)
            if status == 200:
                assert path in PUBLIC_PAGES or path == "/", f"{method} {path} answers openly"
                assert not [f for f in PERSONAL_FIELDS if f.encode() in answer], (method, path)
    families = list(text_string_to_metric_families(call(run.worker, "GET", "/metrics")[1].decode()))
    labels = {name for family in families for s in family.samples for name in s.labels}
    assert not labels & PERSONAL_LABELS, labels & PERSONAL_LABELS


def test_a_worker_without_an_api_token_keeps_the_api_closed(
    broker: SecureBroker, run: Run, workers: Workers
) -> None:
    """NUDGE_API_TOKEN unset (here: empty) must mean no API, never an open one.
    The worker reads the same topics in a group of its own, so it holds the
    customer's state too."""
    worker = workers.new(
        bootstrap=broker.bootstrap,
        prefix=run.worker.prefix,
        env={
            **broker.worker_env(),
            "NUDGE_API_TOKEN": "",
            "NUDGE_APP_ID": f"{run.worker.prefix}tokenless",
        },
    )
    run.other_logs.append(worker.log_path)
    worker.start(ready_timeout=90)
    for method, path, body in endpoints(run):
        for authorization, expected in (
            (None, 401),
            ("Bearer ", 401),
            (f"Bearer {run.token}", 403),
            ("Bearer None", 403),
        ):
            status, answer = call(worker, method, path, body, authorization)
            assert status == expected, (path, answer)
            assert run.customer.encode() not in answer


# -- after the run -------------------------------------------------------------------------


def test_logs_and_metrics_hold_no_personal_data_or_secret(broker: SecureBroker, run: Run) -> None:
    """Last in the module: everything above has gone through the worker."""
    metrics = call(run.worker, "GET", "/metrics")[1].decode()
    run.worker.stop()
    logs = {"worker": run.worker.log_path.read_text(errors="replace")}
    logs |= {f"worker {p.parent.name}": p.read_text(errors="replace") for p in run.other_logs}
    for name in ("kafka.out", "logs/server.log"):
        path = broker.data_dir / name
        if path.exists():
            logs[f"broker {name}"] = path.read_text(errors="replace")
    secret = {"API token": run.token, "SASL password": broker.password}
    for where, text in {**logs, "/metrics": metrics}.items():
        for customer in run.seen_ids:
            assert customer not in text, f"customer id in {where}"
        for what, value in secret.items():
            assert value not in text, f"{what} in {where}"
    assert "Traceback" not in logs["worker"], run.worker.tail(60)
