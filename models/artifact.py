"""Versioned model artifacts on disk, and the pointer that says which to serve.

    <root>/CURRENT               the version to serve (one line, replaced atomically)
    <root>/<version>/model.skops the estimators (skops, never pickle): the
                                 propensity model, personas, an uplift
                                 model (two pipelines) when one was served,
                                 and learned purchase cycles when fitted
    <root>/<version>/metadata.json

The model file is loaded with skops against an explicit allow-list of types
and checked against the SHA-256 recorded in the metadata, so a truncated,
tampered or foreign file is refused with an ArtifactError instead of being
executed or half-loaded. Anything wrong with an artifact raises ArtifactError.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nudge.errors import UserError
from nudge.models.cycles import PurchaseCycles
from nudge.models.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from nudge.models.personas import PersonaModel
from nudge.models.uplift import UpliftModel

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "CURRENT"
#: Types skops does not trust by default that an artifact may contain. skops
#: itself trusts scikit-learn, numpy and scipy types; anything else is refused.
TRUSTED_TYPES = frozenset(
    {"nudge.models.personas.PersonaModel", "nudge.models.cycles.PurchaseCycles"}
)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ArtifactError(UserError):
    """A model artifact is missing, corrupt, untrusted or incompatible."""


@dataclass
class Artifact:
    """A propensity pipeline (StandardScaler -> LogisticRegression), an
    optional persona model, an optional uplift model (one such pipeline per
    arm) and what is known about how they were made."""

    version: str
    propensity: Pipeline
    personas: PersonaModel | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    uplift: UpliftModel | None = None
    cycles: PurchaseCycles | None = None  # None: the policy's fixed cooldowns apply


def save(
    root: Path,
    propensity: Pipeline,
    personas: PersonaModel | None,
    metadata: dict[str, Any],
    version: str | None = None,
    uplift: UpliftModel | None = None,
    cycles: PurchaseCycles | None = None,
) -> Artifact:
    """Write a new version directory (complete, or not at all) and return it.
    The version defaults to the creation time plus the model's digest."""
    _check_models(propensity, personas)
    arms = None
    if uplift is not None:  # stored as plain pipelines: no type to add to the trust list
        arms = {"treatment": uplift.treatment, "control": uplift.control}
        _check_uplift(arms)
    _check_cycles(cycles)
    models = {"propensity": propensity, "personas": personas, "uplift": arms}
    if cycles is not None:  # absent, not None: older readers see the same keys
        models["cycles"] = cycles
    data = sio.dumps(models)
    digest = hashlib.sha256(data).hexdigest()
    created = datetime.now(UTC)
    version = version or f"model-{created:%Y%m%d-%H%M%S}-{digest[:8]}"
    _check_version(version)
    full = {
        **metadata,
        "format": ARTIFACT_FORMAT,
        "version": version,
        "created_at": created.isoformat(),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "sklearn_version": sklearn.__version__,
        "model_sha256": digest,
    }
    root.mkdir(parents=True, exist_ok=True)
    target = root / version
    if target.exists():
        raise ArtifactError(f"artifact {version} already exists in {root}")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    (staging / MODEL_FILE).write_bytes(data)
    (staging / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    staging.chmod(0o755)
    os.rename(staging, target)
    return Artifact(version, propensity, personas, full, uplift, cycles)


def set_current(root: Path, version: str) -> None:
    """Point CURRENT at a version: write a temporary file, then rename it over
    the old one, so a reader sees either the old name or the new one."""
    _check_version(version)
    if not (root / version / METADATA_FILE).is_file():
        raise ArtifactError(f"no artifact {version} in {root}")
    fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=root)
    with os.fdopen(fd, "w") as handle:
        handle.write(version + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, root / CURRENT_FILE)


def current_version(root: Path) -> str:
    """The version CURRENT names; ArtifactError if there is none."""
    try:
        version = (root / CURRENT_FILE).read_text().strip()
    except OSError as exc:
        raise ArtifactError(f"no {CURRENT_FILE} pointer in {root}: {exc.strerror}") from None
    _check_version(version)
    return version


def load(root: Path, version: str | None = None) -> Artifact:
    """Load a version (default: the one CURRENT names), verifying it fully."""
    version = version or current_version(root)
    _check_version(version)
    folder = root / version
    metadata = _read_metadata(folder)
    try:
        data = (folder / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{version}: cannot read {MODEL_FILE}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != metadata.get("model_sha256"):
        raise ArtifactError(f"{version}: {MODEL_FILE} does not match its recorded SHA-256")
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
        refused = untrusted - TRUSTED_TYPES
        if refused:
            raise ArtifactError(f"{version}: untrusted types in {MODEL_FILE}: {sorted(refused)}")
        models = sio.loads(data, trusted=sorted(untrusted))
    except ArtifactError:
        raise
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ArtifactError(f"{version}: {MODEL_FILE} is unreadable: {exc}") from None
    if not isinstance(models, dict) or "propensity" not in models:
        raise ArtifactError(f"{version}: {MODEL_FILE} does not hold a propensity model")
    _check_models(models["propensity"], models.get("personas"))
    arms = models.get("uplift")
    uplift = None
    if arms is not None:
        _check_uplift(arms)
        uplift = UpliftModel(arms["treatment"], arms["control"])
    cycles = models.get("cycles")
    _check_cycles(cycles)
    return Artifact(version, models["propensity"], models.get("personas"), metadata, uplift, cycles)


def _read_metadata(folder: Path) -> dict[str, Any]:
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except OSError as exc:
        raise ArtifactError(f"{folder.name}: cannot read {METADATA_FILE}: {exc.strerror}") from None
    except ValueError as exc:
        raise ArtifactError(f"{folder.name}: {METADATA_FILE} is not JSON: {exc}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{folder.name}: {METADATA_FILE} is not format {ARTIFACT_FORMAT}")
    if metadata.get("version") != folder.name:
        raise ArtifactError(f"{folder.name}: {METADATA_FILE} names another version")
    if metadata.get("feature_schema_version") != FEATURE_SCHEMA_VERSION or metadata.get(
        "feature_names"
    ) != list(FEATURE_NAMES):
        raise ArtifactError(
            f"{folder.name}: trained on feature schema {metadata.get('feature_schema_version')},"
            f" this code builds schema {FEATURE_SCHEMA_VERSION}"
        )
    return metadata


def _is_scorer_pipeline(model: object) -> bool:
    """A fitted binary StandardScaler -> LogisticRegression over the features."""
    return (
        isinstance(model, Pipeline)
        and len(model.steps) == 2
        and isinstance(model[0], StandardScaler)
        and isinstance(model[-1], LogisticRegression)
        and len(getattr(model[-1], "classes_", ())) == 2
        and model[-1].coef_.shape == (1, len(FEATURE_NAMES))
    )


def _check_uplift(arms: object) -> None:
    if not (
        isinstance(arms, dict)
        and set(arms) == {"treatment", "control"}
        and all(_is_scorer_pipeline(model) for model in arms.values())
    ):
        raise ArtifactError(
            "the uplift model must be a treatment and a control StandardScaler ->"
            f" LogisticRegression pipeline over {len(FEATURE_NAMES)} features"
        )


def _check_models(propensity: object, personas: object) -> None:
    if not _is_scorer_pipeline(propensity):
        raise ArtifactError(
            "the propensity model must be a fitted binary StandardScaler -> LogisticRegression"
            f" pipeline over {len(FEATURE_NAMES)} features"
        )
    if personas is not None and not isinstance(personas, PersonaModel):
        raise ArtifactError("the persona model must be a models.personas.PersonaModel")


def _check_cycles(cycles: object) -> None:
    if cycles is not None and not (
        isinstance(cycles, PurchaseCycles)
        and isinstance(getattr(cycles, "categories_", None), dict)
    ):
        raise ArtifactError("the purchase cycles must be a fitted models.cycles.PurchaseCycles")


def _check_version(version: str) -> None:
    if not _VERSION.match(version):
        raise ArtifactError(f"{version!r} is not a valid artifact version name")
