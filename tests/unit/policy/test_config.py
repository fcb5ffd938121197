"""The catalog and policy files: the shipped ones load, and every mistake
stops the load with a ConfigError that names the file and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nudge.policy.config import ConfigError, load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.state import MAX_CONTACTS
from tests.unit.policy_kit import SHIPPED_CATALOG, SHIPPED_POLICY

GOOD_ACTION = """
[[actions]]
id = "promo"
message_class = "marketing"
channels = ["email"]
value = 5.0
triggers = [{ event = "product_view" }]
"""


def test_the_shipped_catalog_and_policy_load() -> None:
    catalog = load_catalog(SHIPPED_CATALOG)
    policy = load_policy(SHIPPED_POLICY)
    ids = [a.id for a in catalog.actions]
    assert len(ids) == len(set(ids)) >= 5
    assert {a.message_class for a in catalog.actions} == {"marketing", "transactional"}
    assert policy.channel_caps["email"].windows() == [(3600.0, 1), (86400.0, 1), (604800.0, 3)]
    assert policy.global_caps.week == 7
    assert policy.quiet_hours.tz == "Europe/Berlin"
    assert policy.purchase_cooldown.seconds_for("air_filters") == 60 * 86400
    assert policy.purchase_cooldown.seconds_for("anything") == 14 * 86400
    Engine(catalog, policy)


def test_the_shipped_weekly_caps_fit_the_contact_ring() -> None:
    """More contacts a week than the state keeps would be refused anyway;
    the shipped policy should never get there."""
    policy = load_policy(SHIPPED_POLICY)
    assert policy.global_caps.week is not None and policy.global_caps.week <= MAX_CONTACTS


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_CATALOGS = {
    "unknown key": (
        GOOD_ACTION.replace("value = 5.0", 'value = 5.0\ncolour = "red"'),
        ["unknown field `colour`", "$.actions[0]"],
    ),
    "wrong type": (
        GOOD_ACTION.replace("value = 5.0", 'value = "lots"'),
        ["Expected `float`", "$.actions[0].value"],
    ),
    "bad channel name": (
        GOOD_ACTION.replace('["email"]', '["email", "fax"]'),
        ["'fax'", "$.actions[0].channels[1]"],
    ),
    "no channel": (GOOD_ACTION.replace('["email"]', "[]"), ["$.actions[0].channels"]),
    "bad trigger event": (
        GOOD_ACTION.replace('"product_view"', '"moon_phase"'),
        ["'moon_phase'", "$.actions[0].triggers[0].event"],
    ),
    "missing field": (
        GOOD_ACTION.replace("value = 5.0\n", ""),
        ["missing required field `value`", "$.actions[0]"],
    ),
    "bad id": (GOOD_ACTION.replace('"promo"', '"Promo Code!"'), ["$.actions[0].id"]),
    "duplicate action id": (GOOD_ACTION + GOOD_ACTION, ["action id 'promo' appears twice"]),
    "not TOML": (GOOD_ACTION + "\n[[actions]\n", ["catalog.toml"]),
    "no actions": ("", ["missing required field `actions`"]),
}


def refusal(load: Callable[[Path], object], path: Path) -> str:
    """The ConfigError's message, which must start with the file it is about."""
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("case", list(BAD_CATALOGS))
def test_a_bad_catalog_names_the_field(tmp_path: Path, case: str) -> None:
    text, fragments = BAD_CATALOGS[case]
    message = refusal(load_catalog, write(tmp_path, "catalog.toml", text))
    assert [f for f in fragments if f not in message] == []


BAD_POLICIES = {
    "unknown key": ("[fatigue]\nthreshold = 3\n", ["unknown field `threshold`", "$.fatigue"]),
    "unknown section": ("[caps]\nday = 3\n", ["unknown field `caps`"]),
    "wrong type": (
        '[global_caps]\nday = "three"\n',
        ["Expected `int | null`", "$.global_caps.day"],
    ),
    "negative cap": ("[global_caps]\nweek = -1\n", ["$.global_caps.week"]),
    "bad channel name in caps": (
        "[channel_caps]\nfax = { day = 1 }\n",
        ["'fax'", "$.channel_caps"],
    ),
    "bad silent channel": (
        '[quiet_hours]\nsilent_channels = ["pager"]\n',
        ["'pager'", "$.quiet_hours.silent_channels[0]"],
    ),
    "bad clock time": ('[quiet_hours]\nstart = "25:00"\n', ["$.quiet_hours.start"]),
    "bad time zone": ('[quiet_hours]\ntz = "Mars/Olympus_Mons"\n', ["quiet_hours.tz"]),
    "holdout too large": ("[holdout]\nshare = 0.9\n", ["$.holdout.share"]),
    "bad channel order": ('channel_order = ["email", "fax"]\n', ["$.channel_order[1]"]),
}


@pytest.mark.parametrize("case", list(BAD_POLICIES))
def test_a_bad_policy_names_the_field(tmp_path: Path, case: str) -> None:
    text, fragments = BAD_POLICIES[case]
    message = refusal(load_policy, write(tmp_path, "policy.toml", text))
    assert [f for f in fragments if f not in message] == []


def test_an_empty_policy_file_means_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "policy.toml", ""))
    assert policy.quiet_hours.start == "21:00" and policy.holdout.share == 0.05


@pytest.mark.parametrize("loader", [load_catalog, load_policy])
def test_a_missing_file_is_a_config_error(tmp_path: Path, loader) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="file not found") as caught:
        loader(path)
    assert str(path) in str(caught.value)
