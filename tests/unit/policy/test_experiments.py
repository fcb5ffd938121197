"""Experiments: the configuration, the hashed assignment, each arm deciding
with its own catalog or policy, and every decision naming its arm.

Through nudge.testing.Driver (the worker's per-message path without a
broker); the per-arm counters through the worker's own `record_metrics`.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY

from nudge.policy.config import ConfigError, ContactPolicy, load_catalog, load_policy
from nudge.policy.experiments import Experiments, load_experiments
from nudge.schemas.codec import encode
from nudge.schemas.outputs import Action, Suppression
from nudge.streams.app import record_metrics
from nudge.streams.settings import Settings
from nudge.testing import Driver
from tests.unit.policy.test_erasure_identity import T, anonymous_view, decisions, identify, send
from tests.unit.policy_kit import SHIPPED_CATALOG, SHIPPED_POLICY, catalog, click, consent, held
from tests.unit.policy_kit import marketing as marketing_action
from tests.unit.policy_kit import policy as policy_of

MINUTE = timedelta(minutes=1)
BASE_CATALOG = catalog(marketing_action("promo_a"))
BASE_POLICY = policy_of()
TWO_ARMS = """
[[experiments]]
name = "promo_test"
arms = [
  { name = "a", weight = 1 },
  { name = "b", weight = 1, catalog = "catalog-b.toml" },
]
"""
CATALOG_B = """
[[actions]]
id = "promo_b"
message_class = "marketing"
channels = ["email"]
triggers = [{ event = "product_view" }]
value = 10.0
cooldown_hours = 0
"""


def write(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> Path:
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "experiments.toml"
    path.write_text(text)
    return path


def two_arms(tmp_path: Path) -> Experiments:
    path = write(tmp_path, TWO_ARMS, {"catalog-b.toml": CATALOG_B})
    return load_experiments(path, BASE_CATALOG, BASE_POLICY)


def arms_driver(tmp_path: Path, policy: ContactPolicy = BASE_POLICY) -> Driver:
    """The worker in memory running TWO_ARMS."""
    path = write(tmp_path, TWO_ARMS, {"catalog-b.toml": CATALOG_B})
    return Driver(BASE_CATALOG, policy, experiments=path, start=T)


def arm_of(experiments: Experiments, subject: str) -> str:
    drawn = experiments.assign(subject)
    assert drawn is not None
    return drawn[1]


# -- configuration ---------------------------------------------------------------------


def test_the_packaged_default_runs_no_experiments() -> None:
    path = Settings().experiments_path
    assert path.name == "experiments.toml" and path.exists()
    loaded = load_experiments(path, load_catalog(SHIPPED_CATALOG), load_policy(SHIPPED_POLICY))
    assert loaded.arms == () and loaded.assign("c-1") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            TWO_ARMS.replace('weight = 1 },\n  { name = "b"', 'weight = 1 },\n  { name = "a"'),
            "repeats an arm name",
        ),
        ('[[experiments]]\nname = "x"\narms = [{ name = "a" }]', "length >= 2"),
        (TWO_ARMS + TWO_ARMS.replace("promo_test", "other"), "more than 1"),
        (TWO_ARMS + TWO_ARMS, "appears twice"),
        (TWO_ARMS.replace("catalog-b.toml", "missing.toml"), "file not found"),
        (
            TWO_ARMS.replace('catalog = "catalog-b.toml"', 'policy = "holdout.toml"'),
            "changes the holdout",
        ),
        (TWO_ARMS.replace("weight = 1 }", "weight = 0 }", 1), "experiments[0].arms[0].weight"),
        ('[[experiments]]\nname = "Bad Name"\narms = []', "experiments[0].name"),
    ],
)
def test_a_config_mistake_stops_the_start_naming_it(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(
        tmp_path,
        text,
        {"catalog-b.toml": CATALOG_B, "holdout.toml": "[holdout]\nshare = 0.2\n"},
    )
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_experiments(path, BASE_CATALOG, BASE_POLICY)


# -- assignment -------------------------------------------------------------------------


def test_assignment_is_stable_and_balanced_within_tolerance_over_10000_ids(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        salt = "s1"
        [[experiments]]
        name = "half"
        share = 0.5
        arms = [{ name = "a" }, { name = "b" }]
        [[experiments]]
        name = "third"
        share = 0.3
        arms = [{ name = "x", weight = 1 }, { name = "y", weight = 3 }]
        """,
    )
    experiments = load_experiments(path, BASE_CATALOG, BASE_POLICY)
    ids = [f"customer-{n}" for n in range(10_000)]
    drawn = [experiments.assign(i) for i in ids]
    assert drawn == [experiments.assign(i) for i in ids]  # same id, same arm, every time
    counts = Counter(drawn)
    share = {key: count / len(ids) for key, count in counts.items()}
    # Binomial standard deviations at n = 10,000 are at most 0.005: 0.02 is 4 of them.
    assert share[None] == pytest.approx(0.2, abs=0.02)
    assert share[("half", "a")] == pytest.approx(0.25, abs=0.02)
    assert share[("half", "b")] == pytest.approx(0.25, abs=0.02)
    assert share[("third", "x")] == pytest.approx(0.075, abs=0.02)
    assert share[("third", "y")] == pytest.approx(0.225, abs=0.02)
    # Another salt, another split: the assignment really is hashed from it.
    resalted = Experiments("s2", experiments.shares, experiments.arms)
    assert sum(resalted.assign(i) != d for i, d in zip(ids, drawn, strict=True)) > 3000


def test_each_arm_decides_with_its_own_catalog_and_every_output_names_it(
    tmp_path: Path,
) -> None:
    experiments = two_arms(tmp_path)
    d = arms_driver(tmp_path)
    seen = Counter()
    for n in range(40):
        customer = f"c-{n}"
        arm = arm_of(experiments, customer)
        send(d, consent(customer, T, "email"))
        (action,) = decisions(send(d, click(customer, T + MINUTE)))
        assert isinstance(action, Action)
        assert action.action_id == {"a": "promo_a", "b": "promo_b"}[arm]
        assert (action.experiment.name, action.experiment.arm) == ("promo_test", arm)
        published = msgspec.json.decode(encode(action))
        assert published["experiment"] == {"name": "promo_test", "arm": arm}
        stored = d.state(customer).profile.experiment
        assert (stored.experiment, stored.arm) == ("promo_test", arm)
        seen[arm] += 1
        # A suppression names the arm too (no consent on the channel any more).
        send(d, consent(customer, T + 2 * MINUTE, "email", "revoked"))
        (suppression,) = decisions(send(d, click(customer, T + 3 * MINUTE)))
        assert isinstance(suppression, Suppression)
        assert suppression.experiment == action.experiment
    assert seen["a"] > 5 and seen["b"] > 5


def test_no_experiment_no_field() -> None:
    d = Driver(BASE_CATALOG, BASE_POLICY, start=T)
    send(d, consent("c-1", T, "email"))
    (action,) = decisions(send(d, click("c-1", T + MINUTE)))
    assert action.experiment is None
    assert msgspec.json.decode(encode(action))["experiment"] is None


def test_the_arm_stays_the_same_after_a_login_merges_a_visitor(tmp_path: Path) -> None:
    experiments = two_arms(tmp_path)
    visitor = next(f"anon-{n}" for n in range(1000) if arm_of(experiments, f"anon-{n}") == "b")
    customer = next(f"cust-{n}" for n in range(1000) if arm_of(experiments, f"cust-{n}") == "a")
    d = arms_driver(tmp_path)
    (before,) = decisions(send(d, anonymous_view(visitor, T, 0)))
    assert before.experiment.arm == "b"
    send(d, identify(visitor, customer, T + MINUTE))
    send(d, consent(customer, T + 2 * MINUTE, "email"))
    (after,) = decisions(send(d, click(customer, T + 3 * MINUTE)))
    # The customer's own id draws arm a; the visitor's stored arm b is kept.
    assert (after.experiment.arm, after.action_id) == ("b", "promo_b")
    assert d.state(customer).profile.experiment.arm == "b"


def test_a_customer_with_an_arm_keeps_it_when_a_visitor_from_another_arm_logs_in(
    tmp_path: Path,
) -> None:
    experiments = two_arms(tmp_path)
    visitor = next(f"anon-{n}" for n in range(1000) if arm_of(experiments, f"anon-{n}") == "b")
    customer = next(f"cust-{n}" for n in range(1000) if arm_of(experiments, f"cust-{n}") == "a")
    d = arms_driver(tmp_path)
    send(d, consent(customer, T, "email"))
    (first,) = decisions(send(d, click(customer, T + MINUTE)))
    send(d, anonymous_view(visitor, T + 2 * MINUTE, 0))
    send(d, identify(visitor, customer, T + 3 * MINUTE))
    (later,) = decisions(send(d, click(customer, T + 4 * MINUTE)))
    assert first.experiment.arm == later.experiment.arm == "a"


def test_decisions_are_counted_per_experiment_arm(tmp_path: Path) -> None:
    experiments = two_arms(tmp_path)
    customer = next(f"c-{n}" for n in range(1000) if arm_of(experiments, f"c-{n}") == "b")
    d = arms_driver(tmp_path)

    def counted(outcome: str) -> float:
        labels = {"experiment": "promo_test", "arm": "b", "outcome": outcome}
        return REGISTRY.get_sample_value("nudge_experiment_decisions_total", labels) or 0.0

    actions, suppressions = counted("action"), counted("suppression")
    send(d, consent(customer, T, "email"))
    (result,) = [r for r in send(d, click(customer, T + MINUTE)).results if r.outcome is not None]
    record_metrics("clickstream", result)
    assert counted("action") == actions + 1
    send(d, consent(customer, T + 2 * MINUTE, "email", "revoked"))
    out = send(d, click(customer, T + 3 * MINUTE))
    (result,) = [r for r in out.results if r.outcome is not None]
    record_metrics("clickstream", result)
    assert counted("suppression") == suppressions + 1


def test_a_held_action_is_released_by_its_arm_and_names_it(tmp_path: Path) -> None:
    quiet = policy_of(quiet_hours={"start": "21:00", "end": "08:00", "tz": "UTC"})
    experiments = load_experiments(
        write(tmp_path, TWO_ARMS, {"catalog-b.toml": CATALOG_B}), BASE_CATALOG, quiet
    )
    customer = next(f"c-{n}" for n in range(1000) if arm_of(experiments, f"c-{n}") == "b")
    d = arms_driver(tmp_path, quiet)
    night = T.replace(hour=22)
    send(d, consent(customer, night, "email"))
    assert held(send(d, click(customer, night + MINUTE))).experiment.arm == "b"
    # The worker's timer asks for the release (streams/holds.py): the arm's engine answers.
    morning = night.replace(hour=8) + timedelta(days=1)
    assert d.advance_to(morning - MINUTE) == []
    release = d.advance_to(morning)
    (action,) = release.actions
    assert isinstance(action, Action) and action.held_at is not None
    assert (action.action_id, action.experiment.arm) == ("promo_b", "b")
