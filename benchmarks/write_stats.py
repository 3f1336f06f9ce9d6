"""Summaries of the write-path rounds (benchmarks/write_path.py): medians over rounds, the
after/before ratio from paired rounds, and the markdown table of docs/benchmarks.md."""

from __future__ import annotations

import math
import statistics
from typing import Any


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (p99 of 2,000 steps is the 1,980th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def round_summary(seconds: float, steps: int, latencies: list[float]) -> dict[str, float]:
    """One round: throughput over the whole loop, and the latency of one unit (a step's two
    statements, or a batch's transaction) in milliseconds."""
    return {
        "steps": steps,
        "seconds": seconds,
        "steps_per_second": steps / seconds if seconds else 0.0,
        "latency_ms_median": statistics.median(latencies) * 1000,
        "latency_ms_p99": percentile(latencies, 0.99) * 1000,
    }


def side_summary(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """A side over its rounds: the median of each figure (the machine is shared: one slow
    round moves a median little)."""
    return {
        "steps_per_second": statistics.median(r["steps_per_second"] for r in rounds),
        "latency_ms_median": statistics.median(r["latency_ms_median"] for r in rounds),
        "latency_ms_p99": statistics.median(r["latency_ms_p99"] for r in rounds),
        "rounds": rounds,
    }


def paired_ratio(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, Any]:
    """after/before time per step, round by round (the two ran back to back, alternating
    which went first), and the median of those ratios: 1.10 means chained takes 10% longer."""
    ratios = [
        b["steps_per_second"] / a["steps_per_second"] for b, a in zip(before, after, strict=True)
    ]
    return {"median": statistics.median(ratios), "rounds": ratios}


def table(results: dict[str, Any]) -> str:
    after = results["revisions"]["after"]
    source = results.get("source") or {}
    if source.get("commit"):
        dirty = " + uncommitted" if source.get("uncommitted_in_upgrade") else ""
        after = f"{after} at {source['commit']}{dirty}"
    rows = [
        "| write | server | side | steps/s | median (ms) | p99 (ms) | after / before |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    parts = (
        ("autocommit", "autocommit, 2 statements per step", "per step"),
        ("batched", f"batched, {results['batch_size']:,} steps per transaction", "per txn"),
    )
    for key, label, unit in parts:
        for server, sides in results[key].items():
            proof = results["verification"][server][key]["after"]
            chained = "" if proof["chained_steps"] == proof["steps"] else ", not chained"
            for side in ("before", "after"):
                figures = sides[side]
                name = (
                    "before (AOS as deployed)" if side == "before" else f"after ({after}{chained})"
                )
                ratio = f"{sides['ratio']['median']:.2f}x" if side == "after" else ""
                rows.append(
                    f"| {label} | {server} | {name} | {figures['steps_per_second']:,.0f} | "
                    f"{figures['latency_ms_median']:.2f} {unit} | "
                    f"{figures['latency_ms_p99']:.2f} | {ratio} |"
                )
    return "\n".join(rows)
