"""A real worker picks up a newly trained model without a restart, and keeps
serving the previous one when a broken version is deployed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.model_latency import synthetic_log
from nudge.models import artifact
from nudge.models.training import train
from nudge.policy.config import load_catalog, load_policy
from nudge.testing import EventPublisher, OutputReader, WorkerProcess
from tests.workers import Workers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("actions", "suppressions", "consent-log")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def worker(module_workers: Workers, model_dir: Path) -> WorkerProcess:
    env = {"NUDGE_MODEL_DIR": str(model_dir), "NUDGE_MODEL_RELOAD_SECONDS": "0.5"}
    return module_workers.start(env=env)


def trained_artifact(root: Path, tmp: Path) -> artifact.Artifact:
    log = tmp / "events.jsonl"
    synthetic_log(log, customers=150, days=21, seed=5)
    result = train(
        log, load_catalog(ROOT / "config/catalog.toml"), load_policy(ROOT / "config/policy.toml")
    )
    return artifact.save(root, result.propensity, result.personas, result.metadata)


def metrics_text(worker: WorkerProcess) -> str:
    status, body = worker.get("/metrics")
    assert status == 200
    return body["text"]


def wait_for_metric(worker: WorkerProcess, line: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in metrics_text(worker):
        assert time.monotonic() < deadline, f"{line!r} not in /metrics after {timeout}s"
        time.sleep(0.2)


def action_version(publisher: EventPublisher, outputs: OutputReader) -> str:
    """A fresh shopper with email consent views a category three times: the
    third view is decided, and the action names the model that scored it."""
    customer = f"shopper-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)

    def event(n: int, minutes_ago: float, **fields: object) -> dict:
        ts = (now - timedelta(minutes=minutes_ago)).isoformat()
        return {"event_id": f"{customer}-{n}", "customer_id": customer, "ts": ts, **fields}

    grant = event(
        0, 5, type="consent", channel="email", purpose="marketing", status="granted", source="test"
    )
    publisher.send("consent", grant).get(10)
    outputs.wait_for(lambda got: any(r.value.get("event_id") == grant["event_id"] for r in got))
    for n in (1, 2, 3):
        view = event(n, 3 - n, type="product_view", product_id=f"sku-{n}", category="lighting")
        publisher.send("clickstream", view).get(10)
    trigger = f"{customer}-3"
    got = outputs.wait_for(lambda got: any(r.value.get("trigger_event_id") == trigger for r in got))
    [decision] = [r for r in got if r.value.get("trigger_event_id") == trigger]
    assert decision.kind == "actions", decision.value
    return decision.value["model_version"]


def test_models_are_deployed_and_rolled_back_without_a_restart(
    worker: WorkerProcess,
    publisher: EventPublisher,
    outputs: OutputReader,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    pid = worker.process.pid
    assert action_version(publisher, outputs) == "heuristic-v1"
    started = metrics_text(worker)
    assert "nudge_model_fallbacks_total 1.0" in started
    assert 'nudge_model_serving{kind="heuristic"} 1.0' in started

    model = trained_artifact(model_dir, tmp_path)
    artifact.set_current(model_dir, model.version)
    wait_for_metric(worker, f'nudge_model_info{{version="{model.version}"}} 1.0')
    assert action_version(publisher, outputs) == model.version
    reloaded = metrics_text(worker)
    assert 'nudge_model_reloads_total{result="ok"} 1.0' in reloaded
    # What the fallback alert watches clears; the counter keeps its history.
    assert 'nudge_model_serving{kind="model"} 1.0' in reloaded
    assert 'nudge_model_serving{kind="heuristic"} 0.0' in reloaded
    assert "nudge_model_fallbacks_total 1.0" in reloaded

    broken = model_dir / "broken"
    broken.mkdir()
    (broken / "model.skops").write_bytes(b"not a model")
    (broken / "metadata.json").write_text("{")
    artifact.set_current(model_dir, "broken")
    wait_for_metric(worker, 'nudge_model_reloads_total{result="failed"} 1.0')
    assert action_version(publisher, outputs) == model.version
    assert 'nudge_model_serving{kind="model"} 1.0' in metrics_text(worker)
    assert worker.process.poll() is None and worker.process.pid == pid
    log = worker.tail(400)
    assert "model reload failed, still serving" in log
    assert "Traceback" not in log, log
