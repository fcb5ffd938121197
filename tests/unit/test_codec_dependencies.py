"""Every Kafka codec stays installed: the packages aiokafka (the worker) and
kafka-python (nudge tail, send, the test helpers) need for snappy, lz4 and
zstd are pinned in both lock files, so a future `make lock` cannot silently
drop them, and the Docker image installs from the runtime lock (issue #12)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-dev.lock")
CODECS = ("lz4", "snappy", "zstd")
CLIENTS = ("aiokafka", "kafka-python")


def requirements(distribution: str, extras: tuple[str, ...] = ("",)) -> list[Requirement]:
    """The distribution's requirements that apply with these extras ("": none)."""
    found = [Requirement(text) for text in importlib.metadata.requires(distribution) or []]
    return [
        r
        for r in found
        if any(r.marker is None or r.marker.evaluate({"extra": extra}) for extra in extras)
    ]


def extra_packages(distribution: str, extras: tuple[str, ...]) -> set[str]:
    """What `distribution[extras]` adds, its dependencies' dependencies included."""
    base = {r.name for r in requirements(distribution)}
    todo = [r.name for r in requirements(distribution, extras) if r.name not in base]
    found: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name not in found:
            found.add(name)
            todo += [r.name for r in requirements(name)]
    return found


def pins(lock: str) -> dict[str, str]:
    """{package: version} pinned with hashes in a lock file."""
    text = (ROOT / lock).read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=", text, re.M)
    }


def test_the_clients_are_declared_with_every_codec_extra() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    extras = {canonicalize_name(Requirement(d).name): Requirement(d).extras for d in declared}
    for client in CLIENTS:
        assert set(CODECS) <= extras[client], f"{client} lacks codec extras in pyproject.toml"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_pins_what_the_client_needs_for_every_codec(client: str, lock: str) -> None:
    needed = extra_packages(client, CODECS)
    assert needed, f"{client} declares no codec extras: check this test against its metadata"
    pinned = pins(lock)
    for package in sorted(needed | {canonicalize_name(client)}):
        assert package in pinned, f"{lock} does not pin {package} ({client} codecs)"
        assert pinned[package] == importlib.metadata.version(package), (lock, package)


def test_the_docker_image_installs_from_the_runtime_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements\.lock ", dockerfile, re.M)
    assert re.search(r"^RUN pip install --require-hashes -r requirements\.lock$", dockerfile, re.M)
    assert re.search(r"^RUN pip install --no-deps \.", dockerfile, re.M)  # nothing unlocked


def test_this_environment_decodes_every_codec() -> None:
    """What the locks promise is what is installed (the worker refuses to start otherwise)."""
    from aiokafka import codec as aiokafka_codec
    from kafka import codec as kafka_codec

    for codec in (aiokafka_codec, kafka_codec):
        assert codec.has_gzip() and codec.has_snappy() and codec.has_lz4() and codec.has_zstd()
