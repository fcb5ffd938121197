"""The offset a partition's stream resumes from, as Faust's consumer knows it.

The time-order buffer (streams/ordering.py) must know where reading of a
topic-partition starts after an assignment, to tell a partition read to its
end from one whose records have not come yet. faust-streaming 0.15.3 keeps
that in a private map, `Consumer._committed_offset` (the committed offset
it seeked to), with no public accessor.

Upstream: no issue (a missing API, not a defect). Entry:
docs/reliability.md#committed_offset.
"""

from __future__ import annotations

import faust
from faust.types import TP

#: The version whose consumer the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}


def committed_offset(app: faust.App, tp: TP) -> int | None:
    """The committed offset Faust's consumer seeked `tp` to; None without one."""
    return app.consumer._committed_offset.get(tp)
