"""Ingest throughput: our pipeline vs the naive LangChain tutorial pipeline, same documents, one run.

    python bench/ingest_bench.py --sizes 200 1000            # viwiki sample, both pipelines
    python bench/ingest_bench.py --sizes 5 --out /tmp/b.json  # what CI runs (tiny; keeps it working)

Documents: every k-th article (by file name) of ../shared/corpora/viwiki.tar.xz, so a sample mixes stubs
and long articles like the whole corpus; the same files go to both pipelines.

ours   `Index.sync` with the configured embedder runtime (ONNX Runtime unless `--runtime torch`): load,
       clean, sentence-aware chunking, every token embedded (sentence units, windows, never truncated),
       entities, Chroma upsert, pyvi segmentation, two BM25 fields, chunk/vector/sentence stores.
naive  the LangChain RAG tutorial: RecursiveCharacterTextSplitter(1000, 200) -> HuggingFaceEmbeddings
       with the same all-MiniLM-L6-v2 -> Chroma.from_documents, plus BM25Retriever.from_documents.
       `langchain-huggingface` cannot be installed beside transformers 5 (it pins huggingface-hub < 2),
       so `TutorialHFEmbeddings` below is its `embed_documents` line for line: newlines to spaces,
       `SentenceTransformer.encode(texts)` with its defaults (batch 32, 256-token truncation).

Each pipeline runs in its own subprocess (peak RSS = that process's ru_maxrss, model included); the
clock covers ingest only (model loading is reported apart). Embedded tokens = tokens that went through
the model, special tokens included, padding excluded; the naive pipeline's truncated tokens are counted
too (text its vectors do not represent). The machine may be shared: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VIWIKI = REPO.parent / "shared" / "corpora" / "viwiki.tar.xz"
if not VIWIKI.exists():
    VIWIKI = Path("/work/shared/corpora/viwiki.tar.xz")


def sample_articles(viwiki: Path, work: Path, n: int) -> Path:
    """A folder with n viwiki articles (every k-th by name), extracting the archive once under `work`."""
    root = work / "viwiki"
    if not root.exists():
        if not viwiki.exists():
            raise SystemExit(f"{viwiki} not found; pass --viwiki")
        staging = work / ".extract"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(viwiki) as tar:
            tar.extractall(staging, filter="data")
        (staging / "viwiki").rename(root)
        shutil.rmtree(staging, ignore_errors=True)
    names = sorted(os.listdir(root))
    step = max(1, len(names) // n)
    picked = names[::step][:n]
    dest = work / f"sample-{n}"
    if not dest.exists() or sorted(os.listdir(dest)) != picked:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name in picked:
            shutil.copy(root / name, dest / name)
    return dest


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------------------- workers


class CountingEmbedder:
    """Wraps our embedder and counts the tokens that go through the model (windows included)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.tokens = 0
        self.texts = 0

    def embed_documents(self, texts: list[str]) -> Any:
        counts = self.inner._token_counts(texts) if texts else []
        for text, n in zip(texts, counts, strict=True):
            windows = self.inner._windows(text, n)
            self.tokens += n + 2 * len(windows)  # [CLS] and [SEP] per window
            self.texts += len(windows)
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: list[str]) -> Any:
        return self.inner.embed_queries(texts)

    def release_bulk(self) -> bool:
        """Index.sync's end-of-embedding hook, passed on: the bulk model is released as in `rag ingest`."""
        release = getattr(self.inner, "release_bulk", None)
        return bool(release()) if callable(release) else False


def run_ours(docs: Path, home: Path, runtime: str, cache_dir: Path | None, bulk: str = "auto") -> dict[str, Any]:
    from rag.config import BUNDLED_MODEL, Settings
    from rag.embed import load_embedder
    from rag.index import Index

    extra = {"cache_dir": cache_dir} if cache_dir else {}
    settings = Settings(
        _env_file=None, home=home, embedding_model=BUNDLED_MODEL, embedding_runtime=runtime,
        embedding_bulk_bf16=bulk, **extra,
    )
    t = time.perf_counter()
    embedder = CountingEmbedder(load_embedder(settings).embedder)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    report = Index.open(settings, must_exist=False).sync([docs], embedder)
    seconds = time.perf_counter() - t
    inner = embedder.inner
    bulk = inner.__dict__.get("_bulk_state")  # made by the first bulk batch (its model is released at the end)
    precision = "bf16 bulk" if inner.bulk_runtime and bulk and not bulk["failed"] else "fp32"
    return {
        "pipeline": f"ours ({inner.runtime}, {precision})",
        "docs": len(report.added) + len(report.updated),
        "skipped": len(report.skipped),
        "chunks": report.total_chunks,
        "model_inputs": embedder.texts,
        "embedded_tokens": embedder.tokens,
        "truncated_tokens": 0,
        "seconds": seconds,
        "model_load_s": load_s,
    }


class TutorialHFEmbeddings:
    """langchain_huggingface.HuggingFaceEmbeddings' embed path with its defaults (see module docstring)."""

    def __init__(self, model_name: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._client = SentenceTransformer(model_name)
        self.tokens = 0
        self.truncated = 0
        self.texts = 0

    def _count(self, texts: list[str]) -> None:
        limit = int(self._client.max_seq_length)
        for ids in self._client.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]:
            self.tokens += min(len(ids), limit)
            self.truncated += max(0, len(ids) - limit)
        self.texts += len(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = [x.replace("\n", " ") for x in texts]
        self._count(texts)
        return self._client.encode(texts, show_progress_bar=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def run_naive(docs: Path, home: Path) -> dict[str, Any]:
    from langchain_chroma import Chroma
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag.embed import bundled_model_path

    class Adapter(TutorialHFEmbeddings, Embeddings):
        pass

    t = time.perf_counter()
    embeddings = Adapter(bundled_model_path())
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    documents = [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)})
        for p in sorted(docs.iterdir())
        if p.suffix == ".txt"
    ]
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(documents)
    Chroma.from_documents(splits, embeddings, persist_directory=str(home / "chroma"))
    BM25Retriever.from_documents(splits)
    seconds = time.perf_counter() - t
    return {
        "pipeline": "naive (LangChain tutorial, torch)",
        "docs": len(documents),
        "skipped": 0,
        "chunks": len(splits),
        "model_inputs": embeddings.texts,
        "embedded_tokens": embeddings.tokens,
        "truncated_tokens": embeddings.truncated,
        "seconds": seconds,
        "model_load_s": load_s,
    }


def worker(args: argparse.Namespace) -> int:
    home = Path(args.home)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if args.worker == "naive":
        result = run_naive(Path(args.docs), home)
    else:
        result = run_ours(
            Path(args.docs), home, args.runtime, Path(args.cache_dir) if args.cache_dir else None, args.bulk
        )
    result["peak_rss_mb"] = peak_rss_mb()
    s = result["seconds"]
    result.update(
        docs_per_s=result["docs"] / s, chunks_per_s=result["chunks"] / s, tokens_per_s=result["embedded_tokens"] / s
    )
    print(json.dumps(result))
    shutil.rmtree(home, ignore_errors=True)
    return 0


# ----------------------------------------------------------------------------------------- driver


def run_worker(
    kind: str, docs: Path, home: Path, args: argparse.Namespace, runtime: str = "auto", bulk: str = "auto"
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--docs", str(docs), "--home", str(home), "--runtime", runtime,
           "--bulk", bulk]
    if args.cache_dir:
        cmd += ["--cache-dir", str(args.cache_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| articles | pipeline | docs/s | chunks (chunks/s) | embedded tokens/s | tokens truncated | ingest s "
        "| peak RSS | docs/s vs naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['pipeline']} | {r['docs_per_s']:.2f} | {r['chunks']} ({r['chunks_per_s']:.1f}) "
            f"| {r['tokens_per_s']:,.0f} | {r['truncated_tokens']:,} | {r['seconds']:.1f} "
            f"| {r['peak_rss_mb'] / 1024:.2f} GiB | **{r['ratio']:.2f}×** |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000], help="articles per sample")
    parser.add_argument("--viwiki", type=Path, default=VIWIKI)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag-ingest-bench"), help="samples + scratch")
    parser.add_argument("--cache-dir", type=Path, default=None, help="RAG_CACHE_DIR for the ONNX export")
    parser.add_argument("--torch-too", action="store_true", help="also run ours on the torch runtime (float32)")
    parser.add_argument("--float32-too", action="store_true", help="also run ours with bulk bfloat16 off")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per pipeline; the median is kept")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--worker", choices=("ours", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--docs", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--bulk", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        docs = sample_articles(args.viwiki, args.work, size)
        home = args.work / "home"
        variants = [("naive", "auto", "auto"), ("ours", "auto", "auto")]
        variants += [("ours", "auto", "off")] if args.float32_too else []
        variants += [("ours", "torch", "off")] if args.torch_too else []
        runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(variants))}
        # Interleaved (naive, ours, ..., naive, ours, ...) so a load change on a shared machine hits all alike.
        for _ in range(max(1, args.repeat)):
            for i, (kind, runtime, bulk) in enumerate(variants):
                row = {"size": size, **run_worker(kind, docs, home, args, runtime=runtime, bulk=bulk)}
                print(json.dumps(row), file=sys.stderr, flush=True)  # each run as soon as it is done
                runs[i].append(row)
        medians = [sorted(r, key=lambda x: x["docs_per_s"])[len(r) // 2] for r in runs.values()]
        for row in medians:
            row["ratio"] = row["docs_per_s"] / medians[0]["docs_per_s"]
            row["runs"] = len(runs[0])
            rows.append(row)
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs, load average before/after: {os.getloadavg()[0]:.1f} (shared machine: "
          "compare ratios, not seconds)")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "loadavg": os.getloadavg()}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
