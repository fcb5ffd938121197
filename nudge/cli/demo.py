"""`nudge demo` (what `make run` runs): a real broker, a real worker, and a
short story of six shoppers that shows nudge acting, holding back and
explaining why, with the latency of every decision."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.ops import local_kafka
from nudge.testing import EventPublisher, OutputReader, Received, WorkerProcess

OUTPUTS = ("actions", "suppressions", "deadletter")


def afternoon_zone(now: datetime) -> str:
    """A fixed-offset IANA zone where it is early afternoon at `now`: the
    shoppers live there, so the demo shows decisions at any hour instead of
    messages held for the night (quiet hours are read in each person's zone)."""
    offset = (14 - now.astimezone(UTC).hour + 12) % 24 - 12
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def story(now: datetime) -> list[tuple[str, dict | bytes, str]]:
    """(topic kind, event, what a reader should expect) in publishing order."""
    n = iter(range(1, 1000))
    zone = afternoon_zone(now)

    def at(minutes_ago: float = 0) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat()

    def ev(kind_type: str, who: str, minutes_ago: float = 0, **fields) -> dict:
        return {
            "event_id": f"demo-{next(n):03d}",
            "type": kind_type,
            "customer_id": who,
            "ts": at(minutes_ago),
            **fields,
        }

    def consent(who: str, channel: str, status: str = "granted") -> tuple:
        event = ev(
            "consent",
            who,
            60,
            channel=channel,
            purpose="marketing",
            status=status,
            source="preference_center",
        )
        return ("consent", event, "")

    def view(who: str, category: str, note: str = "", minutes_ago: float = 0) -> tuple:
        event = ev(
            "product_view",
            who,
            minutes_ago,
            product_id=f"sku-{category}-{next(n)}",
            category=category,
            price=39.0,
        )
        return ("clickstream", event, note)

    def lives_in_the_afternoon(who: str, **fields) -> tuple:
        return ("preferences", ev("preferences", who, 61, time_zone=zone, **fields), "")

    return [
        *(lives_in_the_afternoon(who) for who in ("ben", "cara", "dan", "eve", "fay")),
        consent("anna", "email"),
        lives_in_the_afternoon("anna", preferred_channel="email"),
        view("anna", "lighting", minutes_ago=3),
        view("anna", "lighting", minutes_ago=2),
        view("anna", "lighting", "3rd lamp viewed: inspiration on her preferred channel"),
        consent("ben", "email"),
        (
            "consent",
            ev(
                "consent",
                "ben",
                1,
                channel="all",
                purpose="marketing",
                status="revoked",
                source="unsubscribe_link",
            ),
            "",
        ),
        view("ben", "lighting", minutes_ago=2),
        view("ben", "lighting", minutes_ago=1),
        view("ben", "lighting", "opted out a minute ago: explained suppression"),
        consent("cara", "email"),
        consent("cara", "push"),
        (
            "purchases",
            ev(
                "purchase",
                "cara",
                10,
                order_id="ord-1",
                items=[
                    {
                        "product_id": "sku-af-300",
                        "category": "air_filters",
                        "price": 29.9,
                        "quantity": 2,
                    }
                ],
            ),
            "bought filters: order confirmation (transactional)",
        ),
        view("cara", "air_filters", "just bought filters: no filter offer (cooldown)"),
        consent("dan", "push"),
        (
            "clickstream",
            ev("add_to_cart", "dan", 70, product_id="sku-sofa", category="furniture", price=499.0),
            "left a sofa in the cart over an hour ago: cart reminder",
        ),
        ("clickstream", ev("session_start", "dan"), "back on the site: no second reminder"),
        (
            "purchases",
            ev(
                "purchase",
                "eve",
                order_id="ord-2",
                items=[{"product_id": "sku-rake", "category": "garden", "price": 19.0}],
            ),
            "no marketing consent, still gets her order confirmation",
        ),
        ("clickstream", b'{"event_id": "demo-bad", "type": "page_view", "ts": ', "malformed"),
        (
            "purchases",
            ev(
                "purchase",
                "fay",
                order_id="ord-3",
                items=[{"product_id": "sku-bulb", "category": "lighting", "price": 4.5}],
            ),
            "the worker kept going after the bad record",
        ),
    ]


def run_demo(
    port: int, data_dir: Path, keep_running: bool = False, bootstrap: str | None = None
) -> int:
    """The story against a local broker (started here unless one runs in
    `data_dir`), or against `bootstrap` if given; the worker stops at the end
    unless `keep_running`."""
    kafka_dir = data_dir / "kafka"
    started_kafka = bootstrap is None and not local_kafka.is_running(kafka_dir)
    if started_kafka:
        print(f"starting Kafka {local_kafka.KAFKA_VERSION} on 127.0.0.1:{port} ...", flush=True)
        local_kafka.start(port, kafka_dir)
    if bootstrap is None:
        bootstrap = f"127.0.0.1:{local_kafka.running_port(kafka_dir) or port}"
    prefix = f"demo{uuid.uuid4().hex[:6]}."
    worker = WorkerProcess(bootstrap, prefix, data_dir / "demo" / prefix.rstrip("."))
    try:
        print("starting a nudge worker ...", flush=True)
        worker.start()
        now = datetime.now(UTC)
        scenario = story(now)
        publisher = EventPublisher(bootstrap, prefix)
        produced_ms = {}
        for kind, event, _ in scenario:
            # One at a time, as life happens: a purchase is in Kafka before
            # the next page view (topics are not ordered with each other).
            key = None if isinstance(event, dict) else b"zed"
            metadata = publisher.send(kind, event, key=key).get(10)
            if isinstance(event, dict):
                produced_ms[event["event_id"]] = metadata.timestamp
            time.sleep(0.02)
        publisher.close()
        notes = {e["event_id"]: note for _, e, note in scenario if isinstance(e, dict) and note}
        reader = OutputReader(bootstrap, prefix, OUTPUTS)
        expected = len(notes) + 1  # every noted trigger decides; plus the deadletter
        try:
            reader.wait_for(lambda got: len(got) >= expected, timeout=60)
        except TimeoutError:
            print(f"only {len(reader.received)} of {expected} decisions arrived in 60 s")
        reader.poll(0.5)
        print_decisions(reader.received, notes, produced_ms)
        reader.close()
        print(f"\nworker log: {worker.log_path}")
        if keep_running:
            return hold(worker)
        print("(nudge demo --keep-running keeps the worker up, to look at its /metrics)")
    finally:
        worker.stop()
        if started_kafka:
            local_kafka.stop(kafka_dir)
    return 0


def hold(worker: WorkerProcess) -> int:
    """Keep the worker up until Ctrl-C: its /metrics address is only worth
    printing while something answers there."""
    print(
        f"metrics:    {worker.url}/metrics\nthe worker keeps running; Ctrl-C stops it", flush=True
    )
    try:
        while worker.process is not None and worker.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    print("the worker stopped by itself: see its log", flush=True)
    return 1


def print_decisions(
    received: list[Received], notes: dict[str, str], produced_ms: dict[str, int]
) -> None:
    print(f"\n{'latency':>8}  {'outcome':<11} {'who':<5} {'trigger':<14} decision")
    for record in sorted(received, key=lambda r: r.timestamp_ms):
        value = record.value
        if record.kind == "deadletter":
            print(
                f"{'':>8}  {'DEADLETTER':<11} {'':<5} {'':<14} {value['reason']}: "
                f"{value['error'][:60]}"
            )
            continue
        latency = record.timestamp_ms - produced_ms[value["trigger_event_id"]]
        who = value["customer_id"]
        if record.kind == "actions":
            when = f", after {value['send_after'][11:16]} UTC" if value["send_after"] else ""
            what = f"{value['action_id']} via {value['channel']}{when}"
            outcome = "ACTION"
        else:
            what = ", ".join(value["reasons"])
            outcome = "SUPPRESSED"
        print(f"{latency:>5} ms  {outcome:<11} {who:<5} {value['trigger_type']:<14} {what}")
        note = notes.get(value["trigger_event_id"])
        if note:
            print(f"{'':>8}  {'':<11} {'':<5} {'':<14} ({note})")
