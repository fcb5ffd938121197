"""One exception hierarchy: every error nudge defines is a NudgeError; the
UserError branch is printed by the CLI in one line, anything else keeps its
traceback (a bug must not look like a user's mistake)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from nudge import cli
from nudge.errors import NudgeError, UserError

SUBPACKAGES = (
    "nudge.schemas",
    "nudge.policy",
    "nudge.models",
    "nudge.lab",
    "nudge.streams",
    "nudge.ops",
)


def nudge_modules() -> list[str]:
    names = ["nudge.errors", "nudge.config"]
    for root in ("nudge.cli", "nudge.testing", *SUBPACKAGES):
        package = importlib.import_module(root)
        names.append(root)
        if hasattr(package, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{root}.")]
    return [name for name in names if not name.endswith("__main__")]


def test_every_error_nudge_defines_is_a_nudge_error() -> None:
    defined = []
    for name in nudge_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                defined.append(cls)
    assert len(defined) >= 8, defined  # the walk really found the modules
    outside = [f"{c.__module__}.{c.__qualname__}" for c in defined if not issubclass(c, NudgeError)]
    assert not outside, f"not under nudge.errors.NudgeError: {outside}"


def test_a_user_error_is_one_line_without_a_traceback(monkeypatch, capsys) -> None:
    monkeypatch.setenv("NUDGE_PARTITIONS", "eight")
    assert cli.main(["topics", "--bootstrap", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err == "nudge: error: NUDGE_PARTITIONS must be an integer, not 'eight'\n"


def test_a_command_failing_with_a_user_error_names_the_command(monkeypatch, capsys) -> None:
    def refuse(args: object) -> int:
        raise UserError("the broker has 4 partitions, not 8")

    monkeypatch.setattr("nudge.cli.commands.topics.run", refuse)
    assert cli.main(["topics"]) == 1
    assert capsys.readouterr().err == "nudge topics: error: the broker has 4 partitions, not 8\n"


@pytest.mark.parametrize("bug", [ValueError("bad index"), KeyError("x"), RuntimeError("oops")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug: Exception) -> None:
    def broken(args: object) -> int:
        raise bug

    monkeypatch.setattr("nudge.cli.commands.topics.run", broken)
    with pytest.raises(type(bug)):
        cli.main(["topics"])
