"""Pick up a newly deployed model while the worker runs.

A timer checks the CURRENT pointer every few seconds. It runs on the event
loop between messages, so a decision never sees a half-done swap; loading a
new version takes a few milliseconds and happens once per deployment.
"""

from __future__ import annotations

import faust

from nudge.models.serving import ScorerHolder


def schedule_reloads(app: faust.App, holder: ScorerHolder, interval_seconds: float) -> None:
    @app.timer(interval=interval_seconds)
    async def reload_model() -> None:
        holder.maybe_reload()
