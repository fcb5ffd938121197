"""HTTP endpoints on the worker's web server: probes for Kubernetes/Compose.

/health answers while the process runs; /ready only once partitions are
assigned and the tables have recovered, so no traffic is routed to a worker
whose state is still being rebuilt.
"""

from __future__ import annotations

from faust import web

from streams.app import NudgeApp


def is_ready(nudge: NudgeApp) -> bool:
    app = nudge.app
    try:
        assigned = bool(app.consumer.assignment())
    except Exception:  # consumer not started yet
        return False
    return (
        assigned
        and app.tables.recovery.completed.is_set()
        and bool(app.tables.actives_ready)
        and not app.rebalancing
    )


def register_probes(nudge: NudgeApp) -> None:
    app = nudge.app

    @app.page("/health")
    async def health(self: web.View, request: web.Request) -> web.Response:
        return self.json({"status": "alive"})

    @app.page("/ready")
    async def ready(self: web.View, request: web.Request) -> web.Response:
        ok = is_ready(nudge)
        return self.json({"ready": ok}, status=200 if ok else 503)
