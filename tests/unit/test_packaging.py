"""nudge installs as one package, `nudge`, that needs no source checkout: its
config files are package data and no default path points into the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nudge.config import CATALOG, EXPERIMENTS, POLICY, shipped
from nudge.streams.settings import Settings, environment_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(
        [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("nudge-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert {name for name in top if not name.endswith(".dist-info")} == {"nudge"}
    names = set(wheel.namelist())
    for sub in ("cli", "config", "schemas", "policy", "models", "lab", "streams", "ops", "testing"):
        assert f"nudge/{sub}/__init__.py" in names, sub


def test_the_wheel_carries_the_config_and_contract_files(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for name in (CATALOG, POLICY, EXPERIMENTS):
        assert f"nudge/config/{name}" in names
    assert "nudge/schemas/json/in.consent.schema.json" in names
    assert "nudge/ops/kafka/pom.xml" in names


def test_no_default_points_into_the_source_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in environment_reference():
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.catalog_path == shipped(CATALOG)
    assert settings.policy_path == shipped(POLICY)
    assert settings.experiments_path == shipped(EXPERIMENTS)
    # Working data is relative to where the worker runs, never beside the code.
    for path in (settings.data_dir, settings.model_dir):
        assert not path.is_absolute(), path
