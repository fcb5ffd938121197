"""The documentation cannot drift: generated parts are current, every JSON
example is valid against the contract, every setting is documented."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from nudge.cli.docs import OPERATORS, environment_table, with_environment_table
from nudge.schemas import docs as event_docs
from nudge.schemas.codec import decode_event
from nudge.schemas.eventlog import KIND_OF_TYPE, contract_key
from nudge.schemas.jsonschema import SCHEMA_DIR
from nudge.schemas.outputs import Action, Suppression
from nudge.streams.settings import environment_reference

DOCS = Path(__file__).resolve().parents[3] / "docs"
JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", re.S | re.M)


def json_examples() -> list[tuple[str, int, object]]:
    """(doc, block number, value) for every value in every ```json block; a
    block holds one JSON value, an array of them, or one per line."""
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        for number, block in enumerate(JSON_BLOCK.findall(doc.read_text()), 1):
            try:
                parsed = json.loads(block)
                values = parsed if isinstance(parsed, list) else [parsed]
            except ValueError:
                values = [json.loads(line) for line in block.splitlines() if line.strip()]
            found += [(doc.name, number, value) for value in values]
    return found


def test_events_md_is_generated_from_the_current_schemas() -> None:
    assert (DOCS / "events.md").read_text() == event_docs.render(), "run `python -m nudge.cli.docs`"


def test_operators_md_lists_every_setting_with_its_default() -> None:
    text = OPERATORS.read_text()
    assert with_environment_table(text) == text, "run `python -m nudge.cli.docs`"
    table = environment_table()
    for name, _default, _doc in environment_reference():
        assert f"| `{name}` |" in table and f"| `{name}` |" in text


def test_every_input_kind_has_a_section_with_examples() -> None:
    text = (DOCS / "events.md").read_text()
    for kind in set(KIND_OF_TYPE.values()):
        assert f"## `{kind}`" in text


@pytest.mark.parametrize(
    ("doc", "block", "value"),
    json_examples(),
    ids=lambda v: v if isinstance(v, str | int) else "",
)
def test_json_examples_in_the_docs_are_valid(doc: str, block: int, value: object) -> None:
    assert isinstance(value, dict), f"{doc} block {block}: not an object"
    if value.get("kind") in ("action", "suppression"):
        schema = json.loads((SCHEMA_DIR / f"out.{value['kind']}.schema.json").read_text())
        jsonschema.validate(value, schema)
        return
    if "event" in value:  # an event-log line
        kind, event = value["kind"], value["event"]
    else:
        kind, event = KIND_OF_TYPE[value["type"]], value
    schema = json.loads((SCHEMA_DIR / f"in.{kind}.schema.json").read_text())
    jsonschema.validate(event, schema)
    now = datetime.fromisoformat(event["ts"])
    decode_event(kind, json.dumps(event).encode(), contract_key(event), now)


def test_the_docs_have_json_examples_of_inputs_and_outputs() -> None:
    kinds = {v.get("kind") or KIND_OF_TYPE.get(v.get("type")) for _, _, v in json_examples()}
    assert {"action", "suppression", "feedback", *set(KIND_OF_TYPE.values())} <= kinds


def test_channels_md_describes_every_field_of_actions_and_suppressions() -> None:
    text = (DOCS / "channels.md").read_text()
    fields = set(Action.__struct_fields__) | set(Suppression.__struct_fields__)
    missing = [
        name
        for name in sorted(fields)
        if f"`{name}`" not in text and f"`{name.split('_')[0]}_*`" not in text
    ]
    assert not missing, f"fields not in docs/channels.md: {missing}"
