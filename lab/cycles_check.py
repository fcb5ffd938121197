"""Check learned purchase cycles on real purchase histories, split by time.

    python -m nudge.lab.cycles_check --fetch                  # CDNOW, fetched once
    python -m nudge.lab.cycles_check --transactions FILE --cutoff 1997-12-31
    python -m nudge.lab.cycles_check --log events.jsonl       # a nudge event log

The model is fitted on the purchases before the cutoff only (open gaps are
censored at the cutoff), then every repeat purchase after the cutoff is
judged as the worker would have judged it at the previous purchase: its
own-interval counts are those the state held then (policy/cycles.py), the
category parameters those fitted before the cutoff. That split is also the
leakage guard: the same model fitted on the whole history is scored too, and
reported as what it is, a flattering upper bound.

Reported, for the learned cooldown (with the policy's floor) and fixed
cooldowns of 14 and 60 days: the share of real repeat purchases that came
while the cooldown was still silencing the category; for the learned due
time: the share of reminders that would have arrived before the real
repurchase, and how long before. The judging is models/cycles_gate.py's:
`nudge train` gates the cycles it serves on the same judgement.

The real data set: CDNOW (Fader and Hardie), 69,659 purchase days of 23,570
people who first bought in the first quarter of 1997, to June 1998: customer
id, date, CDs and dollars, no categories (one category, `music`). It ships in
the `lifetimes` package (MIT licensed) on PyPI; `--fetch` downloads that
wheel with pip into .cache/cycles/, checks its SHA-256 and reads the file
from it. The data set's own terms are not stated, so it is not vendored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.models.cycles import Purchase, PurchaseCycles, histories, purchases_from_log
from nudge.models.cycles_gate import Cooldown, judge
from nudge.policy.clock import DAY
from nudge.policy.cycles import intervals
from nudge.schemas.eventlog import read_log

LIFETIMES_WHEEL = "Lifetimes-0.11.3-py3-none-any.whl"
LIFETIMES_SHA256 = "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8"
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"
CDNOW_CUTOFF = "1997-12-31"  # a year to learn from, half a year to judge
CACHE = Path(".cache/cycles")
#: Fixed cooldowns to compare with, the same for every category.
FIXED: dict[str, Cooldown] = {
    f"fixed_{days:g}d": lambda _category, days=days: days for days in (14.0, 60.0)
}


def fetch_cdnow(cache: Path = CACHE) -> Path:
    """CDNOW_master.txt from the lifetimes wheel on PyPI, downloaded once."""
    target = cache / "CDNOW_master.txt"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / LIFETIMES_WHEEL
    if not wheel.is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "lifetimes==0.11.3",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(cache),
            ],
            check=True,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != LIFETIMES_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {digest} is not the expected {LIFETIMES_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(CDNOW_MEMBER))
    return target


def read_transactions(path: Path, category: str = "music") -> list[Purchase]:
    """CDNOW's format: customer id, YYYYMMDD, quantity, amount, whitespace
    separated; a header line is skipped. Every row is a purchase day."""
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        day = datetime.strptime(parts[1], "%Y%m%d").replace(tzinfo=UTC)
        found.append(Purchase(parts[0], category, day.timestamp()))
    return found


def report(
    purchases: list[Purchase],
    cutoff: float,
    source: str,
    cooldown_quantile: float = 0.1,
    due_quantile: float = 0.5,
    floor_days: float = 3.0,
) -> dict[str, Any]:
    """Fit before the cutoff, judge after it; the whole-history fit beside it."""
    before = [p for p in purchases if p.at <= cutoff]
    params = {"cooldown_quantile": cooldown_quantile, "due_quantile": due_quantile}
    honest = PurchaseCycles(**params).fit(before, end=cutoff)
    leaky = PurchaseCycles(**params).fit(purchases)
    judged = judge(honest, purchases, cutoff, FIXED, floor_days)
    flattered = judge(leaky, purchases, cutoff, FIXED, floor_days)
    n = judged.repeats
    all_days = [d for p in histories(purchases).values() for t in p.values() for d in intervals(t)]
    return {
        "source": source,
        "people": len({p.customer for p in purchases}),
        "purchases": len(purchases),
        "cutoff": _iso(cutoff),
        "end": _iso(max(p.at for p in purchases)),
        "fitted_on": {"purchases": len(before), "end": _iso(honest.end_)},
        "repeat_intervals_days": _quartiles(all_days),
        "model": {**params, "floor_days": floor_days, "categories": honest.summary()},
        "judged_repeats": n,
        "silenced_share": {k: round(v / n, 4) for k, v in judged.silenced.items()} if n else {},
        "reminder_before_repurchase_share": round(judged.reminded_before / n, 4) if n else None,
        "reminder_lead_days_median": _median(judged.leads),
        "reminder_late_days_median": _median(judged.late_by),
        "reminders_after_cutoff": {
            "followed_by_repurchase": judged.reminders_answered,
            "no_repurchase_by_end": judged.reminders_unanswered,
        },
        "mean_log_density": {
            "honest": round(judged.log_density / n, 4) if n else None,
            "honest_category_only": round(judged.log_density_category / n, 4) if n else None,
            "whole_history_fit": round(flattered.log_density / n, 4) if n else None,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """The short page a reviewer reads."""
    share = result["silenced_share"]
    cats = result["model"]["categories"]
    q = result["repeat_intervals_days"]
    lines = [
        f"# Learned purchase cycles on {result['source']}",
        "",
        f"{result['people']:,} people, {result['purchases']:,} purchases to {result['end']};"
        f" fitted on the {result['fitted_on']['purchases']:,} up to {result['cutoff']},"
        f" judged on the {result['judged_repeats']:,} repeat purchases after it.",
        f"Days between purchases (all history): median {q['median']}, middle half"
        f" {q['q1']}-{q['q3']}.",
        "",
        "| cooldown | repeat purchases that came while it silenced the category |",
        "|---|---|",
    ]
    for name, value in share.items():
        label = name.replace("fixed_", "fixed ").replace("learned", "learned (with floor)")
        lines.append(f"| {label} | {value:.1%} |")
    lines += [
        "",
        f"Reminders at the learned due time (quantile {result['model']['due_quantile']}):"
        f" {result['reminder_before_repurchase_share']:.1%} arrive before the real repurchase"
        f" (median {result['reminder_lead_days_median']} days before); the others come"
        f" a median {result['reminder_late_days_median']} days after it.",
        "Reminders falling due after the cutoff:"
        f" {result['reminders_after_cutoff']['followed_by_repurchase']:,} were followed by a"
        f" repurchase, {result['reminders_after_cutoff']['no_repurchase_by_end']:,} saw none"
        " by the end of the data.",
        "",
        "Mean log predictive density of the judged repeats (higher is better): honest fit"
        f" {result['mean_log_density']['honest']} (the category's cycle alone:"
        f" {result['mean_log_density']['honest_category_only']}), a fit that saw the judged"
        f" period {result['mean_log_density']['whole_history_fit']} (leakage flatters).",
        "",
        "| category | cooldown days | due days | median | purchases never followed | intervals |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in cats.items():
        lines.append(
            f"| {name} | {row['cooldown_days']} | {row['due_days']} | {row['median_days']}"
            f" | {row['never_again']:.1%} | {row['intervals']:,} |"
        )
    return "\n".join(lines) + "\n"


def _quartiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"q1": math.nan, "median": math.nan, "q3": math.nan}
    q1, median, q3 = statistics.quantiles(values, n=4)
    return {"q1": round(q1, 1), "median": round(median, 1), "q3": round(q3, 1)}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _iso(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nudge.lab.cycles_check", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fetch", action="store_true", help="CDNOW from the lifetimes wheel")
    source.add_argument("--transactions", type=Path, help="CDNOW-format transactions file")
    source.add_argument("--log", type=Path, help="a nudge event log (JSON Lines)")
    parser.add_argument("--cutoff", help="YYYY-MM-DD (default: CDNOW's, or 3/4 into a log)")
    parser.add_argument("--cooldown-quantile", type=float, default=0.1)
    parser.add_argument("--due-quantile", type=float, default=0.5)
    parser.add_argument("--floor-days", type=float, default=3.0)
    parser.add_argument("--out", type=Path, help="write result.json and README.md here")
    args = parser.parse_args(argv)
    if args.log:
        purchases, name = purchases_from_log(read_log(args.log)), args.log.name
    else:
        path = args.transactions or fetch_cdnow()
        purchases, name = read_transactions(path), "CDNOW" if args.fetch else path.name
    if args.cutoff:
        cutoff = datetime.fromisoformat(args.cutoff).replace(tzinfo=UTC).timestamp()
    elif args.log:
        times = sorted(p.at for p in purchases)
        cutoff = times[0] + 0.75 * (times[-1] - times[0])
    else:
        cutoff = datetime.fromisoformat(CDNOW_CUTOFF).replace(tzinfo=UTC).timestamp()
    cutoff = cutoff + DAY - 1 if args.cutoff or not args.log else cutoff  # the whole day
    result = report(
        purchases, cutoff, name, args.cooldown_quantile, args.due_quantile, args.floor_days
    )
    text = markdown(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "README.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
