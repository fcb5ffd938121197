"""Which scorer the engine uses right now, and swapping it without a restart.

The holder is itself a Scorer: the engine keeps one reference to it, and the
holder delegates to the active scorer. It starts with the artifact CURRENT
names, or falls back to the heuristic. `maybe_reload` is cheap when nothing
changed (one stat of CURRENT) and swaps in a new version with a single
reference assignment; a version that fails to load leaves the old scorer in
place. Log lines name versions and errors, never customer data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter, Gauge

from nudge.models import artifact
from nudge.models.artifact import ArtifactError
from nudge.models.features import FeatureBuilder
from nudge.models.scorer import ModelScorer
from nudge.policy.config import ContactPolicy
from nudge.policy.cycles import CycleModel
from nudge.policy.scoring import HeuristicScorer, Scorer, ScoringRequest
from nudge.policy.state import CustomerState

log = logging.getLogger("nudge.models")

MODEL_INFO = Gauge(
    "nudge_model_info", "The scorer version in use (1 for the active one).", ["version"]
)
RELOADS = Counter("nudge_model_reloads", "Attempts to load a new model version.", ["result"])
for _result in ("ok", "failed"):  # exported at 0, so increase() sees the first failure
    RELOADS.labels(_result)
FALLBACKS = Counter(
    "nudge_model_fallbacks", "Starts that serve the heuristic because no model could be loaded."
)
# The counter above only ever grows, so it cannot say whether a later reload
# fixed things; this gauge says what is served now, and is what alerts watch.
SERVING = Gauge(
    "nudge_model_serving",
    "1 for the kind of scorer served now (model or heuristic), 0 for the other.",
    ["kind"],
)

Stamp = tuple[int, int, int] | None  # (inode, size, mtime_ns) of CURRENT, None if absent


class ScorerHolder:
    """The engine's scorer: a model artifact when one loads, else the heuristic."""

    def __init__(self, root: Path, policy: ContactPolicy) -> None:
        self.root = Path(root)
        self.features = FeatureBuilder(policy.quiet_hours)
        self.active: Scorer = HeuristicScorer()
        self._stamp = self._current_stamp()
        try:
            self.active = self._load(artifact.current_version(self.root))
        except ArtifactError as exc:
            FALLBACKS.inc()
            log.warning("no model served, using %s: %s", self.active.version, exc)
        else:
            log.info("serving model %s", self.active.version)
        self._publish()

    @property
    def version(self) -> str:
        return self.active.version

    def propensities(self, requests: Sequence[ScoringRequest]) -> list[float]:
        return self.active.propensities(requests)

    @property
    def cycles(self) -> CycleModel | None:
        """The active artifact's learned purchase cycles; None: fixed cooldowns."""
        return getattr(self.active, "cycles", None)

    def persona(self, state: CustomerState, now: float) -> str | None:
        """The active artifact's persona for the person; None: no persona model."""
        assign = getattr(self.active, "persona", None)
        return assign(state, now) if assign is not None else None

    def propensities_and_uplifts(
        self, requests: Sequence[ScoringRequest]
    ) -> tuple[list[float], list[float] | None]:
        """The active scorer's uplifts too, if it has an uplift model."""
        active = self.active
        if isinstance(active, ModelScorer):
            return active.propensities_and_uplifts(requests)
        return active.propensities(requests), None

    def maybe_reload(self) -> bool:
        """Serve the version CURRENT names if it changed; True if swapped.

        A version that fails is not retried until CURRENT changes again.
        """
        stamp = self._current_stamp()
        if stamp == self._stamp or stamp is None:
            return False
        self._stamp = stamp
        try:
            version = artifact.current_version(self.root)
            if version == self.active.version:
                return False
            scorer = self._load(version)
        except ArtifactError as exc:
            RELOADS.labels("failed").inc()
            log.warning("model reload failed, still serving %s: %s", self.active.version, exc)
            return False
        previous, self.active = self.active, scorer
        MODEL_INFO.labels(previous.version).set(0)
        self._publish()
        RELOADS.labels("ok").inc()
        log.info("model reloaded: now serving %s (was %s)", scorer.version, previous.version)
        return True

    def _publish(self) -> None:
        """Export the active scorer: its version, and whether it is a model."""
        MODEL_INFO.labels(self.active.version).set(1)
        is_model = isinstance(self.active, ModelScorer)
        SERVING.labels("model").set(int(is_model))
        SERVING.labels("heuristic").set(int(not is_model))

    def _load(self, version: str) -> ModelScorer:
        return ModelScorer(artifact.load(self.root, version), self.features)

    def _current_stamp(self) -> Stamp:
        try:
            st = os.stat(self.root / artifact.CURRENT_FILE)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
