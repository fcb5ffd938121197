"""The soak's pure parts: its traffic keeps bringing fresh customers, and its
verdict tells a growing backlog, a leak and a noisy log from a steady run.
No broker, no timing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

from bench import soak
from bench.pipeline import Samples, Template, _iso_ms
from nudge.schemas.codec import decode_event

NOW = datetime.now(UTC)
RATE = 300


def decoded(item: Template):
    stamp = f'"{_iso_ms(int(NOW.timestamp() * 1000))}"'.encode()
    return decode_event(item.kind, item.head + stamp + item.tail, item.key.encode(), NOW)


def test_traffic_is_valid_and_brings_fresh_customers_granted_before_they_act() -> None:
    items = soak.soak_traffic(50, 150, "t9", chunk_s=60)
    assert len(items) == 50 * 150
    chunks: dict[str, set[str]] = {}
    granted: set[str] = set()
    for item in items:
        event = decoded(item)
        assert event.event_id.startswith("t9.")
        chunk = item.key.split(".")[1]
        chunks.setdefault(chunk, set()).add(item.key)
        if item.kind == "consent" and ".grant-" in event.event_id:
            granted.add(item.key)
        elif item.kind != "identity" and event.customer_id:
            assert item.key in granted, "a customer acted before their grant"
    assert sorted(chunks) == ["0", "1", "2"]  # 150 s in chunks of 60 s
    for a, b in itertools.combinations(chunks.values(), 2):
        assert not a & b  # every chunk's customers are new
    assert len(granted) > 100


def test_a_grant_goes_just_before_its_customer_s_first_event() -> None:
    def t(kind: str, key: str) -> Template:
        return Template(kind, key, b"", b"")

    items = [t("clickstream", "a"), t("clickstream", "b"), t("clickstream", "a")]
    out = soak.granted_first(items, [t("consent", "b"), t("consent", "a")])
    assert [(i.kind, i.key) for i in out] == [
        ("consent", "a"), ("clickstream", "a"), ("consent", "b"), ("clickstream", "b"),
        ("clickstream", "a"),
    ]  # fmt: skip


def test_slope_is_least_squares() -> None:
    assert soak.linear_slope([0, 1, 2, 3], [1, 3, 5, 7]) == 2.0
    assert soak.linear_slope([5], [1]) is None
    assert soak.linear_slope([1, 1], [1, 2]) is None


def windows(seconds: int) -> list[float]:
    return [float(x) for x in range(10, seconds + 1, 10)]


def test_lag_that_follows_the_commit_cadence_is_not_growth() -> None:
    t = windows(600)
    sawtooth = [(i * 397) % 900 for i in range(len(t))]  # up to 3 s of traffic, no trend
    trend = soak.lag_trend(t, sawtooth, RATE)
    assert trend["growing"] is False
    assert trend["max"] == max(sawtooth) and trend["measurements"] == 60


def test_a_backlog_that_grows_is_growth() -> None:
    t = windows(600)
    trend = soak.lag_trend(t, [round(20 * x) for x in t], RATE)  # 20/s more than processed
    assert trend["growing"] is True
    assert trend["second_half_slope_per_s"] == 20.0


def test_a_steep_but_small_lag_is_under_the_floor() -> None:
    t = windows(60)
    assert soak.lag_trend(t, [0, 0, 0, 200, 600, 1000], RATE)["growing"] is False


def test_lag_without_measurements_has_no_verdict() -> None:
    t = windows(60)
    trend = soak.lag_trend(t, [None, None, None, None, 5, None], RATE)
    assert trend["growing"] is None and trend["measurements"] == 1


def test_rss_that_levels_off_is_bounded() -> None:
    t = windows(600)
    rss = [min(250 + x / 2, 320) for x in t]  # warms up, then flat
    bound = soak.rss_bound(t, rss, 0.2)
    assert bound["bounded"] is True
    assert (bound["start_mb"], bound["end_mb"], bound["max_mb"]) == (255, 320, 320)
    assert bound["last_half_slope_mb_per_min"] == 0.0


def test_rss_that_keeps_growing_is_not_bounded() -> None:
    t = windows(600)
    bound = soak.rss_bound(t, [250 + x / 2 for x in t], 0.2)
    assert bound["bounded"] is False
    assert bound["growth"] > 0.2 and bound["last_half_slope_mb_per_min"] == 30.0


def test_rss_with_too_few_samples_has_no_verdict() -> None:
    assert soak.rss_bound([10, 20], [300, 310], 0.2)["bounded"] is None


def test_log_levels_of_worker_lines() -> None:
    assert soak.log_level("[2026-11-22 17:31:52,253] [1734] [WARNING] deadletter: x") == "warning"
    assert soak.log_level("[2026-11-22 17:31:52,253] [1734] [ERROR] unexpected error") == "error"
    assert soak.log_level("[2026-11-22 17:31:52,253] [1734] [CRITICAL] gone") == "error"
    assert soak.log_level("Traceback (most recent call last):") == "error"
    assert soak.log_level("[2026-11-22 17:31:52,253] [1734] [INFO] ready") is None
    assert soak.log_level("a DeprecationWarning: about ERRORS") is None


def test_log_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    tail = soak.LogTail(path)
    assert tail.read() == []
    path.write_text("one\ntw")
    assert tail.read() == ["one"]
    with path.open("a") as log:
        log.write("o\nthree\n")
    assert tail.read() == ["two", "three"]
    assert tail.read() == []


def test_lag_and_inputs_are_read_from_the_metrics_page() -> None:
    page = "\n".join([
        "# HELP nudge_consumer_lag Messages not yet committed",
        'nudge_consumer_lag{partition="0",topic="clickstream"} 12.0',
        'nudge_consumer_lag{partition="1",topic="identity-merges"} 3.0',
        'nudge_events_consumed_total{topic="clickstream",type="page_view"} 100.0',
        'nudge_events_consumed_total{topic="identity-merges",type="merge"} 7.0',
        'nudge_events_consumed_created{topic="clickstream",type="page_view"} 1.7e9',
    ])  # fmt: skip
    assert soak.total_lag(page) == 15
    assert soak.inputs_consumed(page) == 100
    assert soak.total_lag("nudge_events_consumed_total 1.0") is None


def test_latencies_go_to_the_window_their_trigger_was_sent_in() -> None:
    rows = [(100.050, 100_000, 0, False), (110.020, 110_000, 0, True), (109.5, 109_400, 0, False),
            (125.0, 120_500, 0, False), (99.0, 98_000, 0, False)]  # fmt: skip
    assert soak.by_window(rows, [100.0, 110.0, 120.0]) == [[50.0, 100.0], [20.0]]


def test_the_schedule_counts_sends() -> None:
    assert soak.scheduled(10.0, first=10.0, rate=300, sent=900) == 0
    assert soak.scheduled(11.5, first=10.0, rate=300, sent=900) == 450
    assert soak.scheduled(99.0, first=10.0, rate=300, sent=900) == 900


def test_verdict_names_every_failure() -> None:
    t = windows(600)
    steady = soak.lag_trend(t, [400] * len(t), RATE)
    flat = soak.rss_bound(t, [300.0] * len(t), 0.2)
    assert soak.verdict(steady, flat, [], 1000, 1000) == []
    growing = soak.lag_trend(t, [round(20 * x) for x in t], RATE)
    leaking = soak.rss_bound(t, [250 + x / 2 for x in t], 0.2)
    failures = soak.verdict(growing, leaking, ["[ERROR] boom"], 1000, 990)
    assert [f.split(" ", 2)[:2] for f in failures] == [
        ["lag", "grows:"], ["RSS", "grows:"], ["1", "ERROR/WARNING/Traceback"], ["10", "of"],
    ]  # fmt: skip
    unknown = soak.lag_trend(t[:2], [None, None], RATE)
    assert soak.verdict(unknown, flat, [], 1, 1)[0].startswith("lag unknown")


def test_summary_of_a_steady_soak_passes() -> None:
    samples = Samples()
    start = 1000.0
    marks = [start + x for x in [0.0, *windows(60), 61.0]]  # before, 6 windows, after the drain
    for i, when in enumerate(marks):
        samples.t.append(when)
        samples.processed.append(min(i, 6) * 3000)
        samples.cpu_s.append(i * 4.0)  # 0.4 cores in every 10 s window
        samples.rss.append(300 * 2**20)
    watch = soak.Watch(
        lag=[None, 800, 500, 900, 700, 600, 800, 0],
        log=[["[WARNING] at start-up"], [], [], [], [], [], [], []],
        load1=[1.0] * len(marks),
    )
    rows = [(start + x + 0.02, round((start + x) * 1000), 0, x % 2 == 0) for x in range(60)]
    raw = {
        "samples": samples,
        "watch": watch,
        "rows": rows,
        "first": start,
        "last": start + 60,
        "sent": 18_000,
        "lateness": 0.001,
        "processed": 18_000,
        "drain_seconds": 0.5,
    }
    result = soak.summarize(raw, RATE, 0.2)
    assert result["verdict"] == {"pass": True, "failures": []}
    assert [w["offered"] for w in result["windows"]] == [3000] * 6
    assert [w["decisions"] for w in result["windows"]] == [10] * 6
    assert {w["cpu_cores"] for w in result["windows"]} == {0.4}
    assert {w["p50_ms"] for w in result["windows"]} == {20.0}
    s = result["summary"]
    assert s["cpu_cores_mean"] == 0.4
    assert s["cpu_us_per_event"] == round(28.0 / 18_000 * 1e6, 1)  # drain mark included
    assert s["log"]["before_traffic"] == ["[WARNING] at start-up"] and s["log"]["warnings"] == 0
    assert s["lag"]["max"] == 900 and s["latency_ms"]["count"] == 60
    params = {"minutes": 1, "rate": RATE, "partitions": 8, "subjects": 10, "rate_note": "x"}
    assert soak.render({**result, "params": params}).endswith("PASS")
