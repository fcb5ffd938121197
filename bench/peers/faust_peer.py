"""A minimal Faust agent: nudge's input topics -> the minimal decision.

    python -m bench.peers.faust_peer --bootstrap 127.0.0.1:9092 --prefix faust. \
        --data-dir DIR --metrics-port 9101 [--ready-file FILE]

One agent (concurrency 1) over every input topic of `prefix`; per event one
read of one RocksDB table (rocksdict, changelogged), bench.peers.decision,
one write, and for a trigger one send to `{prefix}actions`. Faust runs as
nudge's worker runs it (streams/app.py): uvloop, producer linger 0 and
acks=all, the producer buffer bound 10,000, commits on the timer only,
bounded RocksDB memory. So nudge and this agent differ in what they do per
event, not in how Faust is tuned. No web server: the processed count is
served by bench.peers.counting.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import orjson

from bench.peers import cli, counting
from bench.peers.decision import decide
from nudge.streams.topics import INPUT_KINDS, topic_name

OUTPUT_KIND = "actions"
PRODUCER_BUFFER_MESSAGES = 10_000  # as streams/app.py: Faust's 100 stalls the consumer
COMMIT_EVERY_DISABLED = 1_000_000_000  # as streams/app.py: commit on the 2.8 s timer
ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "block_cache_size": 8 * 1024 * 1024,
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
}


def build(bootstrap: str, prefix: str, data_dir: Path, partitions: int, ready_file: Path | None):
    """The app with its one table and one agent (Faust imported here: F_LOOP first)."""
    import faust

    app = faust.App(
        f"{prefix}faust-peer",
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=str(data_dir),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0,
        broker_commit_every=COMMIT_EVERY_DISABLED,
        web_enabled=False,
    )
    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    table = app.Table(
        "peer-state", default=None, key_type=bytes, value_type=bytes,
        partitions=partitions, options=dict(ROCKSDB_OPTIONS),
    )  # fmt: skip
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    sources = app.topic(*(topic_name(prefix, kind) for kind in INPUT_KINDS), **raw)
    output = app.topic(topic_name(prefix, OUTPUT_KIND), **raw)

    @app.agent(sources, concurrency=1)
    async def decide_events(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key = event.key
            if key is not None:
                stored = table.data.get(key)  # one RocksDB read (table.get does two)
                state = orjson.loads(stored) if stored is not None else None
                new, decision = decide(state, orjson.loads(event.value), time.time())
                table[key] = orjson.dumps(new)
                if decision is not None:
                    await output.send(key=key, value=orjson.dumps(decision))
            counting.processed.inc()

    @app.on_rebalance_complete.connect
    async def ready(sender: object, **kwargs: object) -> None:
        nonlocal ready_file
        if ready_file is not None and app.consumer.assignment():
            ready_file.write_text("ready\n")
            ready_file = None

    return app


def main(argv: list[str] | None = None) -> int:
    args = cli.arguments("python -m bench.peers.faust_peer", __doc__, "--data-dir", argv)
    os.environ.setdefault("F_LOOP", "uvloop")  # as nudge's worker; Faust reads it on import
    from faust import Worker

    counting.serve(args.metrics_port)
    app = build(args.bootstrap, args.prefix, args.data_dir, args.partitions, args.ready_file)
    Worker(app, loglevel=args.log_level, quiet=True).execute_from_commandline()  # until SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
