"""The shipped configuration: the action catalog, the contact policy and the
experiments, installed as package data (`nudge.config`).

Defaults are read from wherever the package is installed, never from a source
checkout; operators point NUDGE_CATALOG, NUDGE_POLICY and NUDGE_EXPERIMENTS at
their own copies.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

CATALOG = "catalog.toml"
POLICY = "policy.toml"
EXPERIMENTS = "experiments.toml"


def shipped(name: str) -> Path:
    """The installed file `name` (a plain file: nudge is never run from a zip)."""
    with as_file(files(__name__) / name) as path:
        return Path(path)
