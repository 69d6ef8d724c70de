"""Rank fusion as plain functions (after pyserini's reciprocal_rank_fusion).

>>> weighted_rrf({"a": ["x", "y"], "b": ["y"]}, k=60)
[('y', 0.03252...), ('x', 0.01639...)]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from rag.text import strip_diacritics


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


_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 5) -> frozenset[int]:
    """Hashes of the text's word n-grams (case- and tone-insensitive), for near-duplicate detection."""
    words = [strip_diacritics(w).lower() for w in _WORD.findall(text)]
    if len(words) < n:
        return frozenset({hash(tuple(words))}) if words else frozenset()
    return frozenset(hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1))


def drop_near_duplicates(
    fused: Sequence[tuple[str, float]],
    limit: int,
    shingles_of: Callable[[str], frozenset[int]],
    document_of: Callable[[str], str],
    containment: float = 0.5,
) -> list[tuple[str, float]]:
    """The first `limit` ids of `fused`, skipping one whose text another document's kept hit already
    mostly contains (>= `containment` of the smaller one's word 5-grams).

    Why: the same wire story in five outlets, or five planted copies of one false claim (PoisonedRAG),
    would otherwise fill every slot of the top k and push the passage that says otherwise out of sight.
    Chunks of one document overlap by design and are never collapsed.
    """
    kept: list[tuple[str, float]] = []
    seen: list[tuple[str, frozenset[int]]] = []
    for cid, score in fused:
        if len(kept) >= limit:
            break
        grams, doc = shingles_of(cid), document_of(cid)
        if any(d != doc and g and grams and len(g & grams) >= containment * min(len(g), len(grams)) for d, g in seen):
            continue
        kept.append((cid, score))
        seen.append((doc, grams))
    return kept
