"""Regenerate the generated parts of docs/: the event contract (docs/events.md,
from nudge.schemas.docs) and the configuration table in docs/operators.md (from
streams.settings). Run `python -m nudge.cli.docs`; tests fail while either is stale.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from nudge.config import POLICY, shipped
from nudge.schemas import docs as event_docs
from nudge.streams.settings import environment_reference

#: Relative to the checkout the docs are regenerated in (run from its root).
OPERATORS = Path("docs") / "operators.md"
_SECTION = re.compile(r"(<!-- environment:begin[^\n]*-->\n)(.*?)(<!-- environment:end -->)", re.S)


def environment_table() -> str:
    """Every setting with its default as the code has it, whatever this
    shell sets; the shipped config files by name, wherever nudge is installed."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    names = [name for name, _, _ in environment_reference()]
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        reference = environment_reference()
    finally:
        os.environ.update(saved)
    for name, default, doc in reference:
        default = default.replace(f"{shipped(POLICY).parent}/", "(shipped) ")
        shown = "(unset)" if default in ("None", "(unset)") else f"`{default}`"
        rows.append(f"| `{name}` | {shown} | {doc} |")
    return "\n".join(rows) + "\n"


def with_environment_table(text: str) -> str:
    """`text` (operators.md) with its configuration table regenerated."""
    if not _SECTION.search(text):
        raise ValueError(f"{OPERATORS}: no <!-- environment:begin --> ... end section")
    return _SECTION.sub(lambda m: m.group(1) + environment_table() + m.group(3), text)


def main() -> int:
    event_docs.DOC.write_text(event_docs.render())
    OPERATORS.write_text(with_environment_table(OPERATORS.read_text()))
    print(f"wrote {event_docs.DOC} and the configuration table of {OPERATORS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
