"""The house keeps its one-way arrows: schemas <- policy <- models <- lab,
streams <- cli. Read from the source (every import, also those inside
functions and under TYPE_CHECKING), so a shortcut fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Source directory of each subpackage (pyproject's package-dir).
DIRECTORIES = {
    "schemas": ROOT / "schemas",
    "policy": ROOT / "policy",
    "models": ROOT / "models",
    "lab": ROOT / "lab",
    "streams": ROOT / "streams",
    "ops": ROOT / "ops",
    "config": ROOT / "config",
}
BASE = {"errors", "config", "schemas"}
#: What each part of nudge may import from nudge.
ALLOWED = {
    "errors": set(),
    "config": set(),
    "schemas": {"errors"},
    "policy": BASE,
    "models": BASE | {"policy"},
    "lab": BASE | {"policy", "models"},
    "streams": BASE | {"policy", "models", "ops"},
    "ops": {"errors"},
    "traffic": BASE | {"policy"},
}
#: The pure core never talks to a broker.
TRANSPORT = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "confluent_kafka")
PURE = {"errors", "config", "schemas", "policy", "models", "lab", "traffic"}


def sources() -> list[tuple[str, Path]]:
    found = [(part, path) for part, d in DIRECTORIES.items() for path in d.rglob("*.py")]
    found += [("errors", ROOT / "nudge" / "errors.py"), ("traffic", ROOT / "nudge" / "traffic.py")]
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def part_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "nudge" and len(parts) > 1 else None


@pytest.mark.parametrize(("part", "path"), sources(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_imports_point_down(part: str, path: Path) -> None:
    wrong = sorted(
        name
        for name in imported(path)
        if (target := part_of(name)) and target != part and target not in ALLOWED[part]
    )
    assert not wrong, f"{path.relative_to(ROOT)} ({part}) imports {wrong}"


@pytest.mark.parametrize(
    ("part", "path"),
    [(p, f) for p, f in sources() if p in PURE],
    ids=lambda v: str(v).replace(str(ROOT), ""),
)
def test_the_pure_core_never_imports_a_kafka_client(part: str, path: Path) -> None:
    clients = sorted(n for n in imported(path) if n.split(".")[0] in TRANSPORT)
    assert not clients, f"{path.relative_to(ROOT)} imports {clients}"


def test_the_walk_sees_every_part() -> None:
    seen = {part for part, _ in sources()}
    assert seen == set(ALLOWED), seen
    assert len(sources()) > 80
