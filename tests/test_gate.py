"""The regression gate on hand-made reports."""

from __future__ import annotations

import json

import pytest

from eval.gate import compare, parse_metrics


def report(**configs: dict) -> dict:
    return {"results": {name: {"overall": overall, "latency_ms": {"total": {"p50": 10.0, "p95": 20.0}}}
                        for name, overall in configs.items()}}


BASE = report(hybrid={"hit@5": 0.80, "refusal_accuracy": 0.90, "false_refusal_rate": 0.10, "faithfulness": None})


def test_drop_beyond_tolerance_fails():
    cur = report(hybrid={"hit@5": 0.75, "refusal_accuracy": 0.90, "false_refusal_rate": 0.10})
    table, failed = compare(cur, BASE, ["hit@5", "refusal_accuracy"], 0.02)
    assert failed
    line = next(x for x in table.splitlines() if "hit@5" in x)
    assert "FAIL" in line and "-0.0500" in line
    assert "FAIL" not in next(x for x in table.splitlines() if "refusal_accuracy" in x)


def test_drop_within_tolerance_and_improvement_pass():
    cur = report(hybrid={"hit@5": 0.79, "refusal_accuracy": 0.95, "false_refusal_rate": 0.10})
    table, failed = compare(cur, BASE, "hit@5,refusal_accuracy", 0.02)
    assert not failed
    assert "passed" in table
    assert "better" in next(x for x in table.splitlines() if "refusal_accuracy" in x)


def test_lower_is_better_metrics_fail_when_they_rise():
    cur = report(hybrid={"hit@5": 0.80, "refusal_accuracy": 0.90, "false_refusal_rate": 0.20})
    _, failed = compare(cur, BASE, ["false_refusal_rate"], 0.02)
    assert failed
    cur = report(hybrid={"hit@5": 0.80, "refusal_accuracy": 0.90, "false_refusal_rate": 0.0})
    _, failed = compare(cur, BASE, ["false_refusal_rate"], 0.02)
    assert not failed


def test_latency_uses_relative_tolerance():
    cur = report(hybrid={"hit@5": 0.8})
    cur["results"]["hybrid"]["latency_ms"]["total"]["p95"] = 20.3  # +1.5 %
    assert compare(cur, BASE, ["latency_ms.total.p95"], 0.02)[1] is False
    cur["results"]["hybrid"]["latency_ms"]["total"]["p95"] = 25.0  # +25 %
    assert compare(cur, BASE, ["latency_ms.total.p95"], 0.02)[1] is True


def test_missing_metrics_are_handled():
    # Gone from the current report: a failure. New in the current report or unmeasured: not a failure.
    cur = report(hybrid={"refusal_accuracy": 0.90, "mrr": 0.5, "faithfulness": None})
    table, failed = compare(cur, BASE, ["hit@5"], 0.02)
    assert failed and "missing in current" in table
    table, failed = compare(cur, BASE, ["mrr", "faithfulness"], 0.02)
    assert not failed
    assert "new (no baseline)" in table and "not measured" in table


def test_only_common_configs_are_compared_and_none_in_common_fails():
    cur = report(bm25={"hit@5": 0.1, "refusal_accuracy": 0.1})
    table, failed = compare(cur, BASE, ["hit@5"], 0.02)
    assert failed and "no configuration" in table
    both = report(hybrid={"hit@5": 0.8, "refusal_accuracy": 0.9}, bm25={"hit@5": 0.1, "refusal_accuracy": 0.1})
    table, failed = compare(both, BASE, ["hit@5"], 0.02)
    assert not failed and "bm25" not in table


def test_reports_can_be_paths(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text(json.dumps(BASE))
    cur = tmp_path / "new.json"
    cur.write_text(json.dumps(report(hybrid={"hit@5": 0.5, "refusal_accuracy": 0.9})))
    assert compare(cur, tmp_path / "old", None, 0.02)[1] is True
    assert parse_metrics(" hit@5 , mrr,") == ["hit@5", "mrr"]
    assert parse_metrics("") == ["hit@5", "refusal_accuracy"]
    with pytest.raises(ValueError):
        compare(cur, BASE, None, -1)


def with_distractors(seeds: dict, distractors: dict) -> dict:
    out = report(**seeds)
    out["distractors"] = {"list": "eval/distractors/ci.txt", "results": report(**distractors)["results"]}
    return out


def test_distractor_results_are_gated_beside_seed_results():
    base = with_distractors({"hybrid": {"refusal_accuracy": 0.9, "false_refusal_rate": 0.05}},
                            {"hybrid": {"refusal_accuracy": 0.9, "false_refusal_rate": 0.05}})
    # Seeds-only unchanged, but with distractors more answerable questions are refused: a failure.
    cur = with_distractors({"hybrid": {"refusal_accuracy": 0.9, "false_refusal_rate": 0.05}},
                           {"hybrid": {"refusal_accuracy": 0.9, "false_refusal_rate": 0.12}})
    table, failed = compare(cur, base, ["refusal_accuracy", "false_refusal_rate"], 0.02)
    assert failed
    line = next(x for x in table.splitlines() if "+distractors" in x and "false_refusal_rate" in x)
    assert "FAIL" in line
    assert "FAIL" not in next(x for x in table.splitlines() if x.startswith("hybrid ") and "false_refusal" in x)
    same = with_distractors({"hybrid": {"refusal_accuracy": 0.9, "false_refusal_rate": 0.05}},
                            {"hybrid": {"refusal_accuracy": 0.91, "false_refusal_rate": 0.05}})
    assert compare(same, base, ["refusal_accuracy", "false_refusal_rate"], 0.02)[1] is False


def test_a_run_without_distractors_fails_a_baseline_that_has_them():
    base = with_distractors({"hybrid": {"hit@5": 0.9}}, {"hybrid": {"hit@5": 0.9}})
    table, failed = compare(report(hybrid={"hit@5": 0.9}), base, ["hit@5"], 0.02)
    assert failed and "--distractors" in table
