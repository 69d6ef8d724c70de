"""Fusion against ranks and scores worked out by hand."""

import pytest

from rag.fusion import ranks_of, weighted_rrf


def test_rrf_matches_hand_computation():
    runs = {"dense": ["a", "b", "c"], "bm25": ["c", "a"]}
    fused = dict(weighted_rrf(runs, k=60))
    # a: 1/61 + 1/62 ; b: 1/62 ; c: 1/63 + 1/61
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert [d for d, _ in weighted_rrf(runs, k=60)] == ["a", "c", "b"]


def test_weights_scale_runs_and_zero_weight_drops_a_run():
    runs = {"dense": ["x", "y"], "bm25": ["y", "x"]}
    fused = weighted_rrf(runs, k=1, weights={"dense": 2.0, "bm25": 1.0})
    # x: 2/2 + 1/3 = 1.3333 ; y: 2/3 + 1/2 = 1.1667
    assert fused[0][0] == "x" and fused[0][1] == pytest.approx(2 / 2 + 1 / 3)
    assert fused[1][1] == pytest.approx(2 / 3 + 1 / 2)
    only_bm25 = weighted_rrf(runs, k=1, weights={"dense": 0.0, "bm25": 1.0})
    assert [d for d, _ in only_bm25] == ["y", "x"]


def test_ties_break_by_best_rank_then_id():
    fused = weighted_rrf({"r1": ["b", "a"], "r2": ["a", "b"]}, k=60)
    assert fused[0][1] == pytest.approx(fused[1][1])
    assert [d for d, _ in fused] == ["a", "b"]


def test_ranks_of_reports_one_based_ranks():
    assert ranks_of({"dense": ["a", "b"], "bm25": ["b"]}, "b") == {"dense": 2, "bm25": 1}
