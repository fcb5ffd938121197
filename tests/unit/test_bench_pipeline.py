"""The pipeline benchmark's pure parts: the traffic it sends is valid input,
each trial's customers are its own, the maximum search is a search. No broker,
no timing assertions."""

from __future__ import annotations

from datetime import UTC, datetime

from bench import pipeline
from bench.million import grants
from schemas.codec import decode_event

NOW = datetime.now(UTC)


def encoded(template: pipeline.Template) -> bytes:
    stamp = f'"{pipeline._iso_ms(int(NOW.timestamp() * 1000))}"'.encode()
    return template.head + stamp + template.tail


def test_trial_traffic_is_valid_input_with_the_trial_s_own_ids() -> None:
    items = pipeline.templates(pipeline.build_stream(3000), "t1")
    assert 2900 <= len(items) <= 3100
    for item in items:
        event = decode_event(item.kind, encoded(item), item.key.encode(), NOW)
        assert event.event_id.startswith("t1.")
        assert abs((event.ts - NOW).total_seconds()) < 1  # stamped at send time
    assert {i.kind for i in items} >= {"clickstream", "purchases", "consent", "feedback"}


def test_consent_is_granted_once_to_every_customer_of_the_trial() -> None:
    items = pipeline.templates(pipeline.build_stream(3000), "t2")
    grants_ = pipeline.consent_grants(items, "t2")
    customers = {
        e.customer_id
        for i in items
        if (e := decode_event(i.kind, encoded(i), i.key.encode(), NOW)).customer_id
        and i.kind != "identity"
    }
    assert {g.key for g in grants_} == customers
    for grant in grants_:
        event = decode_event("consent", encoded(grant), grant.key.encode(), NOW)
        assert (event.channel, event.purpose, event.status) == ("all", "marketing", "granted")


def test_million_grants_are_valid_consent_events() -> None:
    for grant in grants(5, 3):
        event = decode_event("consent", encoded(grant), grant.key.encode(), NOW)
        assert event.customer_id == grant.key and event.status == "granted"


def test_max_search_grows_then_bisects_to_the_highest_sustained_rate() -> None:
    tried = []

    def trial(rate: int) -> dict:
        tried.append(rate)
        return {"rate": rate, "sustained": rate <= 4100}

    best, trials = pipeline.find_max(trial, start=1000)
    assert best is not None and 3500 <= best <= 4100
    assert tried[:4] == [1000, 1500, 2250, 3375]
    assert len(trials) == len(tried)


def test_max_search_walks_down_when_the_start_fails() -> None:
    best, _ = pipeline.find_max(lambda r: {"rate": r, "sustained": r <= 700}, start=5000)
    assert best is not None and best <= 700


def test_percentiles_are_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert pipeline.summary(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0,
                                        "count": 100}  # fmt: skip
    assert pipeline.percentile([], 50) is None
