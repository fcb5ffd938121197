"""How bench.pipeline counts what a peer has processed.

A peer emits a decision for triggers only, as nudge does, so its outputs do
not count its input. Each peer counts every input event it has processed on
a Prometheus counter served from a thread (127.0.0.1, `--metrics-port`),
which bench.pipeline scrapes once a second as it scrapes nudge's
`nudge_events_consumed_total`: no extra message per event, the same
measurement for all three.
"""

from __future__ import annotations

from prometheus_client import Counter, start_http_server

PROCESSED_METRIC = "bench_peer_events_processed_total"

processed = Counter(PROCESSED_METRIC.removesuffix("_total"), "Input events the peer has processed.")


def serve(port: int) -> None:
    """Serve /metrics on 127.0.0.1:`port` from a daemon thread."""
    start_http_server(port, addr="127.0.0.1")
