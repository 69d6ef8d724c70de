"""Pure metric functions for the offline answer-quality evaluation (no heavy imports).

Relevance is decided by *evidence phrases*: short verbatim phrases from the article body (see
eval/datasets/gold.jsonl), any one of which proves that a passage supports the gold answer. A retrieved
passage is relevant when it contains at least one evidence phrase after `normalize_for_match`.

Ranking metrics take `relevances`: one bool per retrieved passage, best-ranked first.

Definitions chosen here (documented because the literature varies):

* hit@k            1.0 if any of the top-k passages is relevant, else 0.0.
* recall@k         *evidence recall*: the share of the question's distinct evidence phrases that occur in at
                   least one of the top-k passages. The gold-dataset test guarantees that every phrase occurs
                   in the corpus body, so the whole corpus is the candidate pool and the number of distinct
                   phrases is the "total relevant". Call form: ``recall_at_k(passages, evidence, k)``.
                   A passage-level form is also accepted: ``recall_at_k(relevances, k, total_relevant)`` =
                   (relevant passages in the top k) / total_relevant, where total_relevant defaults to the
                   number of relevant passages in the whole retrieved list (the candidate pool).
* MRR              1 / rank of the first relevant passage (0.0 if none).
* nDCG@k           binary gains, discount 1 / log2(rank + 1); the ideal ranking puts all relevant passages
                   of the retrieved list (or `total_relevant`, if given) first, truncated at k. 0.0 when
                   nothing is relevant.
* citation precision   share of cited passages that contain evidence (None when nothing is cited).
* evidence coverage    share of distinct evidence phrases that appear in the answer text plus its quotes.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "aggregate",
    "citation_precision",
    "evidence_coverage",
    "evidence_recall_at_k",
    "hit_at_k",
    "ndcg_at_k",
    "normalize_for_match",
    "passage_is_relevant",
    "percentile",
    "recall_at_k",
    "reciprocal_rank",
    "refusal_correct",
]

_WS = re.compile(r"\s+")


def normalize_for_match(text: str) -> str:
    """NFC-normalise, lowercase and collapse every run of whitespace to one space (ends stripped).

    >>> normalize_for_match("  Thứ  trưởng\\nNguyễn ")
    'thứ trưởng nguyễn'
    """
    return _WS.sub(" ", unicodedata.normalize("NFC", text or "").lower()).strip()


def _phrases(evidence: Iterable[str]) -> list[str]:
    """Distinct, non-empty normalised evidence phrases, in first-seen order."""
    out: list[str] = []
    for phrase in evidence:
        norm = normalize_for_match(phrase)
        if norm and norm not in out:
            out.append(norm)
    return out


def passage_is_relevant(passage_text: str, evidence: Iterable[str]) -> bool:
    """True if the passage contains at least one evidence phrase (both sides normalised)."""
    text = normalize_for_match(passage_text)
    return any(phrase in text for phrase in _phrases(evidence))


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def hit_at_k(relevances: Sequence[bool], k: int) -> float:
    """1.0 if any of the first k passages is relevant, else 0.0 (k may exceed the list length)."""
    _check_k(k)
    return 1.0 if any(relevances[:k]) else 0.0


def evidence_recall_at_k(passages: Sequence[str], evidence: Iterable[str], k: int) -> float:
    """Share of the distinct evidence phrases found in at least one of the top-k passages.

    0.0 when there are no evidence phrases (nothing can be recalled).
    """
    _check_k(k)
    phrases = _phrases(evidence)
    if not phrases:
        return 0.0
    top = [normalize_for_match(p) for p in passages[:k]]
    found = sum(1 for phrase in phrases if any(phrase in text for text in top))
    return found / len(phrases)


def recall_at_k(
    relevances: Sequence[bool] | Sequence[str],
    k: int | Sequence[str],
    total_relevant: int | None = None,
) -> float:
    """Recall at k; see the module docstring for the definition.

    Two call forms:

    * ``recall_at_k(passages, evidence, k)``: evidence recall (`evidence_recall_at_k`), used by the runner;
    * ``recall_at_k(relevances, k, total_relevant=None)``: relevant passages in the top k divided by
      `total_relevant` (default: relevant passages in the whole list); 0.0 when the total is 0; capped at 1.
    """
    if not isinstance(k, int):  # passage form: (passages, evidence, k)
        if total_relevant is None:
            raise TypeError("recall_at_k(passages, evidence, k) needs k")
        return evidence_recall_at_k([str(p) for p in relevances], [str(e) for e in k], total_relevant)
    _check_k(k)
    flags = [bool(r) for r in relevances]
    total = sum(flags) if total_relevant is None else total_relevant
    if total < 0:
        raise ValueError("total_relevant must be >= 0")
    if total == 0:
        return 0.0
    return min(1.0, sum(flags[:k]) / total)


def reciprocal_rank(relevances: Sequence[bool]) -> float:
    """1 / (1-based rank of the first relevant passage); 0.0 if none is relevant."""
    for rank, relevant in enumerate(relevances, 1):
        if relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(relevances: Sequence[bool], k: int, total_relevant: int | None = None) -> float:
    """Normalised discounted cumulative gain at k with binary gains and a log2(rank + 1) discount.

    DCG@k = sum over ranks r <= k of rel_r / log2(r + 1). The ideal DCG puts min(R, k) relevant passages
    first, where R = `total_relevant` if given, else the number of relevant passages in the whole list.
    Returns 0.0 when R is 0.
    """
    _check_k(k)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, rel in enumerate(relevances[:k], 1) if rel)
    n_relevant = sum(1 for rel in relevances if rel) if total_relevant is None else total_relevant
    ideal_hits = min(n_relevant, k)
    if ideal_hits <= 0:
        return 0.0
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, ideal_hits + 1))
    return min(1.0, dcg / idcg)


def citation_precision(cited_texts: Sequence[str], evidence: Iterable[str]) -> float | None:
    """Share of cited passages that contain at least one evidence phrase; None if nothing is cited."""
    if not cited_texts:
        return None
    phrases = list(evidence)
    return sum(1 for text in cited_texts if passage_is_relevant(text, phrases)) / len(cited_texts)


def evidence_coverage(answer_text_plus_quotes: str, evidence: Iterable[str]) -> float | None:
    """Share of the distinct evidence phrases contained in the answer text (plus its quotes).

    None when there are no evidence phrases (unanswerable questions have none).
    """
    phrases = _phrases(evidence)
    if not phrases:
        return None
    text = normalize_for_match(answer_text_plus_quotes)
    return sum(1 for phrase in phrases if phrase in text) / len(phrases)


def refusal_correct(refused: bool, answerable: bool) -> bool:
    """True when the assistant refused exactly when the question is unanswerable.

    The result is `refused != answerable`, so it is symmetric in its two arguments.
    """
    return bool(refused) != bool(answerable)


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks.

    Same as numpy's default (`method="linear"`): position = (n - 1) * p / 100 in the sorted values.
    Raises ValueError for an empty input or p outside [0, 100].
    """
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be within [0, 100], got {p}")
    pos = (len(data) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, int | float) and not math.isnan(value)


def _metrics_of(row: Mapping[str, Any], by: str | None) -> dict[str, Any]:
    """The per-question metric values of a row: `row["metrics"]` if present, else the row's own fields."""
    nested = row.get("metrics")
    source = nested if isinstance(nested, Mapping) else row
    skip = {"id", by} if nested is None or not isinstance(nested, Mapping) else set()
    return {k: v for k, v in source.items() if k not in skip}


def _group_value(row: Mapping[str, Any], by: str) -> Any:
    if by in row:
        return row[by]
    gold = row.get("gold")
    if isinstance(gold, Mapping):
        return gold.get(by)
    return None


def _average(rows: Sequence[Mapping[str, Any]], by: str | None, metrics: Sequence[str] | None) -> dict[str, Any]:
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    seen: list[str] = []
    for row in rows:
        for name, value in _metrics_of(row, by).items():
            if metrics is not None and name not in metrics:
                continue
            if value is None:
                if name not in seen:
                    seen.append(name)
                continue
            if not _is_number(value):
                continue
            if name not in seen:
                seen.append(name)
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    names = list(metrics) if metrics is not None else seen
    out: dict[str, Any] = {"n": len(rows)}
    for name in names:
        out[name] = sums[name] / counts[name] if counts.get(name) else None
    return out


def aggregate(
    rows: Sequence[Mapping[str, Any]],
    by: str | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Average numeric per-question metrics, overall and per value of the key `by`.

    A row is either flat (``{"id": ..., "lang": "vi", "hit@5": 1.0, ...}``) or a runner row with a nested
    ``"metrics"`` mapping and the group key at top level or in ``row["gold"]``. Booleans count as 0/1;
    None (metric not applicable) and non-numeric values are ignored; a metric with no value in a group
    averages to None. `metrics` restricts (and orders) the metrics reported.

    Returns ``{"by": by, "overall": {"n": N, metric: mean, ...}, "groups": {value: {...}, ...}}`` with
    groups in order of first appearance (empty when `by` is None).
    """
    result: dict[str, Any] = {"by": by, "overall": _average(rows, by, metrics), "groups": {}}
    if by is None:
        return result
    grouped: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(_group_value(row, by), []).append(row)
    result["groups"] = {value: _average(members, by, metrics) for value, members in grouped.items()}
    return result
