"""Benchmark of the whole pipeline against its peers and the physical limit of this stack.

    python -m bench.pipeline [--systems nudge,echo,faust,quix --rates 1000,2000,5000
                              --seconds 20 --runs 3 --out bench/results/pipeline.json]

It starts its own Kafka broker (ops.local_kafka, free port, temp data dir)
and, each on its own topics (same input kinds, same 8 partitions), every
system asked for:

- nudge: a real worker (nudge.testing.WorkerProcess, real clock, the
  integration policy without quiet hours, so decisions are immediate);
- echo: bench/echo.py, a bare aiokafka consume -> produce echo, the limit of
  Kafka plus a Python client here;
- faust: bench/peers/faust_peer.py, a minimal Faust agent (one RocksDB table
  read and write per event, a send per decision);
- quix: bench/peers/quix_peer.py, a minimal Quix Streams application
  (confluent-kafka, Quix's RocksDB state with its changelog);

the two peers making the same minimal decision (bench/peers/decision.py:
consent, a 24 h contact cap, a 7-day category cooldown).

Each run offers every rate to every system in turn, rate by rate (the order
of the systems rotates from run to run, so none always goes first and a
neighbour's burst of load lands on all of them alike), then searches each
system's maximum sustainable rate. With `--variant K=V` a second set of
workers runs with those variables on its own topics, measured as "variant"
at the fixed rates (e.g. NUDGE_MAX_TASK_IDLE_MS=0: the cost of time ordering).

Traffic is nudge.traffic's realistic mix (sessions, carts, purchases, consent,
preferences, feedback, identity, redeliveries), re-stamped to the wall clock
as it is sent. Every trial gets its own customers (ids prefixed with the
trial's tag), whose marketing consent on every channel is granted first
(untimed) to every system that decides, so a good share of triggers become
actions rather than consent suppressions.

Load and measurement each run in their own process, so neither shares a GIL
with the system under test:

- the load generator (aiokafka) paces sends at the offered rate and sets each
  event's `ts` and its Kafka CreateTime to the same millisecond;
- the latency reader (aiokafka, assigned, no group) reads the decisions
  (`actions`, `suppressions`; the echo's output) and takes the arrival time
  when a fetch returns. Latency is arrival minus the trigger's CreateTime
  (carried as `trigger_ts`); `create_ms` is the decision record's own
  CreateTime minus the trigger's (worker + producer, without the reader's
  fetch).

Processed events: nudge's `nudge_events_consumed_total`, the peers'
`bench_peer_events_processed_total` (bench/peers/counting.py), both scraped
once a second; the echo's outputs (one per input). CPU per event is the
system's process CPU time (all its threads) over the trial / events processed.

A rate is *sustained* when the generator offered at least 95% of it, the
system finished the backlog within 1 s of the last send, and p99 latency over
the second half of the trial stayed under 500 ms (a backlog that grows shows
as latency that grows). The maximum is searched by growing the rate 1.5x
until a trial fails, then bisecting. CPU and RSS come from /proc via psutil,
sampled every 0.25 s.

Targets (issue #15), each measured within a run and the median over runs
taken: nudge's maximum sustainable rate >= the Faust agent's and >= half the
Quix peer's; at 1,000 events/s offered, nudge's p50 event -> decision <= the
echo's p50 + 5 ms and its p99 < 25 ms; nudge's CPU per event < 400 us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import multiprocessing as mp
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import msgspec
import psutil

from bench.common import INTEGRATION_POLICY as POLICY
from bench.common import (
    REPO_ROOT,
    chart,
    default_out,
    machine_info,
    percentile,
    summary,
    write_json,
)
from bench.common import parser as bench_parser
from bench.peers.counting import PROCESSED_METRIC
from nudge.ops import local_kafka
from nudge.streams.admin import ensure_topics
from nudge.streams.settings import Settings
from nudge.streams.topics import topic_name
from nudge.testing import WorkerProcess
from nudge.traffic import Generator, with_prefix

DEFAULT_OUT = default_out("pipeline")  # published figures: --out bench/results/...
PARTITIONS = 8
SEED = 11

SUSTAINED_OFFERED_SHARE = 0.95  # the generator must offer at least this share of the rate
SUSTAINED_DRAIN_S = 1.0  # backlog gone within this long after the last send
SUSTAINED_P99_MS = 500.0  # second-half p99: a growing backlog shows as growing latency
SYSTEMS = ("nudge", "echo", "faust", "quix")
TARGET_RATE = 1000  # the latency and CPU targets are read at this offered rate
TARGET_P50_OVER_ECHO_MS = 5.0  # nudge's p50 at most the echo's + this
TARGET_P99_MS = 25.0
TARGET_CPU_US = 400.0
TARGET_MAX_VS_FAUST = 1.0  # nudge's maximum over the minimal Faust agent's
TARGET_MAX_VS_QUIX = 0.5  # nudge's maximum over the Quix peer's


# -- traffic --------------------------------------------------------------------------------

TS_MARK = "@@TS@@"
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Template:
    """One event as bytes, with its `ts` left open for the send time."""

    kind: str
    key: str
    head: bytes
    tail: bytes


@functools.cache
def build_stream(events: int, seed: int = SEED) -> list[tuple[str, str, dict]]:
    """nudge.traffic's realistic mix, in event-time order: (kind, key, body);
    about six events per customer, so a trial's consent prefill stays small
    next to the trial."""
    stream = []
    for raw in Generator(max(200, events // 6), events, seed).generate():
        body = dict(raw.body)
        if isinstance(body.get("snooze_until"), float):
            body["snooze_until"] = body["snooze_until"] - raw.ts  # seconds after the event
        stream.append((raw.kind, raw.key, body))
    return stream


def templates(stream: Sequence[tuple[str, str, dict]], tag: str) -> list[Template]:
    """The stream for one trial: ids prefixed with `tag` (fresh customers,
    fresh event ids), `ts` open, snoozes relative to now."""
    now = time.time()
    out = []
    for kind, key, body in stream:
        body = with_prefix(body, f"{tag}.")
        if "snooze_until" in body:
            body["snooze_until"] = _iso_ms(int((now + 60 + body["snooze_until"]) * 1000))
        body["ts"] = TS_MARK
        head, tail = _encoder.encode(body).split(f'"{TS_MARK}"'.encode())
        out.append(Template(kind, f"{tag}.{key}", head, tail))
    return out


def consent_grants(items: Sequence[Template], tag: str) -> list[Template]:
    """One marketing grant on every channel for each customer in `items`."""
    customers = sorted(
        {t.key for t in items if t.kind != "identity" and b'"customer_id"' in t.head + t.tail}
    )
    out = []
    for i, customer in enumerate(customers):
        body = {
            "event_id": f"{tag}.grant-{i}",
            "type": "consent",
            "customer_id": customer,
            "channel": "all",
            "purpose": "marketing",
            "status": "granted",
            "source": "bench",
            "ts": TS_MARK,
        }
        head, tail = _encoder.encode(body).split(f'"{TS_MARK}"'.encode())
        out.append(Template("consent", customer, head, tail))
    return out


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


# -- load generator (own process) -----------------------------------------------------------


def produce(
    bootstrap: str, prefix: str, items: list[Template], rate: float, go: Event, back: mp.Queue
) -> None:
    """Process entry: once `go` is set, send `items` at `rate`/s (0: as fast
    as possible), then report (first send, last send, sent, worst lateness)."""
    import uvloop

    uvloop.run(_produce(bootstrap, prefix, items, rate, go, back))


async def _produce(
    bootstrap: str, prefix: str, items: list[Template], rate: float, go: Event, back: mp.Queue
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    topics = {kind: topic_name(prefix, kind) for kind in {t.kind for t in items}}
    for topic in topics.values():
        await producer.partitions_for(topic)
    back.put("ready")
    while not go.wait(0.01):
        await asyncio.sleep(0)
    start = time.time()
    lateness = 0.0
    last_ms, stamp = -1, b""
    for i, item in enumerate(items):
        if rate:
            due = start + i / rate
            now = time.time()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.time()
            else:
                lateness = max(lateness, now - due)
        else:
            now = time.time()
        ms = int(now * 1000)
        if ms != last_ms:
            last_ms, stamp = ms, f'"{_iso_ms(ms)}"'.encode()
        await producer.send(
            topics[item.kind], item.head + stamp + item.tail, key=item.key.encode(), timestamp_ms=ms
        )
    end = time.time()
    await producer.flush()
    await producer.stop()
    back.put((start, end, len(items), lateness))


# -- latency reader (own process) -----------------------------------------------------------


class Decided(msgspec.Struct):
    """The fields of an output the reader needs (a decision, or an echoed event)."""

    trigger_event_id: str | None = None
    trigger_ts: datetime | None = None
    event_id: str | None = None
    ts: datetime | None = None
    kind: str | None = None


def read_outputs(
    bootstrap: str, topics: list[str], tag: str, count: Synchronized, stop: Event, back: mp.Queue
) -> None:
    """Process entry: read `topics` from their end until `stop`; send back
    (arrival s, trigger ms, record CreateTime ms, is action) per output of
    this trial, counting them in `count` as they arrive."""
    import uvloop

    uvloop.run(_read_outputs(bootstrap, topics, tag, count, stop, back))


async def _read_outputs(
    bootstrap: str, topics: list[str], tag: str, count: Synchronized, stop: Event, back: mp.Queue
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    back.put("ready")
    decoder = msgspec.json.Decoder(Decided)
    wanted = f"{tag}."
    rows: list[tuple[float, int, int, bool]] = []
    stop_at = None
    while stop_at is None or time.time() < stop_at:
        batches = await consumer.getmany(timeout_ms=50)
        arrived = time.time()
        seen = 0
        for records in batches.values():
            for record in records:
                out = decoder.decode(record.value)
                event_id = out.trigger_event_id or out.event_id or ""
                trigger = out.trigger_ts or out.ts
                if not event_id.startswith(wanted) or trigger is None:
                    continue
                trigger_ms = round(trigger.timestamp() * 1000)
                rows.append((arrived, trigger_ms, record.timestamp, out.kind == "action"))
                seen += 1
        if seen:
            with count.get_lock():
                count.value += seen
        if stop_at is None and stop.is_set():  # read what is still on its way, briefly
            stop_at = time.time() + 0.5
    await consumer.stop()
    back.put(rows)


# -- the systems under test -----------------------------------------------------------------


@dataclass
class System:
    """What a trial needs to know about the system under test."""

    name: str  # "nudge", "variant", "echo", "faust" or "quix"
    prefix: str
    pids: list[int]  # one per worker
    outputs: list[str]  # topics the latency reader reads
    metrics_urls: list[str] = field(default_factory=list)  # processed, from /metrics
    metric: str = "nudge_events_consumed_total"  # the counter on those pages

    def processed(self, reader_count: int) -> int:
        """Input events handled so far (the echo: outputs, one per input)."""
        if not self.metrics_urls:
            return reader_count
        return sum(events_consumed(url, self.metric) for url in self.metrics_urls)


class PeerProcess:
    """A system other than nudge (bench/echo.py, bench/peers/*) in its own
    process, on its own topics (prefix `{name}.`); ready once its ready file
    appears."""

    def __init__(
        self, name: str, module: str, bootstrap: str, workdir: Path, *args: str,
        counted: bool = True, prefix: str | None = None, partitions: int = PARTITIONS,
    ) -> None:  # fmt: skip
        self.name, self.module, self.bootstrap = name, module, bootstrap
        self.prefix = prefix or f"{name}."
        self.partitions = partitions
        self.ready = workdir / f"{name}.ready"
        self.log = workdir / f"{name}.log"
        self.args = list(args)
        self.metrics_port = local_kafka.free_port() if counted else None
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> System:
        settings = Settings(
            bootstrap_servers=self.bootstrap,
            topic_prefix=self.prefix,
            app_id=f"{self.prefix}{self.name}",
            partitions=self.partitions,
        )
        ensure_topics(settings)
        time.sleep(2)  # new topics: let partition leadership settle before the consumer looks
        command = [
            sys.executable, "-m", self.module, "--bootstrap", self.bootstrap,
            "--prefix", self.prefix, "--ready-file", str(self.ready), *self.args,
        ]  # fmt: skip
        if self.metrics_port is not None:  # the echo takes neither
            command += ["--metrics-port", str(self.metrics_port)]
            command += ["--partitions", str(self.partitions)]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.1)
        return self.system()

    def system(self) -> System:
        """This process as a system under test: its decisions (or echoes) on `actions`."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        port = self.metrics_port
        return System(
            self.name, self.prefix, [self.process.pid], [topic_name(self.prefix, "actions")],
            metrics_urls=[] if port is None else [f"http://127.0.0.1:{port}/metrics"],
            metric=PROCESSED_METRIC,
        )  # fmt: skip

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (each commits and leaves its group), then SIGKILL if it will not go."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def peer_process(
    name: str, bootstrap: str, workdir: Path, echo_loop: str = "uvloop",
    prefix: str | None = None, partitions: int = PARTITIONS,
) -> PeerProcess:  # fmt: skip
    """The echo or one of the peers, not yet started, on topics `prefix`
    (default `{name}.`)."""
    module, *args = {
        "echo": ["bench.echo", "--loop", echo_loop],
        "faust": ["bench.peers.faust_peer", "--data-dir", str(workdir / "faust-peer")],
        "quix": ["bench.peers.quix_peer", "--state-dir", str(workdir / "quix-peer")],
    }.get(name, [""])
    if module:
        return PeerProcess(name, module, bootstrap, workdir, *args, counted=name != "echo",
                           prefix=prefix, partitions=partitions)  # fmt: skip
    raise ValueError(f"not a peer: {name}")


def events_consumed(metrics_url: str, metric: str = "nudge_events_consumed_total") -> int:
    """A counter summed over its series: events processed, as the system counts them."""
    return int(sum(metric_series(scrape(metrics_url), metric).values()))


def scrape(metrics_url: str) -> str:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        return response.read().decode()


def metric_series(text: str, name: str) -> dict[str, float]:
    """Every series of `name` on a Prometheus page, {labels: value} (labels
    "" for an unlabelled one)."""
    series = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, value = line[len(name) :].rsplit(" ", 1)
            series[labels] = float(value)
    return series


# -- one trial ------------------------------------------------------------------------------


@dataclass
class Samples:
    """Time series taken every 0.25 s during a trial."""

    t: list[float] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    _last: int = 0
    _scraped: float = 0.0

    def take(
        self,
        system: System,
        processes: list[psutil.Process],
        reader_count: int,
        fresh: bool = False,
    ) -> None:
        """Every call reads /proc (CPU and RSS summed over the workers);
        /metrics once a second (it costs the worker CPU) unless `fresh`
        (while waiting for the last events)."""
        cpu = sum(t.user + t.system for t in (p.cpu_times() for p in processes))
        now = time.time()
        if fresh or not self.t or now - self._scraped >= 1.0 or not system.metrics_urls:
            self._last = system.processed(reader_count)
            self._scraped = now
        self.t.append(now)
        self.processed.append(self._last)
        self.cpu_s.append(cpu)
        self.rss.append(sum(p.memory_info().rss for p in processes))

    def processed_at(self, when: float) -> float:
        """Processed count at `when`, interpolated between samples."""
        pairs = zip(self.t, self.processed, strict=True)
        for (t0, p0), (t1, p1) in itertools.pairwise(pairs):
            if t0 <= when <= t1:
                return p0 + (p1 - p0) * (when - t0) / (t1 - t0) if t1 > t0 else p1
        return float(self.processed[-1] if when >= self.t[-1] else self.processed[0])


@dataclass
class Load:
    """A load generator and a latency reader, each in its own process, both
    connected and waiting for `go`."""

    go: Event
    stop: Event
    count: Synchronized  # outputs of this load read so far
    producer_q: mp.Queue  # the generator's (first send, last send, sent, worst lateness)
    reader_q: mp.Queue

    def outputs(self) -> list[tuple[float, int, int, bool]]:
        """Stop the reader; its rows (see read_outputs)."""
        self.stop.set()
        return self.reader_q.get(timeout=120)


@contextlib.contextmanager
def load(
    ctx: mp.context.BaseContext,
    bootstrap: str,
    system: System,
    items: list[Template],
    rate: float,
    tag: str,
) -> Iterator[Load]:
    """Start `produce` for `items` at `rate` and `read_outputs` for `tag`'s
    decisions; on the way out, make sure both processes are gone."""
    count = ctx.Value("q", 0)
    go, stop = ctx.Event(), ctx.Event()
    reader_q, producer_q = ctx.Queue(), ctx.Queue()
    reader = ctx.Process(
        target=read_outputs, args=(bootstrap, system.outputs, tag, count, stop, reader_q)
    )
    producer = ctx.Process(
        target=produce, args=(bootstrap, system.prefix, items, rate, go, producer_q)
    )
    reader.start()
    producer.start()
    try:
        _expect(reader_q.get(timeout=60), "ready")
        _expect(producer_q.get(timeout=60), "ready")
        yield Load(go, stop, count, producer_q, reader_q)
    finally:
        for child in (reader, producer):
            child.join(30)
            if child.is_alive():
                child.kill()


def run_trial(
    ctx: mp.context.BaseContext,
    bootstrap: str,
    system: System,
    rate: int,
    seconds: float,
    profile: Path | None = None,
) -> dict:
    """Offer `rate` events/s for `seconds` and measure; returns the trial's
    figures. With `profile`, py-spy samples the (first) worker meanwhile and
    writes collapsed stacks there."""
    tag = f"b{uuid.uuid4().hex[:6]}"
    items = templates(build_stream(int(rate * seconds)), tag)
    n = len(items)  # the generator's count is close to, not exactly, what was asked
    processes = [psutil.Process(pid) for pid in system.pids]
    load_before = os.getloadavg()
    grants = None
    if system.metrics_urls:  # a system that decides: consent first (the echo needs none)
        grants = prefill(ctx, bootstrap, system, consent_grants(items, tag))

    with load(ctx, bootstrap, system, items, rate, tag) as running:
        samples = Samples()
        base = system.processed(running.count.value)
        samples.take(system, processes, running.count.value)
        running.go.set()
        spy = start_profiler(system.pids[0], seconds, profile) if profile else None
        result = None
        deadline = time.time() + seconds * 4 + 120
        while time.time() < deadline:
            time.sleep(0.25 if result is None else 0.1)
            if result is None and not running.producer_q.empty():
                result = running.producer_q.get()
            samples.take(system, processes, running.count.value, fresh=result is not None)
            if result is not None and samples.processed[-1] - base >= n:
                break
        if result is None:
            raise RuntimeError("load generator did not finish")
        done = samples.t[-1]
        rows = running.outputs()
    first, last, sent, lateness = result
    processed = samples.processed[-1] - base
    trial = summarize_trial(
        system.name, rate, seconds, tag, rows, samples, first, last, sent, lateness,
        processed, base, done, load_before, grants,
    )  # fmt: skip
    if spy is not None and spy.wait(seconds + 60) == 0 and profile is not None:
        trial["profile"] = {"file": profile.name, "shares": profile_shares(profile)}
    return trial


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy (needs root or ptrace rights) on the worker, 100 samples/s."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["py-spy", "record", "-p", str(pid), "-r", "100", "-d", str(int(seconds)),
               "--format", "raw", "--nonblocking", "-o", str(out)]  # fmt: skip
    py_spy = Path(sys.executable).with_name("py-spy")
    command[0] = str(py_spy) if py_spy.exists() else "py-spy"
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: Where a worker's samples go, by the first matching frame (outermost first).
PROFILE_PARTS = (
    ("consumer thread (aiokafka fetch, Faust's ThreadDelegateConsumer)", "WorkerThread.run"),
    ("engine: decode, rules, encode (policy.processor)", "Processor.process"),
    ("table writes + changelog enqueue (Faust Table)", "ManagedUserDict.__setitem__"),
    ("table deletes (erasures)", "ManagedUserDict.__delitem__"),
    ("outputs: Faust topic send", "Outbox.send"),
    ("nudge metrics", "record_metrics"),
    ("Faust stream iteration, acks, agent", "Agent._execute_actor"),
    ("changelog send (Faust ProducerBuffer)", "ProducerBuffer._handle_pending"),
    ("aiokafka producer: requests, socket writes", "Sender."),
    ("Faust fetcher -> conductor -> stream queue", "Fetcher._fetcher"),
    ("HTTP (/metrics scrapes by the bench)", "RequestHandler"),
    ("offset commits", "Consumer._commit"),
    ("changelog acks -> persisted offsets (RocksDB)", "_on_changelog_sent"),
)


def profile_shares(path: Path) -> dict[str, float]:
    """Share of all samples per part of the pipeline (PROFILE_PARTS, else
    'event loop and other')."""
    totals: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        part = next((name for name, frame in PROFILE_PARTS if frame in stack), None)
        name = part or "event loop and other"
        totals[name] = totals.get(name, 0) + int(count)
    total = sum(totals.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def prefill(
    ctx: mp.context.BaseContext, bootstrap: str, system: System, grants: list[Template]
) -> dict:
    """Send the trial's consent grants as fast as possible and wait until the
    worker has processed them (untimed for the trial; reported as a drain rate)."""
    back, go = ctx.Queue(), ctx.Event()
    before = system.processed(0)
    producer = ctx.Process(target=produce, args=(bootstrap, system.prefix, grants, 0, go, back))
    producer.start()
    _expect(back.get(timeout=60), "ready")
    go.set()
    start, _end, sent, _ = back.get(timeout=300)
    producer.join(30)
    deadline = time.time() + 300
    while system.processed(0) - before < sent and time.time() < deadline:
        time.sleep(0.1)
    seconds = time.time() - start
    return {"events": sent, "seconds": round(seconds, 2), "per_second": round(sent / seconds)}


def _expect(got: object, wanted: str) -> None:
    if got != wanted:
        raise RuntimeError(f"expected {wanted!r} from a child process, got {got!r}")


def summarize_trial(
    name: str, rate: int, seconds: float, tag: str, rows: list, samples: Samples,
    first: float, last: float, sent: int, lateness: float, processed: int, base: int,
    done: float, load_before: tuple, grants: dict | None,
) -> dict:  # fmt: skip
    window = max(last - first, 1e-9)
    in_window = samples.processed_at(last) - base
    half = first + window / 2
    latency = sorted((arrived * 1000 - trigger) for arrived, trigger, _c, _a in rows)
    late_half = sorted(
        arrived * 1000 - trigger for arrived, trigger, _c, _a in rows if trigger / 1000 >= half
    )
    actions = sorted((arrived * 1000 - trigger) for arrived, trigger, _c, a in rows if a)
    create = sorted(float(c - trigger) for _arrived, trigger, c, _a in rows)
    cpu = [
        (c1 - c0) / (t1 - t0)
        for (t0, c0), (t1, c1) in itertools.pairwise(zip(samples.t, samples.cpu_s, strict=True))
        if first <= t0 and t1 <= last
    ]
    busy = samples.cpu_s[-1] - samples.cpu_s[0]
    offered = sent / window
    drain = max(0.0, done - last)
    second_half_p99 = percentile(late_half, 99, digits=1)
    sustained = (
        offered >= SUSTAINED_OFFERED_SHARE * rate
        and drain <= SUSTAINED_DRAIN_S
        and second_half_p99 is not None
        and second_half_p99 < SUSTAINED_P99_MS
    )
    return {
        "system": name,
        "rate": rate,
        "seconds": seconds,
        "tag": tag,
        "sent": sent,
        "offered_per_second": round(offered, 1),
        "generator_max_lateness_ms": round(lateness * 1000, 1),
        "processed": processed,
        "throughput_per_second": round(in_window / window, 1),
        "drain_seconds": round(drain, 2),
        "outputs_measured": len(rows),
        "actions_measured": len(actions),
        "latency_ms": summary(latency),
        "action_latency_ms": summary(actions),
        "create_time_latency_ms": summary(create),
        "second_half_p99_ms": second_half_p99,
        "cpu_cores": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_us_per_event": round(busy / processed * 1e6, 1) if processed else None,
        "rss_mb_max": round(max(samples.rss) / 2**20, 1),
        "load_average": [round(x, 2) for x in load_before],
        "consent_prefill": grants,
        "sustained": sustained,
    }


# -- searching the maximum ------------------------------------------------------------------


def find_max(
    trial, start: int, known_good: int | None = None, step: float = 1.5, bisections: int = 3,
    limit: int = 200_000,
) -> tuple[int | None, list[dict]]:  # fmt: skip
    """Grow the rate until a trial is not sustained (from above `known_good`,
    a rate already sustained, if given), then bisect; returns the highest
    sustained rate (None if even 250/s failed) and the trials."""
    trials = []
    good, bad = known_good, None
    rate = int(known_good * step) if known_good else start
    while rate <= limit:
        result = trial(rate)
        trials.append(result)
        if not result["sustained"]:
            bad = rate
            break
        good = rate
        rate = int(rate * step)
    if good is None:  # even the first failed: walk down
        bad, rate = start, start // 2
        while rate >= 250:
            result = trial(rate)
            trials.append(result)
            if result["sustained"]:
                good = rate
                break
            bad, rate = rate, rate // 2
    for _ in range(bisections if good and bad else 0):
        mid = round((good + bad) / 2 / 250) * 250
        if mid in (good, bad):
            break
        result = trial(mid)
        trials.append(result)
        if result["sustained"]:
            good = mid
        else:
            bad = mid
    return good, trials


# -- the whole benchmark --------------------------------------------------------------------


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[str]:
    data_dir = workdir / "kafka"
    handle = local_kafka.start(port=local_kafka.free_port(), data_dir=data_dir)
    try:
        yield handle.bootstrap_servers
    finally:
        local_kafka.stop(data_dir)


def run(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    started = time.time()
    names = [*args.systems]
    if args.variant:  # measured right after nudge, at the fixed rates
        names.insert(names.index("nudge") + 1 if "nudge" in names else 0, "variant")
    result: dict = {
        "benchmark": "pipeline",
        "description": (
            "nudge worker vs a minimal Faust agent, a minimal Quix Streams peer and a bare "
            "aiokafka echo on one real Kafka broker, interleaved rate by rate"
        ),
        "params": {
            "systems": names,
            "rates": args.rates,
            "seconds": args.seconds,
            "search_seconds": args.search_seconds,
            "runs": args.runs,
            "partitions": PARTITIONS,
            "workers": args.workers,
            "policy": str(POLICY.relative_to(REPO_ROOT)),
            "worker_env": args.worker_env,
            "variant_env": args.variant,
            "echo_loop": args.echo_loop,
            "sustained_when": (
                f"offered >= {SUSTAINED_OFFERED_SHARE:.0%} of the rate, drained within "
                f"{SUSTAINED_DRAIN_S:g} s, second-half p99 < {SUSTAINED_P99_MS:g} ms"
            ),
        },
        "trials": [],
        "max": {name: [] for name in names if name != "variant"},
    }
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp, broker(Path(tmp)) as bootstrap:
        workdir = Path(tmp)
        print(f"broker at {bootstrap}", flush=True)
        workers: list[WorkerProcess] = []
        peers = [peer_process(n, bootstrap, workdir, args.echo_loop) for n in names
                 if n not in ("nudge", "variant")]  # fmt: skip
        try:
            systems = {}
            if "nudge" in names:
                workers += start_workers(bootstrap, workdir, args.workers, args.worker_env)
                systems["nudge"] = nudge_workers("nudge", workers)
            if args.variant:
                variant_env = [*args.worker_env, *args.variant]
                variants = start_workers(bootstrap, workdir, args.workers, variant_env, "variant.")
                workers += variants
                systems["variant"] = nudge_workers("variant", variants)
            for peer in peers:
                systems[peer.name] = peer.start()
            warm_up(ctx, bootstrap, [systems[n] for n in names])
            for run_index in range(args.runs):
                for rate, name in trial_order(names, args.rates, run_index):
                    profile = None
                    if args.profile and run_index == 0 and name == "nudge":
                        profile = args.out.with_name(f"{args.out.stem}-profile-{rate}.txt")
                    trial = run_trial(ctx, bootstrap, systems[name], rate, args.seconds, profile)
                    trial["run"] = run_index
                    result["trials"].append(trial)
                    print(render_trial(trial), flush=True)
                if args.no_max:
                    continue
                for name in rotated([n for n in names if n != "variant"], run_index):
                    system = systems[name]

                    def one(rate: int, system: System = system, run_index: int = run_index) -> dict:
                        trial = run_trial(ctx, bootstrap, system, rate, args.search_seconds)
                        trial.update(run=run_index, search=True)
                        print(render_trial(trial), flush=True)
                        return trial

                    sustained = [
                        t["rate"] for t in result["trials"]
                        if t["run"] == run_index and t["system"] == name and t["sustained"]
                    ]  # fmt: skip
                    best, trials = find_max(one, args.max_start, max(sustained, default=None))
                    result["trials"] += trials
                    result["max"][name].append(best)
                    print(f"  {name} run {run_index}: max sustained {best}/s", flush=True)
        finally:
            for peer in peers:
                peer.stop()
            for worker in workers:
                worker.stop()
            if workers:
                result["worker_log_tail"] = workers[0].tail(20)
            result["peer_log_tails"] = {p.name: p.tail(1000) for p in peers}
    result["elapsed_seconds"] = round(time.time() - started)
    result["summary"] = summarize(result, args)
    return result


def rotated(names: Sequence[str], run_index: int) -> list[str]:
    """`names` starting at the run's index: each run a different system goes first."""
    k = run_index % len(names) if names else 0
    return [*names[k:], *names[:k]]


def trial_order(
    names: Sequence[str], rates: Sequence[int], run_index: int
) -> list[tuple[int, str]]:
    """A run's fixed-rate trials: rate by rate, every system at each rate, in
    the run's rotated order, so systems measured against each other share the
    machine's load of the same minutes."""
    order = rotated(names, run_index)
    return [(rate, name) for rate in rates for name in order]


def start_workers(
    bootstrap: str, workdir: Path, count: int, worker_env: Sequence[str], prefix: str = "bench."
) -> list[WorkerProcess]:
    """`count` workers with the bench's settings; `worker_env`: extra K=V."""
    env = {
        "NUDGE_POLICY": str(POLICY),
        "NUDGE_MODEL_DIR": str(workdir / "no-models"),  # the heuristic scorer, as shipped
        **dict(item.split("=", 1) for item in worker_env),
    }
    workers = []
    for i in range(count):
        worker = WorkerProcess(
            bootstrap, prefix, workdir / f"{prefix}worker{i}", partitions=PARTITIONS, extra_env=env
        )
        workers.append(worker.start())
    return workers


def nudge_workers(name: str, workers: list[WorkerProcess]) -> System:
    """A set of nudge workers as a system under test."""
    return System(
        name, workers[0].prefix, [w.process.pid for w in workers],
        [topic_name(workers[0].prefix, k) for k in ("actions", "suppressions")],
        metrics_urls=[f"{w.url}/metrics" for w in workers],
    )  # fmt: skip


def warm_up(ctx: mp.context.BaseContext, bootstrap: str, systems: list[System]) -> None:
    """A short untimed trial on each, so first-use costs (metadata, connections,
    cold caches, new RocksDB files) do not land in the first measured trial."""
    for system in systems:
        run_trial(ctx, bootstrap, system, 1000, 3)


def summarize(result: dict, args: argparse.Namespace) -> dict:
    """Medians over runs per (system, rate), each system's maximum, nudge's
    ratios to the others, and the targets."""
    names = result["params"].get("systems") or ["nudge", "echo"]
    out: dict = {"by_rate": {}, "max": {}}
    fixed = [t for t in result["trials"] if not t.get("search")]
    for rate in args.rates:
        row = {}
        for name in names:
            trials = [t for t in fixed if t["system"] == name and t["rate"] == rate]
            row[name] = median_figures(trials)
        if "nudge" in row and "echo" in row:
            row["ratio"] = {
                key: _ratio(row["nudge"].get(key), row["echo"].get(key))
                for key in ("p50_ms", "p99_ms", "create_p50_ms", "create_p99_ms", "cpu_cores")
            }
        out["by_rate"][str(rate)] = row
    for name, runs in result["max"].items():
        values = [v for v in runs if v is not None]
        best = statistics.median(values) if values else None
        at_max = [
            t for t in result["trials"]
            if t["system"] == name and t["sustained"] and t["rate"] == best
        ]  # fmt: skip
        out["max"][name] = {"runs": runs, "median": best, "at_max": median_figures(at_max)}
    if "nudge" in out["max"] and "echo" in out["max"]:
        out["max"]["ratio"] = _ratio(out["max"]["nudge"]["median"], out["max"]["echo"]["median"])
    out["max"]["nudge_over"] = {
        name: max_ratio(result["max"], name) for name in result["max"] if name != "nudge"
    }
    out["targets"] = targets(result)
    return out


def max_ratio(maxima: dict[str, list[int | None]], peer: str) -> float | None:
    """Median over runs of nudge's maximum / `peer`'s in the same run. A run
    where nudge sustained not even the lowest rate counts as 0; one where the
    peer did not is left out."""
    if "nudge" not in maxima or peer not in maxima:
        return None
    pairs = zip(maxima["nudge"], maxima[peer], strict=False)  # a run cut short has fewer
    ratios = [(ours or 0) / theirs for ours, theirs in pairs if theirs]
    return round(statistics.median(ratios), 2) if ratios else None


def at_rate(result: dict, rate: int) -> dict[int, dict[str, dict]]:
    """The fixed-rate trials at `rate`, by run, then by system."""
    runs: dict[int, dict[str, dict]] = {}
    for trial in result["trials"]:
        if not trial.get("search") and trial["rate"] == rate:
            runs.setdefault(trial.get("run", 0), {})[trial["system"]] = trial
    return runs


def targets(result: dict) -> dict:
    """Issue #15's targets, each figure taken within a run (the systems
    compared share its minutes), then the median over runs; a target whose
    figures were not measured has `pass` None."""
    p50_over_echo, p99, cpu = [], [], []
    for trials in at_rate(result, TARGET_RATE).values():
        nudge, echo = trials.get("nudge"), trials.get("echo")
        if nudge is None:
            continue
        if echo is not None and None not in (nudge["latency_ms"]["p50"], echo["latency_ms"]["p50"]):
            p50_over_echo.append(nudge["latency_ms"]["p50"] - echo["latency_ms"]["p50"])
        if nudge["latency_ms"]["p99"] is not None:
            p99.append(nudge["latency_ms"]["p99"])
        if nudge["cpu_us_per_event"] is not None:
            cpu.append(nudge["cpu_us_per_event"])
    rate = f"{TARGET_RATE:,}/s"
    return {
        "max_vs_faust": _check(
            max_ratio(result["max"], "faust"), ">=", TARGET_MAX_VS_FAUST,
            "nudge's maximum sustainable rate / the minimal Faust agent's",
        ),
        "max_vs_quix": _check(
            max_ratio(result["max"], "quix"), ">=", TARGET_MAX_VS_QUIX,
            "nudge's maximum sustainable rate / the Quix peer's",
        ),
        "p50_over_echo_ms": _check(
            _median(p50_over_echo), "<=", TARGET_P50_OVER_ECHO_MS,
            f"nudge's p50 event -> decision minus the echo's, at {rate}",
        ),
        "p99_ms": _check(_median(p99), "<", TARGET_P99_MS, f"nudge's p99 at {rate}"),
        "cpu_us_per_event": _check(
            _median(cpu), "<", TARGET_CPU_US, f"nudge's CPU per event at {rate}"
        ),
    }  # fmt: skip


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def median_figures(trials: list[dict]) -> dict:
    def med(path: str) -> float | None:
        values = []
        for trial in trials:
            value = trial
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                values.append(value)
        return round(statistics.median(values), 2) if values else None

    return {
        "runs": len(trials),
        "sustained_runs": sum(t["sustained"] for t in trials),
        "throughput_per_second": med("throughput_per_second"),
        "p50_ms": med("latency_ms.p50"),
        "p95_ms": med("latency_ms.p95"),
        "p99_ms": med("latency_ms.p99"),
        "max_ms": med("latency_ms.max"),
        "action_p50_ms": med("action_latency_ms.p50"),
        "action_p99_ms": med("action_latency_ms.p99"),
        "create_p50_ms": med("create_time_latency_ms.p50"),
        "create_p99_ms": med("create_time_latency_ms.p99"),
        "cpu_cores": med("cpu_cores"),
        "cpu_us_per_event": med("cpu_us_per_event"),
        "rss_mb_max": med("rss_mb_max"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _check(value: float | None, op: str, target: float, what: str = "") -> dict:
    """Met (True), not met (False) or not measured (None)."""
    compare = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}[op]
    passed = None if value is None else compare(value, target)
    return {"value": value, "target": f"{op} {target:g}", "pass": passed, "what": what}


# -- output ---------------------------------------------------------------------------------


def render_trial(t: dict) -> str:
    lat, act, cre = t["latency_ms"], t["action_latency_ms"], t["create_time_latency_ms"]
    return (
        f"{t['system']:>5} {t['rate']:>6}/s: thr {t['throughput_per_second']:>8.0f}/s  "
        f"decisions {lat['count']:>6} p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} "
        f"max {lat['max']} ms | actions {act['count']} p50 {act['p50']} p99 {act['p99']} | "
        f"create p50 {cre['p50']} p99 {cre['p99']} | cpu {t['cpu_cores']} "
        f"({t['cpu_us_per_event']} µs/event) rss "
        f"{t['rss_mb_max']} MB | drain {t['drain_seconds']} s | load {t['load_average'][0]} "
        f"| {'sustained' if t['sustained'] else 'NOT sustained'}"
    )


def render(result: dict) -> str:
    s = result["summary"]
    names = result["params"].get("systems") or ["nudge", "echo"]
    lines = [
        f"nudge pipeline benchmark: {result['params']['runs']} runs, medians; "
        f"{result['params']['partitions']} partitions, {result['params']['workers']} worker(s); "
        f"systems {', '.join(names)}, interleaved rate by rate",
    ]
    machine = result.get("machine", {})
    if machine:
        loads = [t["load_average"][0] for t in result["trials"]]
        lines.append(
            f"{machine['cpu_model']}, {machine['nproc']} CPUs, Python {machine['python']}, "
            f"load average at start {machine.get('load_average')}, at end "
            f"{machine.get('load_average_end')}, at trial starts "
            f"{min(loads, default=None)}-{max(loads, default=None)}"
        )
    header = (
        f"{'rate/s':>7}  {'system':7} {'thr/s':>8} {'p50':>6} {'p95':>6} {'p99':>7} {'max':>7}"
        f" {'act p50':>7} {'act p99':>7} {'CT p50':>6} {'CT p99':>6} {'cpu':>5} {'µs/ev':>6}"
        f" {'rss MB':>7}"
    )
    lines += ["", "latency in ms (CT: decision CreateTime - trigger CreateTime)", header]
    lines.append("-" * len(header))
    for rate, row in s["by_rate"].items():
        for name in names:
            f = row[name]
            lines.append(
                f"{rate:>7}  {name:7} {_n(f['throughput_per_second'], 8, 0)} {_n(f['p50_ms'], 6)}"
                f" {_n(f['p95_ms'], 6)} {_n(f['p99_ms'], 7)} {_n(f['max_ms'], 7)}"
                f" {_n(f['action_p50_ms'], 7)} {_n(f['action_p99_ms'], 7)}"
                f" {_n(f['create_p50_ms'], 6)} {_n(f['create_p99_ms'], 6)}"
                f" {_n(f['cpu_cores'], 5, 2)} {_n(f.get('cpu_us_per_event'), 6, 0)}"
                f" {_n(f['rss_mb_max'], 7, 0)}"
            )
        if "ratio" in row:
            r = row["ratio"]
            lines.append(
                f"{'':7}  {'/echo':7} {'':8} {_x(r['p50_ms']):>6} {'':6} {_x(r['p99_ms']):>7}"
                f" {'':7} {'':7} {'':7} {_x(r['create_p50_ms']):>6} {_x(r['create_p99_ms']):>6}"
                f" {_x(r['cpu_cores']):>5}"
            )
    m = s["max"]
    lines += ["", "max sustained (median of runs; runs; CPU per event there):"]
    for name, best in m.items():
        if name in ("ratio", "nudge_over"):
            continue
        over = m["nudge_over"].get(name)
        lines.append(
            f"  {name:7} {_n(best['median'], 8, 0)}/s  runs {best['runs']}  "
            f"{_n(best['at_max'].get('cpu_us_per_event'), 6, 0)} µs/event"
            + (f"  nudge/{name} {_x(over)} (median of per-run ratios)" if over is not None else "")
        )
    lines.append("")
    for name, check in s["targets"].items():
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[check["pass"]]
        lines.append(
            f"{verdict:>12}  {name}: {check['value']} (target {check['target']}; "
            f"{check.get('what', '')})"
        )
    return "\n".join(lines)


def _n(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width},.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


#: One colour per system in the chart.
COLOURS = {
    "nudge": "tab:blue", "variant": "tab:orange", "echo": "tab:gray",
    "faust": "tab:green", "quix": "tab:purple",
}  # fmt: skip


def chart_points(result: dict, name: str) -> list[tuple[float, float, float, bool]]:
    """Per offered rate (fixed and search trials), medians over runs of
    (processed/s, p50, p99) and whether every trial there was sustained."""
    by_rate: dict[int, list[dict]] = {}
    for trial in result["trials"]:
        if trial["system"] == name and trial["latency_ms"]["p50"] is not None:
            by_rate.setdefault(trial["rate"], []).append(trial)
    return [
        (
            statistics.median(t["throughput_per_second"] for t in trials),
            statistics.median(t["latency_ms"]["p50"] for t in trials),
            statistics.median(t["latency_ms"]["p99"] for t in trials),
            all(t["sustained"] for t in trials),
        )
        for _rate, trials in sorted(by_rate.items())
    ]


def draw(result: dict, path: Path) -> None:
    """Latency (p50, p99) against processed rate, every system, medians over
    runs per offered rate; hollow markers where the rate was not sustained."""
    with chart(path) as ax:
        for name in result["params"].get("systems") or ["nudge", "echo"]:
            colour = COLOURS.get(name, "black")
            points = chart_points(result, name)
            for column, style in ((1, "-"), (2, "--")):
                ax.plot([p[0] for p in points], [p[column] for p in points], style, color=colour,
                        label=f"{name} {'p50' if column == 1 else 'p99'}", linewidth=1)  # fmt: skip
                for point in points:
                    ax.plot(point[0], point[column], "o", color=colour, markersize=4,
                            markerfacecolor=colour if point[3] else "none")  # fmt: skip
            best = result["summary"]["max"].get(name, {}).get("median")
            if best:
                ax.axvline(best, color=colour, linestyle=":", linewidth=1)
        ax.axhline(TARGET_P99_MS, color="tab:red", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("processed events/s (hollow: rate not sustained; dotted: max sustained)")
        ax.set_ylabel("event -> decision at a consumer (ms)")
        ax.set_title("nudge, its peers and a bare aiokafka echo: one broker, one run set")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)


def systems_arg(text: str) -> list[str]:
    """--systems: known names, each once, in the order given."""
    names = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SYSTEMS)}; got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench.pipeline", __doc__, DEFAULT_OUT)
    parser.add_argument(
        "--systems", type=systems_arg, default=list(SYSTEMS),
        help=f"comma-separated, of {','.join(SYSTEMS)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 2000, 5000]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--search-seconds", type=float, default=12.0)
    parser.add_argument("--max-start", type=int, default=5000, help="first rate of the search")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-max", action="store_true", help="skip the maximum search")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker in run 0's fixed-rate trials"
    )
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="K=V", help="extra worker variable"
    )
    parser.add_argument(
        "--variant", action="append", default=[], metavar="K=V",
        help="also measure workers with this variable (fixed rates only)",
    )  # fmt: skip
    parser.add_argument("--echo-loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    result = run(args)
    result["machine"] = machine_info(None, load)
    write_json(result, args.out)
    draw(result, args.out.with_suffix(".png"))
    print()
    print(render(result))
    print(f"\nresult written to {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
