"""JSON Schema files generated from the records, for teams outside Python.

Run `python -m nudge.schemas.jsonschema` after changing a record; a test fails
while the checked-in files differ from what the records generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from nudge.schemas.events import EVENT_TYPES_BY_TOPIC
from nudge.schemas.outputs import (
    Action,
    ConsentLogEntry,
    DeadLetter,
    ErasureConfirmation,
    Suppression,
)

SCHEMA_DIR = Path(__file__).parent / "json"

#: File stem -> record, for every record that crosses a topic.
RECORDS: dict[str, type[msgspec.Struct]] = {
    **{f"in.{kind}": cls for kind, cls in EVENT_TYPES_BY_TOPIC.items()},
    "out.action": Action,
    "out.suppression": Suppression,
    "out.deadletter": DeadLetter,
    "out.consent-log": ConsentLogEntry,
    "out.erasure-confirmation": ErasureConfirmation,
}


def normalise_descriptions(node: Any) -> Any:
    """Every `description` as one line of single-spaced words.

    msgspec copies docstrings into descriptions, and how it cleans them has
    changed between releases (0.23 dedents them); normalising here keeps the
    checked-in files a function of our text alone, not of msgspec's version."""
    if isinstance(node, dict):
        return {
            key: " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else normalise_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [normalise_descriptions(item) for item in node]
    return node


def generate() -> dict[str, str]:
    """File name -> JSON Schema text, deterministic."""
    files = {}
    for stem, cls in RECORDS.items():
        schema = normalise_descriptions(msgspec.json.schema(cls))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"nudge {stem}"
        files[f"{stem}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in generate().items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(RECORDS)} schemas to {SCHEMA_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
