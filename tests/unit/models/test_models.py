"""Models: features as of the decision, training on a replayed log, personas,
artifacts that refuse to load when damaged, and serving with hot reload."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from prometheus_client import REGISTRY
from sklearn.linear_model import LogisticRegression

from bench.model_latency import synthetic_log
from nudge.cli import main as cli_main
from nudge.lab.baselines import NudgePolicy
from nudge.lab.simulation import Simulation
from nudge.models import artifact
from nudge.models.artifact import ArtifactError
from nudge.models.examples import Example, ExampleSet, build_examples
from nudge.models.features import FEATURE_NAMES, FeatureBuilder
from nudge.models.personas import DESCRIPTORS, PersonaModel, assign, descriptors
from nudge.models.scorer import ModelScorer
from nudge.models.serving import ScorerHolder
from nudge.models.training import TrainingResult, split, train
from nudge.policy.clock import DAY
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.ids import withdrawn_action
from nudge.policy.inmemory import InMemoryWorker, event_key
from nudge.policy.scoring import ScoringRequest
from nudge.policy.state import ConsentEntry, Contact, CustomerState
from nudge.schemas.eventlog import LoggedEvent, read_log, write_log
from nudge.schemas.events import ClickEvent
from nudge.schemas.outputs import Action

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog(ROOT / "config" / "catalog.toml")
POLICY = load_policy(ROOT / "config" / "policy.toml")
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "events.jsonl"
    synthetic_log(
        path, customers=400, days=28, seed=11
    )  # 550 held out: calibration per bin is noisy below
    return path


@pytest.fixture(scope="module")
def trained(log_path: Path) -> TrainingResult:
    return train(log_path, CATALOG, POLICY, holdout_days=7)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_for(state: CustomerState, channels=("email", "push", "web")) -> list[ScoringRequest]:
    actions = {a.id: a for a in CATALOG.actions}
    event = ClickEvent(
        event_id="e-1",
        ts=datetime.fromtimestamp(NOW, UTC),
        customer_id="c-1",
        type="product_view",
        category="garden",
    )
    picks = ("category_inspiration", "cart_reminder", "checkout_help")
    return [
        ScoringRequest(state, event, actions[action], "garden", channel, NOW)
        for action, channel in zip(picks, channels, strict=True)
    ]


def shopper_state() -> CustomerState:
    state = CustomerState()
    state.profile.identified = True
    state.recency.affinity = {"garden": 4.0, "lighting": 1.0}
    state.recency.affinity_at = NOW - 3600
    state.recency.orders, state.recency.revenue = 3, 120.0
    state.recency.last_seen = {"session_start": NOW - 2 * DAY, "purchase": NOW - 10 * DAY}
    state.recency.last_purchase = {"lighting": NOW - 10 * DAY}
    state.fatigue.sent, state.fatigue.engaged = {"email": 6}, {"email": 3}
    state.fatigue.contacts = [Contact(NOW - 3 * DAY, "email", "x", "d1")]
    state.fatigue.ignored_streak = 1
    state.consent.entries["email:marketing"] = ConsentEntry("granted", NOW - 20 * DAY, "t")
    return state


def save_version(root: Path, result: TrainingResult, version: str) -> artifact.Artifact:
    saved = artifact.save(root, result.propensity, result.personas, result.metadata, version)
    artifact.set_current(root, version)
    return saved


# -- features ------------------------------------------------------------------------


def test_feature_matrix_has_one_named_column_per_feature() -> None:
    builder = FeatureBuilder(POLICY.quiet_hours)
    requests = requests_for(shopper_state())
    X = builder.matrix(requests)
    assert X.shape == (3, len(FEATURE_NAMES)) and X.dtype == np.float64
    row = dict(zip(FEATURE_NAMES, X[0], strict=True))
    assert row["channel=email"] == 1.0 and row["channel=push"] == 0.0
    assert row["trigger=product_view"] == 1.0
    assert row["days_since_session"] == pytest.approx(2.0)
    assert row["category_affinity"] == pytest.approx(4.0 / 7.0, rel=0.01)
    assert row["channel_engagement"] == pytest.approx((3 + 1) / (6 + 4))
    assert row["contacts_last_week"] == 1.0 and row["contacts_last_day"] == 0.0
    assert row["days_since_category_purchase"] == 365.0  # garden never bought
    assert builder.matrix([]).shape == (0, len(FEATURE_NAMES))


def test_affinity_is_not_a_feature_once_profiling_is_revoked() -> None:
    state = shopper_state()
    state.consent.entries["all:profiling"] = ConsentEntry("revoked", NOW - DAY, "t")
    values = FeatureBuilder(POLICY.quiet_hours).row(requests_for(state)[0])
    row = dict(zip(FEATURE_NAMES, values, strict=True))
    assert row["category_affinity"] == 0.0 and row["category_affinity_share"] == 0.0


# -- training --------------------------------------------------------------------------


def test_training_beats_a_constant_predictor_on_held_out_days(trained: TrainingResult) -> None:
    metrics = trained.metadata["metrics"]["validation"]
    assert metrics["examples"] >= 200 and 0.05 < metrics["positive_rate"] < 0.6
    assert metrics["constant_auc"] == 0.5
    assert metrics["auc"] >= 0.7, metrics
    assert metrics["brier"] < metrics["constant_brier"] - 0.02, metrics
    table = metrics["reliability"]
    assert sum(row["count"] for row in table) == metrics["examples"]
    assert metrics["expected_calibration_error"] < 0.1
    # A held action withdrawn before it went out (a cart reminder whose cart
    # was bought within the hour) reserved a contact meanwhile: the replay
    # holds it again from the withdrawal the log holds, or later decisions
    # capped by it would replay differently (24 of 2,044 here without).
    replayed = trained.metadata["source"]["replay"]
    assert replayed["logged_withdrawn"] > 100 and replayed["withdrawn_diverged"] == 0, replayed
    assert replayed["diverged"] <= replayed["logged_actions"] // 200, replayed


def test_held_out_days_come_after_the_training_decisions(log_path: Path) -> None:
    replayed = build_examples(read_log(log_path), CATALOG, POLICY)
    train_set, validation, cutoff = split(replayed, holdout_days=7, label_window_days=2)
    assert max(e.at for e in train_set) + 2 * DAY <= cutoff <= min(e.at for e in validation)
    assert max(e.at for e in validation) + 2 * DAY <= replayed.end


def test_label_counts_a_click_or_conversion_within_the_window_only() -> None:
    def example(name: str, at: float) -> Example:
        return Example(name, at, [0.0] * len(FEATURE_NAMES), 0.1)

    t = 1_000_000.0
    examples = [example("soon", t), example("late", t), example("never", t)]
    responses = {"soon": t + 3600, "late": t + 3 * DAY}
    replayed = ExampleSet(examples, responses, [], t - 20 * DAY, t + 10 * DAY)
    train_set, validation, _ = split(replayed, holdout_days=5, label_window_days=2)
    assert [e.label for e in examples] == [True, False, False]
    assert len(train_set) == 3 and validation == []


def test_features_are_those_of_the_decision_time_not_of_later_events(log_path: Path) -> None:
    """The leakage rule: cutting the log after a moment, or adding events
    after it, changes no feature of a decision made before it. A decision
    counts at when it was made: one held past the cut (and released or
    withdrawn after it) was in the worker's state before it."""
    records = list(read_log(log_path))

    def when(record: LoggedEvent) -> float:
        event = record.event
        made = event.get("held_at") or event.get("decided_at") or event["ts"]
        if record.kind == "suppressions" and withdrawn_action(event):
            made = event["trigger_ts"]
        return datetime.fromisoformat(made).timestamp()

    full = build_examples(records, CATALOG, POLICY)
    cut = full.start + (full.end - full.start) * 0.6
    before = [r for r in records if when(r) <= cut]
    late = datetime.fromtimestamp(cut + 60, UTC).isoformat()
    later = [
        LoggedEvent(
            "purchases",
            {
                "event_id": f"late-{i}",
                "type": "purchase",
                "customer_id": f"shopper-{i:05d}",
                "ts": late,
                "order_id": f"late-{i}",
                "items": [{"product_id": "p", "category": "garden", "price": 500}],
            },
        )
        for i in range(250)
    ]
    truncated = build_examples(before, CATALOG, POLICY)
    extended = build_examples(before + later, CATALOG, POLICY)
    expected = {e.decision_id: e.features for e in full.examples if e.at <= cut}
    assert len(expected) > 500
    for other in (truncated, extended):
        got = {e.decision_id: e.features for e in other.examples if e.at <= cut}
        assert got == expected


def test_the_feature_builder_never_sees_an_event_after_the_decision(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FeatureBuilder.row
    seen = []

    def checked(self: FeatureBuilder, request: ScoringRequest) -> list[float]:
        recency, fatigue = request.state.recency, request.state.fatigue
        times = [*recency.last_seen.values(), *recency.last_purchase.values()]
        times += [recency.affinity_at, recency.cart_updated_at, fatigue.last_engaged]
        assert max(times) <= request.now
        seen.append(request.now)
        return original(self, request)

    monkeypatch.setattr(FeatureBuilder, "row", checked)
    build_examples(read_log(log_path), CATALOG, POLICY)
    assert len(seen) > 1000


def test_a_simulator_log_replays_with_every_logged_decision_reproduced(tmp_path: Path) -> None:
    """The contract with lab/simulation.py: whatever scorer made its log,
    the replay arrives at the same decisions, so features are the real ones."""
    path = tmp_path / "simulated.jsonl"
    world = Simulation(150, 10, seed=3)
    write_log(world.run(NudgePolicy()), path)
    replayed = build_examples(read_log(path), CATALOG, POLICY)
    assert replayed.stats["logged_actions"] > 20
    assert replayed.stats["diverged"] == 0
    assert len(replayed.examples) == replayed.stats["logged_actions"]


# -- personas --------------------------------------------------------------------------


def test_personas_are_named_after_what_sets_them_apart(trained: TrainingResult) -> None:
    personas = trained.metadata["personas"]
    assert len(personas) == 4
    assert len({p["name"] for p in personas}) == 4
    assert sum(p["size"] for p in personas) == 400
    for persona in personas:
        assert persona["description"].endswith("from the average customer")
        assert set(persona["centre"]) == set(DESCRIPTORS)


def test_persona_names_come_from_cluster_centres() -> None:
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 0.1, size=(50, len(DESCRIPTORS)))
    buyers = quiet.copy()
    buyers[:, DESCRIPTORS.index("orders")] += 3.0
    buyers[:, DESCRIPTORS.index("spend")] += 3.0
    model = PersonaModel(n_personas=2).fit(np.vstack([quiet, buyers]))
    names = {p["name"] for p in model.personas_}
    lowered = " / ".join(sorted(names)).lower()
    assert "big spenders" in lowered and "frequent buyers" in lowered, names
    assert "small spenders" in lowered and "rare buyers" in lowered, names


def test_assign_gives_a_persona_only_when_profiling_is_allowed(trained) -> None:
    state = shopper_state()
    persona = assign(trained.personas, state, NOW)
    assert persona is not None and persona["name"]
    assert len(descriptors(state, NOW)) == len(DESCRIPTORS)
    state.consent.entries["all:profiling"] = ConsentEntry("revoked", NOW, "t")
    assert assign(trained.personas, state, NOW) is None


# -- artifacts and the scorer ----------------------------------------------------------


def test_artifact_round_trip(tmp_path: Path, trained: TrainingResult) -> None:
    saved = artifact.save(tmp_path, trained.propensity, trained.personas, trained.metadata)
    artifact.set_current(tmp_path, saved.version)
    assert (tmp_path / "CURRENT").read_text().strip() == saved.version
    loaded = artifact.load(tmp_path)
    assert loaded.version == saved.version
    meta = loaded.metadata
    for key in (
        "version",
        "created_at",
        "feature_names",
        "feature_schema_version",
        "training_window",
        "metrics",
        "personas",
        "sklearn_version",
    ):
        assert key in meta
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["metrics"]["validation"]["auc"] == trained.metadata["metrics"]["validation"]["auc"]
    X = FeatureBuilder(POLICY.quiet_hours).matrix(requests_for(shopper_state()))
    np.testing.assert_array_equal(
        loaded.propensity.predict_proba(X), trained.propensity.predict_proba(X)
    )
    assert [p["name"] for p in loaded.personas.personas_] == [
        p["name"] for p in trained.personas.personas_
    ]


def test_scorer_returns_one_probability_per_request_equal_to_predict_proba(
    tmp_path: Path, trained: TrainingResult
) -> None:
    builder = FeatureBuilder(POLICY.quiet_hours)
    scorer = ModelScorer(save_version(tmp_path, trained, "v1"), builder)
    assert scorer.version == "v1"
    requests = requests_for(shopper_state())
    scores = scorer.propensities(requests)
    assert len(scores) == 3 and all(0.0 <= p <= 1.0 for p in scores)
    expected = trained.propensity.predict_proba(builder.matrix(requests))[:, 1]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert scorer.propensities([]) == []


def _garbage_model(folder: Path) -> None:
    _replace_model(folder, b"PK\x03\x04 this is not a skops file")


class Untrusted:
    """A type no allow-list names."""

    def __init__(self) -> None:
        self.payload = "anything"


def _untrusted_model(folder: Path) -> None:
    _replace_model(folder, sio.dumps({"propensity": Untrusted(), "personas": None}))


def _bare_estimator(folder: Path) -> None:
    _replace_model(folder, sio.dumps({"propensity": LogisticRegression(), "personas": None}))


def _replace_model(folder: Path, data: bytes) -> None:
    """Swap the model file and record its digest, so only the content is wrong."""
    (folder / "model.skops").write_bytes(data)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["model_sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))


def _flipped_byte(folder: Path) -> None:
    data = bytearray((folder / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.skops").write_bytes(bytes(data))


def _bad_metadata(folder: Path) -> None:
    (folder / "metadata.json").write_text("{not json")


def _other_feature_schema(folder: Path) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    meta["feature_schema_version"] = 0
    (folder / "metadata.json").write_text(json.dumps(meta))


def _missing_model(folder: Path) -> None:
    (folder / "model.skops").unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_garbage_model, "unreadable"),
        (_untrusted_model, "untrusted types"),
        (_bare_estimator, "must be a fitted binary"),
        (_flipped_byte, "SHA-256"),
        (_bad_metadata, "not JSON"),
        (_other_feature_schema, "feature schema"),
        (_missing_model, "cannot read model.skops"),
    ],
)
def test_a_damaged_artifact_falls_back_to_the_heuristic(
    tmp_path: Path, trained: TrainingResult, damage, message: str
) -> None:
    save_version(tmp_path, trained, "v1")
    damage(tmp_path / "v1")
    with pytest.raises(ArtifactError, match=message):
        artifact.load(tmp_path)
    before = metric("nudge_model_fallbacks_total")
    holder = ScorerHolder(tmp_path, POLICY)
    assert holder.version == "heuristic-v1"
    assert metric("nudge_model_fallbacks_total") == before + 1
    assert len(holder.propensities(requests_for(shopper_state()))) == 3


def test_no_deployed_model_serves_the_heuristic(tmp_path: Path) -> None:
    before = metric("nudge_model_fallbacks_total")
    assert ScorerHolder(tmp_path / "nothing-here", POLICY).version == "heuristic-v1"
    assert metric("nudge_model_fallbacks_total") == before + 1
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ArtifactError, match="not a valid artifact version"):
        artifact.load(tmp_path)


def test_hot_reload_swaps_versions_and_keeps_the_old_one_on_failure(
    tmp_path: Path, trained: TrainingResult
) -> None:
    save_version(tmp_path, trained, "v1")
    holder = ScorerHolder(tmp_path, POLICY)
    assert holder.version == "v1"
    assert metric("nudge_model_info", version="v1") == 1.0
    assert holder.maybe_reload() is False  # nothing changed
    ok, failed = (
        metric("nudge_model_reloads_total", result="ok"),
        metric("nudge_model_reloads_total", result="failed"),
    )
    save_version(tmp_path, trained, "v2")
    assert holder.maybe_reload() is True
    assert holder.version == "v2"
    assert metric("nudge_model_reloads_total", result="ok") == ok + 1
    assert metric("nudge_model_info", version="v2") == 1.0
    assert metric("nudge_model_info", version="v1") == 0.0
    save_version(tmp_path, trained, "v3")
    _garbage_model(tmp_path / "v3")
    assert holder.maybe_reload() is False
    assert holder.version == "v2"
    assert metric("nudge_model_reloads_total", result="failed") == failed + 1
    assert holder.maybe_reload() is False  # not retried until CURRENT changes
    assert metric("nudge_model_reloads_total", result="failed") == failed + 1
    artifact.set_current(tmp_path, "v1")
    assert holder.maybe_reload() is True and holder.version == "v1"


def test_the_serving_gauge_clears_once_a_reload_replaces_the_fallback(
    tmp_path: Path, trained: TrainingResult
) -> None:
    """The fallback counter never goes back; the gauge alerts watch must."""
    save_version(tmp_path, trained, "v1")
    _garbage_model(tmp_path / "v1")
    fallbacks = metric("nudge_model_fallbacks_total")
    holder = ScorerHolder(tmp_path, POLICY)
    assert holder.version == "heuristic-v1"
    assert metric("nudge_model_serving", kind="heuristic") == 1.0
    assert metric("nudge_model_serving", kind="model") == 0.0
    save_version(tmp_path, trained, "v2")
    assert holder.maybe_reload() is True and holder.version == "v2"
    assert metric("nudge_model_serving", kind="model") == 1.0
    assert metric("nudge_model_serving", kind="heuristic") == 0.0
    assert metric("nudge_model_fallbacks_total") == fallbacks + 1  # the counter is kept
    save_version(tmp_path, trained, "v3")
    _garbage_model(tmp_path / "v3")
    assert holder.maybe_reload() is False  # a failed reload keeps the model served
    assert metric("nudge_model_serving", kind="model") == 1.0


def test_actions_name_the_served_model_version(
    tmp_path: Path, log_path: Path, trained: TrainingResult
) -> None:
    save_version(tmp_path, trained, "v7")
    worker = InMemoryWorker(Engine(CATALOG, POLICY, ScorerHolder(tmp_path, POLICY)))
    actions = []
    for record in list(read_log(log_path))[:4000]:
        if record.kind in ("actions", "suppressions"):
            continue
        now = datetime.fromisoformat(record.event["ts"])
        for result in worker.feed(record.kind, event_key(record.event), record.value, now):
            decision = result.outcome.decision if result.outcome else None
            if isinstance(decision, Action):
                actions.append(decision)
    assert actions and {a.model_version for a in actions} == {"v7"}
    assert all(0.0 <= a.propensity <= 1.0 for a in actions)


def test_nudge_train_saves_a_version_and_points_current_at_it(
    tmp_path: Path, log_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "artifacts"
    assert cli_main(["train", str(log_path), "--out", str(out), "--holdout-days", "7"]) == 0
    printed = capsys.readouterr().out
    version = (out / "CURRENT").read_text().strip()
    assert "held-out AUC" in printed and version in printed
    assert artifact.load(out).version == version
    assert not math.isnan(artifact.load(out).metadata["metrics"]["validation"]["auc"])


def test_nudge_train_explains_a_log_it_cannot_learn_from(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_text(
        '{"kind": "clickstream", "event": {"event_id": "e", "type": "page_view",'
        ' "customer_id": "c", "ts": "2026-03-02T10:00:00Z"}}\n'
    )
    assert cli_main(["train", str(log), "--out", str(tmp_path / "a")]) == 1
    assert "no actions" in capsys.readouterr().err
