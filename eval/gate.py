"""Regression gate: compare an evaluation report with a baseline report and fail on drops.

    table, failed = compare(current, baseline, ["hit@5", "refusal_accuracy"], tolerance=0.02)

Metrics are looked up per configuration in `report["results"][config]["overall"]` and, when the report
was run with distractors, in `report["distractors"]["results"][config]` too (compared as
"<config> +distractors": a baseline with distractor numbers fails a current report without them); a dotted name
(`latency_ms.total.p95`) is a path inside the configuration's entry instead. Rates (0..1) use an absolute
tolerance (0.02 = two percentage points). Latencies (any name containing "latency") use a relative one
(0.02 = 2 % slower) and, like `false_refusal_rate`, are better when lower. Only configurations present in
both reports are compared; a gated metric the baseline has but the current report lacks is a failure, one
the baseline lacks is reported as new, and a metric that is null on either side (e.g. faithfulness without
an LLM judge) is reported as not measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_GATE_METRICS = ("hit@5", "refusal_accuracy")
LOWER_IS_BETTER = frozenset({"false_refusal_rate", "errors"})


def load_report(report: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A report dict, read from `report.json` (or its folder) when given a path."""
    if isinstance(report, dict):
        return report
    path = Path(report)
    if path.is_dir():
        path = path / "report.json"
    return json.loads(path.read_text(encoding="utf-8"))


def parse_metrics(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'hit@5, refusal_accuracy' -> ['hit@5', 'refusal_accuracy']; empty -> the defaults."""
    if text is None:
        return list(DEFAULT_GATE_METRICS)
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [m.strip() for m in items if m and m.strip()]
    return out or list(DEFAULT_GATE_METRICS)


DISTRACTOR_SUFFIX = " +distractors"


def flat_results(report: dict[str, Any]) -> dict[str, Any]:
    """Every configuration entry of a report: seeds-only under its name, with distractors under name +distractors."""
    out = dict(report.get("results", {}))
    for name, entry in (report.get("distractors") or {}).get("results", {}).items():
        out[name + DISTRACTOR_SUFFIX] = entry
    return out


def _lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or "latency" in metric


def _lookup(entry: dict[str, Any], metric: str) -> tuple[bool, Any]:
    """(present, value) of `metric` in one configuration's report entry."""
    if "." in metric:
        node: Any = entry
        for part in metric.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node
    overall = entry.get("overall", {})
    if metric not in overall:
        return False, None
    return True, overall[metric]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def compare(
    current_report: dict[str, Any] | str | Path,
    baseline_report: dict[str, Any] | str | Path,
    metrics: list[str] | str | None = None,
    tolerance: float = 0.02,
) -> tuple[str, bool]:
    """A plain-text deltas table and whether any gated metric got worse by more than `tolerance`."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    current, baseline = load_report(current_report), load_report(baseline_report)
    names = parse_metrics(metrics)
    cur_results: dict[str, Any] = flat_results(current)
    base_results: dict[str, Any] = flat_results(baseline)
    common = [c for c in cur_results if c in base_results]
    rows: list[tuple[str, str, str, str, str, str]] = []
    failed = False
    notes: list[str] = []
    if not common:
        failed = True
        notes.append(
            "FAIL: no configuration is present in both reports "
            f"(current: {', '.join(cur_results) or 'none'}; baseline: {', '.join(base_results) or 'none'})."
        )
    for config in common:
        for metric in names:
            has_cur, cur = _lookup(cur_results[config], metric)
            has_base, base = _lookup(base_results[config], metric)
            if not has_cur and has_base:
                status = "FAIL (missing in current report)"
                failed = True
            elif not has_base:
                status = "new (no baseline)" if has_cur else "unknown metric"
            elif cur is None or base is None:
                status = "not measured"
            else:
                cur_f, base_f = float(cur), float(base)
                delta = cur_f - base_f
                worse = -delta if not _lower_is_better(metric) else delta
                allowed = tolerance * abs(base_f) if "latency" in metric else tolerance
                if worse > allowed + 1e-12:
                    status = "FAIL"
                    failed = True
                elif worse < -1e-12:
                    status = "better"
                else:
                    status = "ok"
                rows.append((config, metric, _fmt(base_f), _fmt(cur_f), f"{delta:+.4f}", status))
                continue
            rows.append((config, metric, _fmt(base), _fmt(cur), "—", status))
    skipped = sorted(set(base_results) - set(cur_results))
    lost = [c for c in skipped if c.endswith(DISTRACTOR_SUFFIX) and c.removesuffix(DISTRACTOR_SUFFIX) in common]
    if lost:
        failed = True
        notes.append(f"FAIL: the baseline has distractor results for {', '.join(lost)} but this run has none "
                     "(run with --distractors).")
        skipped = [c for c in skipped if c not in lost]
    if skipped and common:
        notes.append(f"Not compared (only in baseline): {', '.join(skipped)}.")
    header = ("config", "metric", "baseline", "current", "delta", "status")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"tolerance {tolerance:g}: " + ("FAILED — a gated metric dropped beyond tolerance" if failed else "passed"))
    lines += notes
    return "\n".join(lines), failed
