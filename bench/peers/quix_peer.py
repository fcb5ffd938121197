"""A minimal Quix Streams peer: nudge's input topics -> the minimal decision.

    python -m bench.peers.quix_peer --bootstrap 127.0.0.1:9092 --prefix quix. \
        --state-dir DIR --metrics-port 9100 [--ready-file FILE]

One StreamingDataFrame over every input topic of `prefix` (concatenated, so
Quix aligns them by timestamp, as nudge orders its topics), one stateful
apply with bench.peers.decision, decisions (JSON) to `{prefix}actions`.
State is Quix's RocksDB store with its changelog topic, as Quix ships it;
at-least-once, Quix's 5 s commit interval. The producer matches the others
in the benchmark: linger 0 and acks=all (Quix's idempotent producer).

One setting is not Quix's default: the consumer poll timeout, 10 ms instead
of 1 s. With concatenated topics Quix fills its time-alignment buffer with a
batch consume that returns when the batch is full or the timeout is over, so
at 1 s every decision waited up to a second (measured: ~1 s for 5 events).
A decision carries its trigger's Kafka timestamp (Quix propagates it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from quixstreams import Application, State
from quixstreams.models import TopicConfig

from bench.peers import cli, counting
from bench.peers.decision import decide
from nudge.streams.topics import INPUT_KINDS, topic_name

OUTPUT_KIND = "actions"
STATE_KEY = "c"


class PeerApplication(Application):
    """Writes the ready file once partitions are assigned and their stores open
    (Quix has no public assignment hook; `_on_assign` is what it subscribes)."""

    ready_file: Path | None = None

    def _on_assign(self, consumer: object, topic_partitions: list) -> None:
        super()._on_assign(consumer, topic_partitions)
        if topic_partitions and self.ready_file is not None:
            self.ready_file.write_text("ready\n")
            self.ready_file = None


def apply_event(event: dict, state: State) -> dict | None:
    """One state read, one state write, a decision for a trigger."""
    new, decision = decide(state.get(STATE_KEY), event, time.time())
    state.set(STATE_KEY, new)
    counting.processed.inc()
    return decision


def build(
    bootstrap: str, prefix: str, state_dir: Path, partitions: int, log_level: str = "WARNING"
) -> PeerApplication:
    app = PeerApplication(
        broker_address=bootstrap,
        consumer_group=f"{prefix}quix",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel=log_level,
        producer_extra_config={"linger.ms": 0},
        consumer_poll_timeout=0.01,  # see the module docstring
    )
    config = TopicConfig(num_partitions=partitions, replication_factor=1)
    inputs = [
        app.dataframe(app.topic(topic_name(prefix, kind), config=config)) for kind in INPUT_KINDS
    ]
    sdf = inputs[0]
    for other in inputs[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(apply_event, stateful=True).filter(lambda decision: decision is not None)
    sdf.to_topic(app.topic(topic_name(prefix, OUTPUT_KIND), config=config))
    return app


def main(argv: list[str] | None = None) -> int:
    args = cli.arguments("python -m bench.peers.quix_peer", __doc__, "--state-dir", argv)
    counting.serve(args.metrics_port)
    app = build(args.bootstrap, args.prefix, args.state_dir, args.partitions, args.log_level)
    app.ready_file = args.ready_file
    app.run()  # until SIGTERM: Quix commits its checkpoint and stops
    return 0


if __name__ == "__main__":
    sys.exit(main())
