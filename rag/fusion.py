"""Rank fusion as plain functions (after pyserini's reciprocal_rank_fusion).

>>> weighted_rrf({"a": ["x", "y"], "b": ["y"]}, k=60)
[('y', 0.03252...), ('x', 0.01639...)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def weighted_rrf(
    rankings: Mapping[str, Sequence[str]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(d) = sum over runs r of w_r / (k + rank_r(d)), ranks starting at 1.

    Runs with weight 0 are ignored; ties are broken by the id's best rank, then by id, for stability.
    """
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for run, ids in rankings.items():
        w = 1.0 if weights is None else float(weights.get(run, 0.0))
        if w <= 0:
            continue
        for rank, doc_id in enumerate(ids, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + w / (k + rank)
            best_rank[doc_id] = min(best_rank.get(doc_id, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best_rank[item[0]], item[0]))


def ranks_of(rankings: Mapping[str, Sequence[str]], doc_id: str) -> dict[str, int]:
    """The 1-based rank of `doc_id` in every run that contains it."""
    return {run: ids.index(doc_id) + 1 for run, ids in rankings.items() if doc_id in ids}
