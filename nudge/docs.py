"""Regenerate the generated parts of docs/: the event contract (docs/events.md,
from schemas.docs) and the configuration table in docs/operators.md (from
streams.settings). Run `python -m nudge.docs`; tests fail while either is stale.
"""

from __future__ import annotations

import os
import re
import sys

from schemas import docs as event_docs
from streams.settings import REPO_ROOT, environment_reference

OPERATORS = REPO_ROOT / "docs" / "operators.md"
_SECTION = re.compile(r"(<!-- environment:begin[^\n]*-->\n)(.*?)(<!-- environment:end -->)", re.S)


def environment_table() -> str:
    """Every setting with its default as the code has it, whatever this
    shell sets; paths relative to the repository."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    names = [name for name, _, _ in environment_reference()]
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        reference = environment_reference()
    finally:
        os.environ.update(saved)
    for name, default, doc in reference:
        default = default.replace(f"{REPO_ROOT}/", "")
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
