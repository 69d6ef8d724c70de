"""Dense pass at scale: the exact pass vs the PCA shortlist + exact rescoring (`rag.index.DenseShortlist`).

Recall is measured on REAL embeddings: N viwiki chunks embedded with the bundled model the way ingest does
(`Index._embed_batch`: word-weighted mean of title and sentence vectors) and the 200 bench questions embedded
as queries. Embedding 100k chunks takes hours on 2 cores, so the 100k rows are drawn from a Gaussian with the
mean and covariance of the real chunk vectors (normalised): the same spectrum, which is what decides how well
a reduced dot product ranks. Hash vectors (what `retrieval_bench.py --corpus synthetic` indexes) have a flat
spectrum; the shortlist measures itself on them and stays off (the report shows its probe recall).

    python bench/dense_shortlist.py --chunks 4000 --rows 100000 --cache /work/cache/scale/dense

Latency rows are measured in one process, old and new path interleaved query by query (BLAS on one thread),
so their ratio holds on a shared machine; the absolute numbers do not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))


def real_vectors(cache: Path, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk vectors, query vectors) from the bundled model, cached under `cache`."""
    vec_path, q_path = cache / f"real-chunks-{chunks}.npy", cache / "real-queries.npy"
    if vec_path.exists() and q_path.exists():
        return np.load(vec_path), np.load(q_path)
    import retrieval_bench as rb

    from rag.chunk import chunk_document
    from rag.clean import clean_document
    from rag.embed import load_embedder
    from rag.errors import BadInput
    from rag.index import Index
    from rag.load import load_file

    settings = rb.make_settings(cache / "home")
    real = load_embedder(settings).embedder
    picked = []
    with tempfile.TemporaryDirectory(prefix="viwiki-") as tmp:
        articles = sorted(rb.extract_viwiki(rb.VIWIKI, Path(tmp)).glob("*.txt"))
        for k in np.random.default_rng(0).permutation(len(articles)):
            try:
                picked += chunk_document(clean_document(load_file(articles[int(k)])), settings.chunk_words,
                                         settings.chunk_overlap_words)
            except BadInput:
                continue
            if len(picked) >= chunks:
                break
    index = Index(settings)
    vectors = np.concatenate([index._embed_batch(picked[i : i + 64], real) for i in range(0, chunks, 64)])[:chunks]
    index._new_sentences.close()
    queries = real.embed_queries(rb.bench_questions())
    cache.mkdir(parents=True, exist_ok=True)
    np.save(vec_path, vectors)
    np.save(q_path, queries)
    return vectors, queries


def gaussian_like(vectors: np.ndarray, rows: int, seed: int = 0) -> np.ndarray:
    """`rows` unit vectors drawn from a Gaussian with the mean and covariance of `vectors`."""
    mean = vectors.mean(axis=0)
    cov = np.cov(vectors, rowvar=False)
    out = np.random.default_rng(seed).multivariate_normal(mean, cov, size=rows, method="eigh").astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    sims = matrix @ query
    top = np.argpartition(-sims, k - 1)[:k]
    return top[np.argsort(-sims[top], kind="stable")]


def recall_table(matrix: np.ndarray, queries: np.ndarray, k: int, dims: tuple[int, ...],
                 sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Share of the exact top-k inside the shortlist, and exact top-k order equal, per (dims, size)."""
    from rag.index import DenseShortlist

    truth = [exact_top(matrix, q, k) for q in queries]
    out = []
    for d in dims:
        built = DenseShortlist.build(matrix, k, dims=d, sizes=(1,), min_recall=0.0)
        if built is None:
            continue
        for size in sizes:
            sl = DenseShortlist(built.projection, built.reduced, min(size * k, len(matrix)), 0.0)
            rec, same = [], 0
            for q, t in zip(queries, truth, strict=True):
                cand = sl.top_rows(q[None, :], None, None)[0]
                rec.append(len(set(t.tolist()) & set(cand.tolist())) / k)
                sims = matrix[cand] @ q
                top = np.argpartition(-sims, k - 1)[:k]
                top = cand[top[np.argsort(-sims[top], kind="stable")]]
                same += top.tolist() == t.tolist()
            out.append({"dims": d, "shortlist": size * k, "recall_mean": round(float(np.mean(rec)), 4),
                        "recall_min": round(float(np.min(rec)), 3), "identical_top_k": f"{same}/{len(queries)}"})
    return out


def latency(matrix: np.ndarray, queries: np.ndarray, k: int, rounds: int) -> dict[str, Any]:
    """Index.dense_search_many with and without its shortlist, interleaved, on an Index over `matrix`."""
    from rag.config import Settings
    from rag.index import BM25Field, Index, MetadataColumns

    with tempfile.TemporaryDirectory() as home:
        index = Index(Settings(_env_file=None, home=Path(home)))
        index.vectors = matrix
        index.accented = BM25Field(None, [f"c{i}" for i in range(len(matrix))])
        index.columns = MetadataColumns.build([])
        t = time.perf_counter()
        index._build_shortlist()
        build_s = time.perf_counter() - t
        shortlist = index.shortlist
        times: dict[str, list[float]] = {"exact": [], "shortlist": []}
        rows_20 = np.sort(np.random.default_rng(1).choice(len(matrix), len(matrix) // 5 + 1, replace=False))
        for name, rows in (("none", None), ("wide 20%", rows_20)):
            for _ in range(rounds):
                for q in queries:
                    for path in ("exact", "shortlist"):
                        index.shortlist = shortlist if path == "shortlist" else None
                        t = time.perf_counter()
                        index.dense_search_many(q[None, :], k, rows)
                        times.setdefault(f"{path} {name}", []).append((time.perf_counter() - t) * 1000)
        index.shortlist = shortlist

    def st(v: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}

    return {"shortlist_build_s": round(build_s, 2),
            "shortlist": None if shortlist is None else {"size": shortlist.size, "probe_recall": round(shortlist.recall, 4)},
            "ms": {name: st(v) for name, v in times.items() if v}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=4000, help="real viwiki chunks to embed (recall)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the covariance-matched set")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "rag-dense-bench")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dense_shortlist.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    from rag.config import Settings

    k = Settings(_env_file=None).candidates
    vectors, queries = real_vectors(args.cache, args.chunks)
    big = gaussian_like(vectors, args.rows)
    rng = np.random.default_rng(2)
    hashes = rng.standard_normal((args.rows, vectors.shape[1])).astype(np.float32)
    hashes /= np.linalg.norm(hashes, axis=1, keepdims=True)
    result = {
        "k": k,
        "real": {"rows": len(vectors), "recall": recall_table(vectors, queries, k, (96, 128), (2, 5, 10))},
        "covariance_matched": {"rows": len(big), "recall": recall_table(big, queries, k, (96, 128), (5, 10, 20)),
                               "latency": latency(big, queries, k, args.rounds)},
        "hash_vectors": {"rows": len(hashes), "latency": latency(hashes, queries[:20], k, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
