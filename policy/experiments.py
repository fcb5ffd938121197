"""Experiments: arms that are catalog or policy variants, and who is in which.

A marketer tries a variant (another catalog, another contact policy) on a
share of people and compares it with the current one and with the global
holdout. The configuration is a TOML file (NUDGE_EXPERIMENTS; the packaged
default has no experiments). Each arm names a catalog and/or a policy file
(relative to the experiments file); what it does not name is the base one.

Experiments are mutually exclusive: a person is in at most one. One draw on
(salt, person) picks the experiment by its `share` of people (or none), a
second on (salt, experiment, person) picks the arm by weight. The engine
stores the pair in state at the person's first decision
(`Profile.experiment`) and a login keeps it (policy/identity.py), so the
arm never flips mid-experiment. The global holdout is drawn independently,
so every arm has its own share of holdout people: the control that tells
what each arm adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from nudge.policy.config import Catalog, ConfigError, ContactPolicy, load_catalog, load_policy
from nudge.policy.ids import unit_draw

Name = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,32}$")]


class ArmConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One arm: a name, a relative weight, and the variant it runs."""

    name: Name
    weight: Annotated[float, Meta(gt=0)] = 1.0
    catalog: str | None = None  # a catalog file; unset: the base catalog
    policy: str | None = None  # a contact policy file; unset: the base policy


class ExperimentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    # The share of all people in this experiment; experiments do not overlap.
    share: Annotated[float, Meta(gt=0, le=1)] = 1.0
    arms: Annotated[list[ArmConfig], Meta(min_length=2)]
    description: str = ""


class ExperimentsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    salt: str = "nudge-experiments-v1"
    experiments: list[ExperimentConfig] = []


@dataclass(frozen=True, slots=True)
class Arm:
    """A loaded arm: its variant, ready for an engine."""

    experiment: str
    name: str
    weight: float
    catalog: Catalog
    policy: ContactPolicy


@dataclass(frozen=True, slots=True)
class Experiments:
    """The loaded experiments, with every arm's catalog and policy."""

    salt: str
    shares: tuple[tuple[str, float], ...] = ()  # (experiment, share), in file order
    arms: tuple[Arm, ...] = ()

    def assign(self, subject: str) -> tuple[str, str] | None:
        """(experiment, arm) for a person who has none stored, by hash: the
        same id always gets the same pair. None: in no experiment."""
        draw, upto, chosen = unit_draw(self.salt, subject), 0.0, None
        for name, share in self.shares:
            upto += share
            if draw < upto:
                chosen = name
                break
        if chosen is None:
            return None
        arms = [arm for arm in self.arms if arm.experiment == chosen]
        point = unit_draw(self.salt, chosen, subject) * sum(arm.weight for arm in arms)
        for arm in arms:
            point -= arm.weight
            if point < 0:
                return chosen, arm.name
        return chosen, arms[-1].name  # rounding at the very top of the range

    def arm(self, experiment: str, name: str) -> Arm | None:
        return next((a for a in self.arms if (a.experiment, a.name) == (experiment, name)), None)


NO_EXPERIMENTS = Experiments(salt="")


def load_experiments(
    path: Path | str | None, catalog: Catalog, policy: ContactPolicy
) -> Experiments:
    """Load and check the experiments file; `catalog` and `policy` are the
    base ones an arm gets when it names none. No path: no experiments."""
    if path is None:
        return NO_EXPERIMENTS
    path = Path(path)
    try:
        config = msgspec.toml.decode(path.read_bytes(), type=ExperimentsConfig)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    names = [e.name for e in config.experiments]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: an experiment name appears twice")
    if sum(e.share for e in config.experiments) > 1.0 + 1e-9:
        raise ConfigError(f"{path}: the experiments' shares add up to more than 1")
    arms = []
    for experiment in config.experiments:
        if len({a.name for a in experiment.arms}) != len(experiment.arms):
            raise ConfigError(f"{path}: experiment {experiment.name!r} repeats an arm name")
        for arm in experiment.arms:
            arm_catalog = load_catalog(path.parent / arm.catalog) if arm.catalog else catalog
            arm_policy = load_policy(path.parent / arm.policy) if arm.policy else policy
            # The holdout is the control every arm is measured against: an arm
            # that moved it would compare itself with another population.
            if arm_policy.holdout != policy.holdout:
                raise ConfigError(
                    f"{path}: arm {experiment.name}/{arm.name}: its policy changes the holdout;"
                    " the holdout must be the same in every arm"
                )
            arms.append(Arm(experiment.name, arm.name, arm.weight, arm_catalog, arm_policy))
    shares = tuple((e.name, e.share) for e in config.experiments)
    return Experiments(salt=config.salt, shares=shares, arms=tuple(arms))
