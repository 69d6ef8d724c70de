"""Retrieval latency benchmark: p50/p95/p99/mean of HybridRetriever.retrieve, per stage, with and without filters.

Target (issue): retrieval p95 <= 50 ms at 100k chunks on a 2-core machine, query embedding and filters included.

    python bench/retrieval_bench.py --corpus seed
    python bench/retrieval_bench.py --corpus synthetic --chunks 100000 --home /tmp/rag-bench

`seed`       the five documents of corpus/, embedded with the real bundled model (all-MiniLM-L6-v2).
`synthetic`  ~N chunks of real Vietnamese Wikipedia text (/work/shared/corpora/viwiki.tar.xz, extracted to a
             temp dir, articles repeated with a title/id suffix when N exceeds what it yields), ingested through
             the real `Index.sync` (load -> clean -> chunk -> Chroma upsert -> pyvi tokenisation -> BM25).
             Embedding 100k chunks with the real model takes hours on 2 cores, so DOCUMENT vectors are
             synthetic; QUERY embedding is real (the bundled model behind an embedder whose `name` equals the
             synthetic one's, so the index's model check passes). `--vectors covariance` (default): each
             chunk vector is drawn, seeded by its text, from a Gaussian with the mean and covariance of
             `--real-chunks` real chunk vectors (embedded once with the bundled model, cached under
             --home/real-vectors), so the vectors have the spectrum of real ones, which decides how reduced
             or approximate search ranks (the dense shortlist, HNSW). `--vectors hash`: isotropic unit
             vectors from a hash of each title/sentence (on these the dense shortlist stays off: it measures
             itself on the index's own vectors). Front matter gives every article a date (2000-2025), one of
             50 sources and a language label (~90% 'vi', ~10% 'en'; the label only, the text is Vietnamese).

Memory: the build runs in this process, so `build.peak_rss_mb` is the ingest's peak RSS (ru_maxrss, the
bundled model loaded beforehand included). `serve.peak_rss_mb` is a separate, fresh process that opens the
index as the app does (`rag.service.Service`, extractive answers, no LLM) and answers the questions once,
cycling through the four filter kinds: the app's peak at this index size.

Latency numbers are indicative on a shared machine; compare rows of one run. The extractive answer step is
timed per question on the retrieved hits (`answer`, target p95 <= 150 ms) and with retrieval
(`retrieve_answer`, target p95 <= 200 ms).

The built index is cached under --home (default: $TMPDIR/rag-bench) so reruns skip the build.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
VIWIKI = Path("/work/shared/corpora/viwiki.tar.xz")
HASH_MODEL = "bench-hash-384"
GAUSS_MODEL = "bench-gauss-384"  # chunk vectors drawn with the covariance of real chunk vectors
HASH_DIM = 384
# Stages reported in the table, in this order; any other key retrieve() puts in timings_ms is kept in the
# JSON, and "other" is total minus every reported stage (planning, masks, fusion, building hits).
STAGES = ("embed", "dense", "bm25", "entities", "rerank")
# Also timed per question: the extractive answer on the retrieved hits (target p95 <= 150 ms) and
# retrieval + answer (target p95 <= 200 ms).
TARGET_P95_MS = 50.0

log = logging.getLogger("retrieval_bench")

# ---------------------------------------------------------------- synthetic metadata

# 50 outlets, so one source is ~2% of the corpus.
SOURCES = (
    "VnExpress",
    "Tuổi Trẻ",
    "Thanh Niên",
    "Dân Trí",
    "VietnamPlus",
    "Báo Nhân Dân",
    "Báo Tin Tức/TTXVN",
    "VOV",
    "VTV",
    "Báo Lao Động",
    "Báo Đầu Tư",
    "Báo Chính phủ",
    "Báo Quân đội Nhân dân",
    "Báo Công an Nhân dân",
    "Tiền Phong",
    "Hà Nội Mới",
    "Sài Gòn Giải Phóng",
    "Người Lao Động",
    "Báo Pháp luật",
    "Kinh tế & Đô thị",
    "Vietnam News",
    "Vietnam Investment Review",
    "Nikkei Asia",
    "NHK World",
    "The Japan Times",
    "Kyodo News",
    "JETRO",
    "JICA",
    "MPI",
    "most.gov.vn",
    "MOIT",
    "MOFA",
    "Bộ Giáo dục và Đào tạo",
    "Bộ Y tế",
    "Báo Khoa học & Phát triển",
    "Tạp chí Cộng sản",
    "Báo Đà Nẵng",
    "Báo Hải Phòng",
    "Báo Cần Thơ",
    "Báo Quảng Ninh",
    "Báo Bắc Ninh",
    "Báo Bình Dương",
    "Báo Đồng Nai",
    "Báo Thừa Thiên Huế",
    "Báo Nghệ An",
    "Báo Thanh Hóa",
    "Báo Khánh Hòa",
    "Báo Lâm Đồng",
    "Báo Phú Thọ",
    "Báo Vĩnh Phúc",
)
assert len(SOURCES) == 50


def synthetic_meta(doc_id: str) -> dict[str, str]:
    """Deterministic date (2000-01-01..2025-12-28), source (1 of 50) and language label for a document."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    year, h = 2000 + h % 26, h // 26
    month, h = 1 + h % 12, h // 12
    day, h = 1 + h % 28, h // 28
    source, h = SOURCES[h % len(SOURCES)], h // len(SOURCES)
    language = "en" if h % 10 == 0 else "vi"
    return {"date": f"{year:04d}-{month:02d}-{day:02d}", "source": source, "language": language}


# ---------------------------------------------------------------- queries

QUESTIONS_VI = [
    "Chiến thắng Điện Biên Phủ diễn ra vào năm nào?",
    "Ai là người lãnh đạo khởi nghĩa Lam Sơn?",
    "Triều đại nhà Lý dời đô về Thăng Long năm nào?",
    "Sông Mê Kông chảy qua những quốc gia nào?",
    "Đỉnh núi cao nhất Việt Nam là gì?",
    "Thủ đô của Nhật Bản là thành phố nào?",
    "Vịnh Hạ Long nằm ở tỉnh nào?",
    "Quá trình quang hợp ở thực vật diễn ra như thế nào?",
    "Tiểu hành tinh vành đai chính là gì?",
    "Ai phát hiện ra định luật vạn vật hấp dẫn?",
    "Chiến tranh thế giới thứ hai kết thúc khi nào?",
    "Dân số của Thành phố Hồ Chí Minh là bao nhiêu?",
    "Hệ Mặt Trời có bao nhiêu hành tinh?",
    "Phở có nguồn gốc từ đâu?",
    "Trận Bạch Đằng năm 938 do ai chỉ huy?",
    "Đồng bằng sông Cửu Long có diện tích bao nhiêu?",
    "Nguyên tố hóa học nào có số hiệu nguyên tử bằng 6?",
    "Vua Quang Trung đại phá quân Thanh vào năm nào?",
    "Hiệp định Genève năm 1954 quy định những gì?",
    "Khí hậu nhiệt đới gió mùa có đặc điểm gì?",
    "Tỉnh Quảng Ninh giáp với những tỉnh nào?",
    "Kim tự tháp Giza được xây dựng khi nào?",
    "Albert Einstein nổi tiếng với thuyết gì?",
    "Loài khủng long tuyệt chủng vì nguyên nhân gì?",
    "Truyện Kiều do ai sáng tác?",
    "Sông Hồng bắt nguồn từ đâu?",
    "Cách mạng Tháng Tám năm 1945 diễn ra như thế nào?",
    "Nhà Trần ba lần đánh thắng quân Nguyên Mông vào những năm nào?",
    "Động đất xảy ra do nguyên nhân nào?",
    "Hà Nội có bao nhiêu quận và huyện?",
    "Văn Miếu Quốc Tử Giám được xây dựng năm nào?",
    "Bóng đá được du nhập vào Việt Nam khi nào?",
    "Đế quốc La Mã sụp đổ vào thời gian nào?",
    "Hang Sơn Đoòng được phát hiện năm nào?",
    "Ngôn ngữ chính thức của Brasil là gì?",
    "Cấu trúc của phân tử ADN gồm những gì?",
    "Phong trào Cần Vương do ai khởi xướng?",
    "Núi lửa hoạt động như thế nào?",
    "Vườn quốc gia Cúc Phương thuộc tỉnh nào?",
    "Thế vận hội Mùa hè hiện đại đầu tiên được tổ chức ở đâu?",
    "Ai là tổng thống đầu tiên của Hoa Kỳ?",
    "Tôn giáo chính ở Thái Lan là gì?",
    "Tây Nguyên gồm những tỉnh nào?",
    "Biển Đông có những quần đảo nào?",
    "Vi khuẩn khác virus ở điểm nào?",
    "Đà Nẵng trở thành thành phố trực thuộc trung ương năm nào?",
    "Hai Bà Trưng khởi nghĩa chống quân Hán năm nào?",
    "Nhạc sĩ Trịnh Công Sơn sinh năm nào?",
    "Nước nào có diện tích lớn nhất thế giới?",
    "Sao Hỏa có bao nhiêu vệ tinh tự nhiên?",
    "Chiến dịch Hồ Chí Minh kết thúc vào ngày nào?",
    "Lúa gạo được trồng nhiều nhất ở vùng nào của Việt Nam?",
    "Nhật Bản có những đảo chính nào?",
    "Ai là người đầu tiên đặt chân lên Mặt Trăng?",
    "Thời kỳ Bắc thuộc kéo dài bao lâu?",
    "Đại học Quốc gia Hà Nội được thành lập năm nào?",
    "Bệnh sốt rét lây truyền qua con đường nào?",
    "Liên Hợp Quốc được thành lập vào năm nào?",
    "Cầu Long Biên do ai thiết kế?",
    "Sông Nin dài bao nhiêu kilômét?",
    "Hợp tác khoa học và công nghệ giữa Việt Nam và Nhật Bản phát triển ra sao?",
    "Mạng lưới đổi mới sáng tạo Việt Nam tại Nhật Bản hoạt động thế nào?",
    "Diễn đàn STS tại Kyoto năm 2023 thảo luận những vấn đề gì?",
    "Bộ Khoa học và Công nghệ hợp tác với UNESCO như thế nào?",
    "Nhà Nguyễn có bao nhiêu đời vua?",
    "Địa đạo Củ Chi nằm ở đâu?",
    "Cá voi xanh có phải là loài động vật lớn nhất không?",
    "Tiếng Việt thuộc ngữ hệ nào?",
    "Hiệu ứng nhà kính ảnh hưởng đến khí hậu ra sao?",
    "Năng lượng mặt trời được sử dụng như thế nào ở Việt Nam?",
]

QUESTIONS_EN = [
    "When did the Battle of Dien Bien Phu take place?",
    "Who led the Lam Son uprising against the Ming dynasty?",
    "Which countries does the Mekong River flow through?",
    "What is the highest mountain in Vietnam?",
    "Where is Ha Long Bay located?",
    "How does photosynthesis work in plants?",
    "What is a main-belt asteroid?",
    "When did World War II end?",
    "What is the population of Ho Chi Minh City?",
    "How many planets are in the Solar System?",
    "Who wrote the Tale of Kieu?",
    "What caused the extinction of the dinosaurs?",
    "Where does the Red River originate?",
    "When was the Temple of Literature in Hanoi built?",
    "What is the official language of Brazil?",
    "What is the structure of DNA?",
    "Who was the first president of the United States?",
    "Which provinces are in the Central Highlands of Vietnam?",
    "What is the difference between bacteria and viruses?",
    "When did the Trung sisters rebel against the Han dynasty?",
    "Which country has the largest area in the world?",
    "How many moons does Mars have?",
    "What are the main islands of Japan?",
    "Who was the first person to walk on the Moon?",
    "How is malaria transmitted?",
    "When was the United Nations founded?",
    "How long is the Nile River?",
    "Where are the Cu Chi tunnels?",
    "Which language family does Vietnamese belong to?",
    "How does the greenhouse effect change the climate?",
    "What causes earthquakes?",
    "When did the Western Roman Empire fall?",
    "How do volcanoes erupt?",
    "Where were the first modern Olympic Games held?",
    "What is the capital of Japan?",
    "What is the climate of the Mekong Delta like?",
    "Who founded the Nguyen dynasty?",
    "When was Son Doong cave discovered?",
    "What is the theory of relativity?",
    "How did the Tran dynasty defeat the Mongol invasions?",
    "What is the main religion in Thailand?",
    "Which archipelagos in the South China Sea does Vietnam claim?",
    "When did Da Nang become a centrally governed city?",
    "What is the atomic number of carbon?",
    "How is rice grown in the Red River Delta?",
    "Who designed the Long Bien Bridge?",
    "What happened during the August Revolution of 1945?",
    "What did the 1954 Geneva Accords decide?",
    "When was Vietnam National University, Hanoi established?",
    "What is the largest animal on Earth?",
    "How is solar energy used in Vietnam?",
    "How has science and technology cooperation between Vietnam and Japan developed?",
    "What did the STS forum in Kyoto discuss in 2023?",
    "What does the Vietnam Japan innovation network do?",
    "How did Vietnam cooperate with UNESCO and WIPO in 2022?",
    "Who discovered penicillin?",
    "What is the speed of light in a vacuum?",
    "When was the Ho Chi Minh Mausoleum built?",
    "How many ethnic groups live in Vietnam?",
    "What is the longest river in Asia?",
]


def bench_questions() -> list[str]:
    """200 questions: 70 Vietnamese, the same 70 typed without diacritics (as users often do), 60 English.

    Interleaved so every slice (warm-up, rotating filters) mixes the three kinds.
    """
    from rag.text import strip_diacritics

    vi = QUESTIONS_VI
    nodiac = [strip_diacritics(q) for q in QUESTIONS_VI]
    en = QUESTIONS_EN
    assert (len(vi), len(nodiac), len(en)) == (70, 70, 60)
    out: list[str] = []
    for i in range(70):
        out.append(vi[i])
        out.append(nodiac[(i + 35) % 70])  # not right after its accented twin
        if i < len(en):
            out.append(en[i])
    return out


# ---------------------------------------------------------------- embedders


class HashEmbedder:
    """Deterministic pseudo-random unit vectors seeded from a hash of the text. For BUILDING only."""

    name = HASH_MODEL
    dim = HASH_DIM

    def __init__(self) -> None:
        self.seconds = 0.0

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        out = np.stack([self._vector(x) for x in texts]) if texts else np.zeros((0, self.dim), np.float32)
        self.seconds += time.perf_counter() - start
        return out

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.embed_documents(texts)


class RealQueryEmbedder:
    """Answers to the hash embedder's name (so the index accepts it) but embeds QUERIES with the real model."""

    def __init__(self, real: Any, name: str = HASH_MODEL) -> None:
        if real.dim != HASH_DIM:
            raise SystemExit(f"the real model has dim {real.dim}, the synthetic vectors {HASH_DIM}")
        self.name = name
        self.dim = real.dim
        self._real = real

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError(
            "bench: document vectors of the synthetic index are hash vectors; not re-embedding"
        )

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._real.embed_queries(texts)


class TimedEmbedder:
    """Wraps a real embedder to accumulate the time spent in embed_documents during a build."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.seconds = 0.0

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        t = time.perf_counter()
        out = self.inner.embed_documents(texts)
        self.seconds += time.perf_counter() - t
        return out

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def release_bulk(self) -> bool:
        """Index.sync's end-of-embedding hook, passed on (the wrapped embedder may hold a bulk model)."""
        release = getattr(self.inner, "release_bulk", None)
        return bool(release()) if callable(release) else False


# ---------------------------------------------------------------- building


class PhaseClock:
    """`progress` callback for Index.sync: records when the embed+upsert loop starts and ends.

    `at_end` snapshots the instrumented counters when the loop ends, to split work done inside it.
    """

    def __init__(self, counters: dict[str, float]) -> None:
        self.counters = counters
        self.start: float | None = None
        self.end: float | None = None
        self.at_end: dict[str, float] = {}
        self.peak_rss_mb_at_end: float | None = None  # VmHWM when the embed loop ended (embedding's peak)

    def __call__(self, items: Iterable[Any], total: int, label: str) -> Iterable[Any]:
        def run() -> Iterator[Any]:
            if self.start is None:
                self.start = time.perf_counter()
            yield from items
            self.end = time.perf_counter()
            self.at_end = dict(self.counters)
            self.peak_rss_mb_at_end = _peak_rss_mb()

        return run()


# Functions rag.index calls per chunk during ingest, timed by a bench-only wrapper: name -> phase label.
_INSTRUMENTED = {"index_tokens": "pyvi_tokenise", "extract_entities": "entity_extraction"}


@contextlib.contextmanager
def instrumented_ingest() -> Iterator[dict[str, float]]:
    """Accumulate the time rag.index spends in its per-chunk helpers (those it has) during Index.sync."""
    import rag.index as index_module

    spent: dict[str, float] = {}
    originals: dict[str, Any] = {}

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t

        return wrapper

    for name, label in _INSTRUMENTED.items():
        fn = getattr(index_module, name, None)
        if callable(fn):
            originals[name] = fn
            spent[label] = 0.0
            setattr(index_module, name, wrap(label, fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(index_module, name, fn)


def make_settings(home: Path) -> Any:
    from rag.config import BUNDLED_MODEL, Settings

    return Settings(_env_file=None, home=home, embedding_model=BUNDLED_MODEL, corpus_dir=REPO / "corpus")


def timed_sync(settings: Any, paths: list[Path], embedder: Any) -> dict[str, Any]:
    """Index.sync with wall time split into phases.

    Phases: load+clean+chunk (before the embed loop); document embedding, entity extraction and Chroma
    upserts (the embed loop; upsert = loop minus the other two); pyvi tokenisation and entity extraction
    after the loop; the rest (BM25 build, writing chunks/tokens/vectors/manifest) as bm25_build_and_write.
    """
    from rag.index import Index

    timed = TimedEmbedder(embedder)
    t0 = time.perf_counter()
    with instrumented_ingest() as spent:
        clock = PhaseClock(spent)
        index = Index.open(settings, must_exist=False)
        report = index.sync(paths, timed, progress=clock)
    t1 = time.perf_counter()
    start = clock.start or t0
    end = clock.end or start
    in_loop = {k: clock.at_end.get(k, 0.0) for k in spent}
    after_loop = {k: spent[k] - in_loop[k] for k in spent}
    phases = {
        "load_clean_chunk": start - t0,
        "embed_documents": timed.seconds,
        "chroma_upsert": (end - start) - timed.seconds - sum(in_loop.values()),
        **spent,
        "bm25_build_and_write": (t1 - end) - sum(after_loop.values()),
    }
    return {
        "seconds": round(t1 - t0, 2),
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "docs": len(report.added) + len(report.updated) + len(report.unchanged),
        "chunks": report.total_chunks,
        "skipped": len(report.skipped),
        "rag_code": rag_fingerprint(),
        # ru_maxrss of this process, which did nothing heavier before the build: the ingest's peak.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # The peak up to the end of the embed + Chroma loop (the rest is pyvi, entities, BM25, writing).
        "peak_rss_mb_embed_loop": clock.peak_rss_mb_at_end,
    }


def rag_fingerprint() -> dict[str, str]:
    """What built the index: the git commit and a hash of the ingest code (a changed index.py may store more)."""
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    h = hashlib.sha256()
    for name in ("index.py", "chunk.py", "clean.py", "load.py", "text.py", "entities.py"):
        path = REPO / "rag" / name
        if path.exists():
            h.update(path.read_bytes())
    return {"commit": commit, "ingest_code_sha256": h.hexdigest()[:16]}


def extract_viwiki(archive: Path, dest: Path) -> Path:
    if not archive.exists():
        raise SystemExit(f"{archive} not found (see /work/shared/corpora/README.md); pass --viwiki")
    subprocess.run(["tar", "xJf", str(archive), "-C", str(dest)], check=True)
    root = dest / "viwiki"
    return root if root.is_dir() else dest


def write_synthetic_docs(
    articles_dir: Path, out_dir: Path, target_chunks: int, settings: Any
) -> dict[str, Any]:
    """Write .md files (front matter: id, title, date, source, language) until ~target_chunks chunks.

    Chunk counts come from the real load -> clean -> chunk pipeline (counted once per article, reused for
    its repeats). Articles are taken in a fixed shuffled order so a small target is a representative slice.
    """
    from rag.chunk import chunk_document
    from rag.clean import clean_document
    from rag.errors import BadInput
    from rag.load import load_file

    articles = sorted(articles_dir.glob("*.txt"))
    order = np.random.default_rng(0).permutation(len(articles))
    counts: dict[int, int] = {}
    total = files = 0
    rep = 0
    while total < target_chunks:
        progressed = False
        for k in order:
            if total >= target_chunks:
                break
            path = articles[int(k)]
            doc_id = f"viwiki-{int(k):05d}" + (f"-r{rep}" if rep else "")
            title = path.stem + (f" (bản {rep + 1})" if rep else "")
            meta = synthetic_meta(doc_id)
            body = path.read_text(encoding="utf-8", errors="replace")
            if rep:
                # A repeat must differ in its text, or ingest skips it as a copy of the original.
                body = f"Bản sao thứ {rep} của bài viết này, dùng để đo hiệu năng.\n\n{body}"
            front = "\n".join(
                [
                    "---",
                    f"id: {json.dumps(doc_id)}",
                    f"title: {json.dumps(title, ensure_ascii=False)}",
                    f"date: {json.dumps(meta['date'])}",
                    f"source: {json.dumps(meta['source'], ensure_ascii=False)}",
                    f"language: {meta['language']}",
                    "---",
                    "",
                ]
            )
            target = out_dir / f"{doc_id}.md"
            target.write_text(front + body, encoding="utf-8")
            if int(k) not in counts:
                try:
                    doc = clean_document(load_file(target))
                    counts[int(k)] = len(
                        chunk_document(doc, settings.chunk_words, settings.chunk_overlap_words)
                    )
                except BadInput:
                    counts[int(k)] = 0
            if counts[int(k)] == 0:
                target.unlink()
                continue
            total += counts[int(k)]
            files += 1
            progressed = True
        if not progressed:
            raise SystemExit("the article folder yields no chunks")
        rep += 1
    return {"files": files, "estimated_chunks": total, "repeats": rep, "articles": len(articles)}


def dir_size(path: Path) -> dict[str, Any]:
    """Bytes on disk (allocated blocks) per top-level entry, and the total."""
    parts: dict[str, int] = {}
    for entry in sorted(path.iterdir()):
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        parts[entry.name] = sum(f.stat().st_blocks * 512 for f in files)
    return {"total_bytes": sum(parts.values()), "parts_bytes": parts}


def cached_build(home: Path, settings: Any, **expect: Any) -> dict[str, Any] | None:
    """The recorded build of a cached index, or None when there is none (or it was built for other params)."""
    cache = home / "bench_build.json"
    if not (cache.exists() and settings.manifest_path.exists()):
        return None
    info = json.loads(cache.read_text(encoding="utf-8"))
    if any(info.get(k) != v for k, v in expect.items()):
        return None
    info["cached"] = True
    if info.get("rag_code", {}).get("ingest_code_sha256") != rag_fingerprint()["ingest_code_sha256"]:
        info["stale"] = "built by different ingest code than the current rag/ (pass --rebuild)"
        log.warning("%s was built by different ingest code; its numbers may not match the current code", home)
    return info


def build_seed(home: Path, real: Any, rebuild: bool) -> dict[str, Any]:
    settings = make_settings(home)
    cache = home / "bench_build.json"
    info = None if rebuild else cached_build(home, settings)
    if info is not None:
        return info
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log.info("building the seed index in %s", home)
    info = timed_sync(settings, [REPO / "corpus"], real)
    info["embedding"] = f"real ({real.name})"
    cache.write_text(json.dumps(info, indent=1), encoding="utf-8")
    info["cached"] = False
    return info


class GaussHashEmbedder(HashEmbedder):
    """HashEmbedder under another name: an index whose chunk vectors `covariance_matched_chunks` replaced."""

    name = GAUSS_MODEL


@contextlib.contextmanager
def covariance_matched_chunks(
    real_vectors: np.ndarray, sample: tuple[Any, int] | None = None, sample_stats: dict[str, Any] | None = None
) -> Iterator[None]:
    """While building, each chunk's vector is drawn (seeded by a hash of its text) from a Gaussian with the
    mean and covariance of `real_vectors` (real chunk vectors of the bundled model), then normalised.

    Hash vectors are isotropic: every direction carries the same variance, unlike any sentence
    embedding, whose variance sits in a few directions. That spectrum decides how an approximate or
    reduced search ranks (HNSW, the dense shortlist); with it, those numbers mean something. Sentence
    vectors (the extractive answerer's) stay hash vectors.

    `sample` = (real embedder, n): the first n chunks (whole batches) are embedded for real by that
    embedder, as ingest does (chunk and sentence vectors real), so whatever it loads - the bulk bfloat16
    torch model - is in the build process from the start of the embed loop to its end, as in a real
    ingest; `sample_stats` receives the chunks and seconds that took.
    """
    from rag.index import Index

    mean = real_vectors.mean(axis=0)
    values, axes = np.linalg.eigh(np.cov(real_vectors, rowvar=False))
    factor = (axes * np.sqrt(np.clip(values, 0, None))).astype(np.float32)  # cov = factor @ factor.T
    original = Index._embed_batch

    sampled = {"chunks": 0, "seconds": 0.0}

    def patched(self: Any, batch: list[Any], embedder: Any) -> np.ndarray:
        if sample is not None and sampled["chunks"] < sample[1]:
            t = time.perf_counter()
            vectors = original(self, batch, sample[0])
            sampled["seconds"] += time.perf_counter() - t
            sampled["chunks"] += len(batch)
            if sample_stats is not None:
                sample_stats.update(chunks=sampled["chunks"], seconds=round(sampled["seconds"], 1))
            return vectors
        original(self, batch, embedder)  # the sentence store and the work of a real batch
        z = np.stack([
            np.random.default_rng(int.from_bytes(hashlib.blake2b(c.text.encode("utf-8"), digest_size=8).digest(), "big"))
            .standard_normal(len(mean)) for c in batch
        ]).astype(np.float32)
        v = mean + z @ factor.T
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    Index._embed_batch = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        Index._embed_batch = original  # type: ignore[method-assign]


def _rss_mb() -> float:
    """This process's resident memory now (VmRSS), MB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _recording_release(embedder: Any, stats: dict[str, Any]) -> Callable[[], bool]:
    """`embedder.release_bulk` (when it has one), noting the RSS just before and after it in `stats`."""

    def release() -> bool:
        before = _rss_mb()
        method = getattr(embedder, "release_bulk", None)
        released = bool(method()) if callable(method) else False
        stats.update(rss_mb_before_release=before, rss_mb_after_release=_rss_mb(), released=released)
        return released

    return release


def build_synthetic(
    home: Path,
    chunks: int,
    viwiki: Path,
    rebuild: bool,
    real_vectors: np.ndarray | None = None,
    bulk_sample: tuple[Any, int] | None = None,
) -> dict[str, Any]:
    """The synthetic index: hash chunk vectors, or with `real_vectors` covariance-matched ones (and with
    `bulk_sample` = (embedder, n), the first n chunks embedded for real by that embedder)."""
    settings = make_settings(home)
    cache = home / "bench_build.json"
    kind = "hash" if real_vectors is None else "covariance-matched"
    info = None if rebuild else cached_build(home, settings, target_chunks=chunks)
    if info is not None and info.get("vectors_kind", "hash") == kind:
        return info
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="viwiki-") as tmp:
        t = time.perf_counter()
        articles = extract_viwiki(viwiki, Path(tmp))
        docs_dir = Path(tmp) / "docs"
        docs_dir.mkdir()
        written = write_synthetic_docs(articles, docs_dir, chunks, settings)
        prep = time.perf_counter() - t
        log.info(
            "wrote %d documents (~%d chunks) in %.0f s; ingesting (pyvi segmentation is the long part)",
            written["files"],
            written["estimated_chunks"],
            prep,
        )
        sample_stats: dict[str, Any] = {}
        if real_vectors is None:
            info = timed_sync(settings, [docs_dir], HashEmbedder())
        else:
            with covariance_matched_chunks(real_vectors, bulk_sample, sample_stats):
                build_embedder = GaussHashEmbedder()
                if bulk_sample is not None:  # Index.sync's end-of-embedding hook reaches the sample's model
                    build_embedder.release_bulk = _recording_release(  # type: ignore[attr-defined]
                        bulk_sample[0], sample_stats
                    )
                info = timed_sync(settings, [docs_dir], build_embedder)
    info.update(
        target_chunks=chunks,
        corpus_prep_s=round(prep, 2),
        written=written,
        vectors_kind=kind,
        embedding=(
            "synthetic document vectors (bench-hash-384); query embedding real" if real_vectors is None else
            f"synthetic chunk vectors with the covariance of {len(real_vectors)} real chunk vectors "
            "(bench-gauss-384); query embedding real"
        ),
    )
    if bulk_sample is not None:
        # The sample was embedded inside the embed loop but not through the timed embedder: its own phase.
        phases = info["phases_s"]
        phases["bulk_bf16_sample_embed"] = sample_stats.get("seconds", 0.0)
        phases["chroma_upsert"] = round(phases["chroma_upsert"] - phases["bulk_bf16_sample_embed"], 2)
        bulk_state = bulk_sample[0].__dict__.get("_bulk_state", {})
        info["bulk_bf16_sample"] = {
            **sample_stats,
            "runtime": f"{bulk_sample[0].runtime} + {bulk_sample[0].bulk_runtime or 'no bulk path'}",
            "bulk_model_loaded": bool(bulk_state) and not bulk_state.get("failed", False),
            "note": "these chunks embedded for real (bulk bfloat16 on) in the build process; the rest synthetic",
        }
    cache.write_text(json.dumps(info, indent=1), encoding="utf-8")
    info["cached"] = False
    return info


# ---------------------------------------------------------------- measuring


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "mean": round(float(a.mean()), 2),
        "max": round(float(a.max()), 2),
    }


def iso_date(number: int) -> str:
    """YYYYMMDD (MetadataColumns.date) back to an ISO date."""
    n = int(number)
    return f"{n // 10000:04d}-{n // 100 % 100:02d}-{n % 100:02d}"


def sources_near_2pct(index: Any) -> tuple[list[str], dict[str, float]]:
    """Outlets (case-folded) holding 1-4% of the rows (all outlets if none do), and every outlet's share."""
    cols = index.columns
    counts = np.bincount(cols.codes["source"], minlength=len(cols.vocab["source"]))
    share = {v: float(counts[code]) / max(len(cols), 1) for v, code in cols.vocab["source"].items()}
    near = [v for v, sh in share.items() if v and 0.01 <= sh <= 0.04]
    return near or [v for v in share if v], share


def filter_makers(index: Any) -> dict[str, Callable[[int], Any]]:
    """Per filter kind, a function query-number -> Filters (None = unfiltered), with realistic selectivity."""
    from rag.retrieve import Filters

    cols = index.columns
    rng = np.random.default_rng(7)
    dates = np.sort(cols.date[cols.date > 0])
    windows: list[tuple[str, str]] = []
    for p in rng.uniform(0.0, 0.8, size=64):  # a window holding ~20% of the dated rows
        lo, hi = int(p * len(dates)), min(len(dates) - 1, int((p + 0.2) * len(dates)))
        windows.append((iso_date(dates[lo]), iso_date(dates[hi])) if len(dates) else ("2000-01-01", "2000-12-31"))
    sources = sources_near_2pct(index)[0]
    makers: dict[str, Callable[[int], Any]] = {
        "none": lambda i: None,
        "date": lambda i: Filters(
            date_from=windows[i % len(windows)][0], date_to=windows[i % len(windows)][1]
        ),
        "language": lambda i: Filters(languages=("vi",)),
    }
    if sources:
        makers["source"] = lambda i: Filters(sources=(sources[i % len(sources)],))
    return makers


def run_queries(
    retriever: Any, questions: list[str], make_filter: Callable[[int], Any], warmup: int, answerer: Any = None
) -> dict[str, Any]:
    """Latency of retrieve() per stage; with `answerer`, also the extractive answer step on its hits
    ("answer") and both together ("retrieve_answer")."""
    from rag.text import detect_language

    columns = retriever.index.columns
    for i, q in enumerate(questions[:warmup]):
        res = retriever.retrieve(q, filters=make_filter(i))
        if answerer is not None:
            answerer.answer(res.plan, res.hits)
    series: dict[str, list[float]] = {"total": []}
    by_lang: dict[str, list[float]] = {}
    selectivity: list[float] = []
    hits = 0
    for i, q in enumerate(questions):
        f = make_filter(i)
        if f is not None:
            selectivity.append(float(f.row_mask(columns).mean()))
        forget_queries(retriever.embedder)  # each row asks the same questions: none is embedded already
        res = retriever.retrieve(q, filters=f)
        tm = res.timings_ms
        hits += len(res.hits)
        for stage, ms in tm.items():
            series.setdefault(stage, []).append(ms)
        series.setdefault("other", []).append(tm["total"] - sum(v for k, v in tm.items() if k != "total"))
        if answerer is not None:
            t = time.perf_counter()
            answerer.answer(res.plan, res.hits)
            answer_ms = (time.perf_counter() - t) * 1000
            series.setdefault("answer", []).append(answer_ms)
            series.setdefault("retrieve_answer", []).append(tm["total"] + answer_ms)
        by_lang.setdefault(detect_language(q), []).append(tm["total"])
    return {
        "queries": len(questions),
        "selectivity_mean": round(float(np.mean(selectivity)), 4) if selectivity else 1.0,
        "mean_hits": round(hits / max(len(questions), 1), 2),
        "ms": {s: stats(v) for s, v in series.items()},
        "total_ms_by_query_language": {k: stats(v) for k, v in sorted(by_lang.items())},
    }


def forget_queries(embedder: Any) -> None:
    """Empty the embedder's query-vector cache (rag.embed keeps the last few hundred questions)."""
    for e in (embedder, getattr(embedder, "_real", None)):
        cache = getattr(e, "__dict__", {}).get("_query_cache")
        if cache is not None:
            cache.clear()


def first_query(retriever: Any, question: str) -> dict[str, Any]:
    """The first retrieve() after Index.open: lazy loads (Chroma's HNSW file, caches) land here."""
    t = time.perf_counter()
    res = retriever.retrieve(question)
    wall = (time.perf_counter() - t) * 1000
    return {
        "question": question,
        "wall_ms": round(wall, 1),
        "timings_ms": {k: round(v, 1) for k, v in res.timings_ms.items()},
    }


def chroma_vs_ours(
    index: Any, real: Any, questions: list[str], candidates: int, warmup: int
) -> dict[str, Any]:
    """Dense search at ~2% selectivity: exact dot products over allowed rows vs Chroma's `where` filter.

    Also unfiltered: the exact pass over the whole matrix (what retrieve uses up to
    RAG_EXACT_SEARCH_MAX_ROWS chunks) vs Chroma's HNSW index (used above that), with HNSW's recall.
    """
    from rag.retrieve import Filters

    col = index.collection()
    original_case = {c.source.casefold(): c.source for c in index.chunks.values()}
    sources, share = sources_near_2pct(index)
    vectors = real.embed_queries(questions)
    out: dict[str, Any] = {}

    def measure(fn: Callable[[int], list[str]]) -> tuple[list[float], list[list[str]]]:
        for i in range(warmup):
            fn(i)
        times, results = [], []
        for i in range(len(questions)):
            t = time.perf_counter()
            ids = fn(i)
            times.append((time.perf_counter() - t) * 1000)
            results.append(ids)
        return times, results

    def ours_filtered(i: int) -> list[str]:
        mask = Filters(sources=(sources[i % len(sources)],)).row_mask(index.columns)
        return [cid for cid, _ in index.dense_search(vectors[i], candidates, np.flatnonzero(mask))]

    def chroma_filtered(i: int) -> list[str]:
        src = original_case[sources[i % len(sources)]]
        res = col.query(
            query_embeddings=[vectors[i].tolist()],
            n_results=candidates,
            where={"source": src},
            include=["distances"],
        )
        return list(res["ids"][0])

    all_rows = np.arange(len(index.vectors))

    def ours_exact_all(i: int) -> list[str]:
        return [cid for cid, _ in index.dense_search(vectors[i], candidates, all_rows)]

    def chroma_hnsw(i: int) -> list[str]:
        # What retrieve uses unfiltered above RAG_EXACT_SEARCH_MAX_ROWS chunks.
        res = col.query(query_embeddings=[vectors[i].tolist()], n_results=candidates, include=["distances"])
        return list(res["ids"][0])

    def ours_unfiltered(i: int) -> list[str]:
        return [cid for cid, _ in index.dense_search(vectors[i], candidates, None)]

    t_ours, r_ours = measure(ours_filtered)
    t_chroma, r_chroma = measure(chroma_filtered)
    overlap = [len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(r_ours, r_chroma, strict=True)]
    out["source_filter_2pct"] = {
        "selectivity_mean": round(float(np.mean([share[s] for s in sources])), 4),
        "ours_exact_rows_ms": stats(t_ours),
        "chroma_where_ms": stats(t_chroma),
        "top_k_overlap_mean": round(float(np.mean(overlap)), 3),
        "note": "mask + np.flatnonzero included in ours; query vectors pre-computed for both",
    }
    shortlist = index.shortlist
    index.shortlist = None  # the exact pass, as reference
    t_exact, r_exact = measure(ours_unfiltered)
    t_rows, _ = measure(ours_exact_all)
    index.shortlist = shortlist
    t_hnsw, r_hnsw = measure(chroma_hnsw)
    recall = [len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(r_exact, r_hnsw, strict=True)]
    out["unfiltered"] = {
        "exact_ms": stats(t_exact),
        "exact_all_rows_ms": stats(t_rows),
        "chroma_hnsw_ms": stats(t_hnsw),
        "hnsw_recall_vs_exact": round(float(np.mean(recall)), 3),
        "dense_shortlist": None if shortlist is None else {"size": shortlist.size, "probe_recall": round(shortlist.recall, 4)},
        "note": "exact = Index.dense_search(rows=None) below RAG_EXACT_SEARCH_MAX_ROWS; exact_all_rows = "
        "Index.dense_search(rows=every row), the path of a ~100% filter; HNSW recall on synthetic (random) "
        "document vectors is a worst case for HNSW",
    }
    if shortlist is not None:
        t_short, r_short = measure(ours_unfiltered)
        t_short_rows, _ = measure(ours_exact_all)
        same = [len(set(a) & set(b)) / max(len(a), 1) for a, b in zip(r_exact, r_short, strict=True)]
        out["unfiltered"].update(
            shortlist_ms=stats(t_short),
            shortlist_all_rows_ms=stats(t_short_rows),
            shortlist_recall_vs_exact=round(float(np.mean(same)), 4),
            # Same set of top-k ids; their order may differ only between equal scores (a repeated
            # article's unchanged chunks have the same text, hence the same synthetic vector).
            shortlist_identical_top_k=sum(set(a) == set(b) for a, b in zip(r_exact, r_short, strict=True)),
        )
    return out


def bm25_topk_diagnostic(index: Any, questions: list[str], candidates: int) -> dict[str, Any]:
    """BM25Field.search as used by retrieve vs a reference: bm25s scores + top-k over the non-zero scores.

    bm25s's own retrieve() selects with np.argpartition(scores, -k), which numpy makes pathologically slow
    (~15-30 ms at 100k rows) on a mostly-zero score vector, i.e. short or filtered queries. This keeps an
    eye on BM25Field.search staying near the reference.
    """
    from rag.retrieve import plan_query

    cases: dict[str, np.ndarray | None] = {"none": None}
    make_source_filter = filter_makers(index).get("source")
    if make_source_filter is not None:
        cases["source"] = make_source_filter(0).row_mask(index.columns)
    out: dict[str, Any] = {}
    for name, mask in cases.items():
        weight = None if mask is None else mask.astype(np.float32)
        current, nonzero_topk = [], []
        for q in questions:
            tokens = [t for t in plan_query(q, None).bm25_tokens if t in index.accented.vocab]
            if not tokens:
                continue
            t = time.perf_counter()
            a = index.accented.search(tokens, candidates, weight)
            current.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            scores = index.accented.retriever.get_scores(tokens, weight_mask=weight)
            nz = np.flatnonzero(scores)
            top = (
                nz[np.argpartition(-scores[nz], candidates - 1)[:candidates]] if len(nz) > candidates else nz
            )
            top = top[np.argsort(-scores[top], kind="stable")]
            b = [index.accented.ids[int(r)] for r in top]
            nonzero_topk.append((time.perf_counter() - t) * 1000)
            if {cid for cid, _ in a} != set(b):
                log.debug("bm25 diagnostic: different top-k for %r (ties)", q)
        out[name] = {
            "bm25field_search_ms": stats(current),
            "scores_then_nonzero_topk_ms": stats(nonzero_topk),
        }
    return out


def real_weights(real: Any) -> Any:
    """The fusion weights retrieve() would use with the real model (they may depend on the embedder's name,
    and the synthetic index answers to the hash embedder's name)."""
    import rag.retrieve as retrieve_module

    weights_for = getattr(retrieve_module, "weights_for", None)
    return weights_for(real.name) if callable(weights_for) else None


def measure_corpus(
    label: str,
    home: Path,
    build: dict[str, Any],
    query_embedder: Any,
    real: Any,
    questions: list[str],
    warmup: int,
    lexicon: Any,
    compare_chroma: bool,
) -> dict[str, Any]:
    from rag.answer import ExtractiveAnswerer
    from rag.index import Index
    from rag.retrieve import HybridRetriever

    settings = make_settings(home)
    t = time.perf_counter()
    index = Index.open(settings)
    open_s = time.perf_counter() - t
    retriever = HybridRetriever(index, query_embedder, settings, lexicon=lexicon, weights=real_weights(real))
    result: dict[str, Any] = {
        "corpus": label,
        "home": str(home),
        "chunks": len(index.chunks),
        "documents": len(index.manifest.get("docs", {})),
        "embedding_model_recorded": index.embedding_model,
        "build": build,
        "disk": dir_size(home),
        "open_s": round(open_s, 2),
        "filters": {},
    }
    result["first_query"] = first_query(retriever, questions[0])
    for kind, make in filter_makers(index).items():
        log.info("%s: %d queries, filter=%s", label, len(questions), kind)
        load_before = os.getloadavg()[0]
        # The extractive answer reads the sentence vectors stored at ingest; on the synthetic index
        # they are hash vectors (similarities meaningless, the work the same), and `query_embedder`
        # refuses to embed passages, so a missing stored vector would fail loudly, not slow down.
        answerer = ExtractiveAnswerer(index, query_embedder, lexicon, settings.min_evidence)
        result["filters"][kind] = run_queries(retriever, questions, make, warmup, answerer)
        result["filters"][kind]["loadavg_1m_before_after"] = [
            round(load_before, 2),
            round(os.getloadavg()[0], 2),
        ]
    if compare_chroma:
        log.info("%s: dense search, ours vs Chroma where", label)
        result["dense_comparison"] = chroma_vs_ours(index, real, questions, settings.candidates, warmup)
        result["bm25_topk_diagnostic"] = bm25_topk_diagnostic(index, questions, settings.candidates)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def serve_memory(home: Path, queries: int) -> dict[str, Any]:
    """Peak RSS of a fresh process that opens the index the way the app does (`rag.service.Service`,
    extractive answers) and answers `queries` bench questions, cycling through the four filter kinds."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-rss", str(home), "--queries", str(queries)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode != 0:
        log.warning("serve-rss failed: %s", out.stderr[-2000:])
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM where /proc has it (ru_maxrss of a child started by fork+exec
    also counts the parent's memory at the fork), else ru_maxrss."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _serve_rss_child(home: Path, queries: int) -> int:
    from rag.chain import Pipeline
    from rag.config import apply_thread_limits
    from rag.embed import LoadedEmbedder, load_embedder
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from rag.service import Service

    settings = make_settings(home)
    apply_thread_limits(settings)
    real = load_embedder(settings).embedder
    rss_model = _peak_rss_mb()

    def factory(s: Any) -> Any:
        index = Index.open(s)
        embedder = real if index.embedding_model == real.name else RealQueryEmbedder(real, index.embedding_model)
        return Pipeline(s, LoadedEmbedder(embedder), index, default_lexicon(), reranker=None)

    t = time.perf_counter()
    service = Service(settings, pipeline_factory=factory)
    service.start()
    open_s = time.perf_counter() - t
    rss_open = _peak_rss_mb()
    makers = filter_makers(service.pipeline.index)
    kinds = list(makers)
    for i, q in enumerate(bench_questions()[:queries]):
        service.ask(q, filters=makers[kinds[i % len(kinds)]](i))
    print(json.dumps({
        "queries": queries,
        "filters": kinds,
        "open_s": round(open_s, 2),
        "peak_rss_mb_model_loaded": rss_model,
        "peak_rss_mb_index_open": rss_open,
        "peak_rss_mb": _peak_rss_mb(),
        "dense_shortlist": None if service.pipeline.index.shortlist is None else service.pipeline.index.shortlist.size,
    }))
    return 0


def estimate_real_embedding(home: Path, real: Any, sample: int = 64) -> dict[str, Any]:
    """How long the real model would take to embed this corpus's chunks (sampled)."""
    from rag.index import Index

    index = Index.open(make_settings(home))
    ids = list(index.chunks)
    pick = [
        index.chunks[ids[int(i)]] for i in np.random.default_rng(1).choice(len(ids), sample, replace=False)
    ]
    # What ingest does per batch of chunks: embed each title/sentence once, chunk vectors from them.
    index._embed_batch(pick[:4], real)
    t = time.perf_counter()
    index._embed_batch(pick, real)
    per_chunk = (time.perf_counter() - t) / sample
    return {
        "sample_chunks": sample,
        "s_per_chunk": round(per_chunk, 4),
        "estimated_s_for_corpus": round(per_chunk * len(ids)),
    }


# ---------------------------------------------------------------- report


def environment() -> dict[str, Any]:
    import bm25s
    import chromadb
    import torch

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "chromadb": chromadb.__version__,
        "bm25s": bm25s.__version__,
        "torch": torch.__version__,
    }


def markdown(results: dict[str, Any]) -> str:
    stages = [
        st
        for st in (*STAGES, "other", "answer", "retrieve_answer")
        if any(st in r["ms"] for c in results["corpora"] for r in c["filters"].values())
    ]
    settings_note = f"lexicon: {results['lexicon']}; BLAS threads: {results.get('blas_threads') or 'default'}"
    lines = [
        f"Retrieval latency (ms), {results['queries']} questions per row after {results['warmup']} warm-up; "
        f"{settings_note}; target p95 total <= {TARGET_P95_MS:.0f} ms.",
        "",
        "| corpus | chunks | filter | selectivity | total p50 | total p95 | total p99 | total mean | "
        + " | ".join(f"{st} p50/p95" for st in stages)
        + " | p95 ok | load 1m |",
        "|---|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(stages) + ":-:|---:|",
    ]
    empty = {"p50": 0.0, "p95": 0.0}
    for c in results["corpora"]:
        for kind, r in c["filters"].items():
            ms = r["ms"]
            pair = "{p50:.1f} / {p95:.1f}".format
            lines.append(
                f"| {c['corpus']} | {c['chunks']:,} | {kind} | {r['selectivity_mean']:.1%} | {ms['total']['p50']:.1f} "
                f"| {ms['total']['p95']:.1f} | {ms['total']['p99']:.1f} | {ms['total']['mean']:.1f} | "
                + " | ".join(pair(**ms.get(st, empty)) for st in stages)
                + f" | {'yes' if ms['total']['p95'] <= TARGET_P95_MS else 'NO'} "
                f"| {max(r.get('loadavg_1m_before_after', [0.0])):.1f} |"
            )
    lines += [
        "",
        "| corpus | build (s) | phases (s) | index on disk | open (s) | first query (ms) | peak RSS (MB): build "
        "/ app serving / this bench | vectors |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for c in results["corpora"]:
        b = c["build"]
        phases = ", ".join(f"{k} {v:g}" for k, v in b.get("phases_s", {}).items())
        cached = " (cached build)" if b.get("cached") else ""
        stale = " STALE: built by other ingest code" if b.get("stale") else ""
        total = c["disk"]["total_bytes"]
        size = ", ".join(
            f"{k} {v / 2**20:.1f}" for k, v in c["disk"]["parts_bytes"].items() if v >= 0.02 * total
        )
        fq = c.get("first_query", {})
        fq_parts = ", ".join(f"{k} {v:g}" for k, v in fq.get("timings_ms", {}).items() if k != "total")
        lines.append(
            f"| {c['corpus']} | {b['seconds']:g}{cached}{stale} | {phases} | {total / 2**20:.1f} MB "
            f"({size}) | {c['open_s']:g} | {fq.get('wall_ms', 0):g} ({fq_parts}) | {b.get('peak_rss_mb', '?')} / "
            f"{c.get('serve', {}).get('peak_rss_mb', '?')} / {c['peak_rss_mb']:g} "
            f"| {b.get('embedding', '')} |"
        )
    langs = ("vi", "vi_nodiac", "en")
    lines += [
        "",
        "Total p50 / p95 (ms) by question language:",
        "",
        "| corpus | filter | " + " | ".join(langs) + " |",
        "|---|---|" + "---:|" * len(langs),
    ]
    for c in results["corpora"]:
        for kind, r in c["filters"].items():
            by = r["total_ms_by_query_language"]
            cells = [
                f"{by[lg]['p50']:.1f} / {by[lg]['p95']:.1f} (n={by[lg]['n']})" if lg in by else ""
                for lg in langs
            ]
            lines.append(f"| {c['corpus']} | {kind} | " + " | ".join(cells) + " |")
    for c in results["corpora"]:
        cmp_ = c.get("dense_comparison")
        if not cmp_:
            continue
        s, u = cmp_["source_filter_2pct"], cmp_["unfiltered"]
        lines += [
            "",
            f"Dense search only, {c['corpus']} ({c['chunks']:,} chunks), top-{results['candidates']} (ms):",
            "",
            "| case | p50 | p95 | p99 | mean | agreement |",
            "|---|---:|---:|---:|---:|---|",
            f"| source filter ~{s['selectivity_mean']:.1%}: exact dot product over allowed rows (ours) "
            f"| {s['ours_exact_rows_ms']['p50']} | {s['ours_exact_rows_ms']['p95']} | {s['ours_exact_rows_ms']['p99']} "
            f"| {s['ours_exact_rows_ms']['mean']} | |",
            f"| source filter ~{s['selectivity_mean']:.1%}: Chroma `where` | {s['chroma_where_ms']['p50']} "
            f"| {s['chroma_where_ms']['p95']} | {s['chroma_where_ms']['p99']} | {s['chroma_where_ms']['mean']} "
            f"| top-k overlap {s['top_k_overlap_mean']:.0%} |",
            f"| unfiltered: exact pass over all vectors (used by retrieve) | {u['exact_ms']['p50']} "
            f"| {u['exact_ms']['p95']} | {u['exact_ms']['p99']} | {u['exact_ms']['mean']} | |",
            f"| unfiltered: Chroma HNSW (used above RAG_EXACT_SEARCH_MAX_ROWS) | {u['chroma_hnsw_ms']['p50']} "
            f"| {u['chroma_hnsw_ms']['p95']} | {u['chroma_hnsw_ms']['p99']} | {u['chroma_hnsw_ms']['mean']} "
            f"| recall vs exact {u['hnsw_recall_vs_exact']:.0%} |",
            f"| every row allowed: `Index.dense_search(rows=all)` (the path of a wide filter) "
            f"| {u['exact_all_rows_ms']['p50']} | {u['exact_all_rows_ms']['p95']} "
            f"| {u['exact_all_rows_ms']['p99']} | {u['exact_all_rows_ms']['mean']} | |",
        ]
        if "shortlist_ms" in u:
            sl, sla = u["shortlist_ms"], u["shortlist_all_rows_ms"]
            lines += [
                f"| unfiltered: shortlist of {u['dense_shortlist']['size']} (reduced vectors) + exact rescoring "
                f"(used by retrieve) | {sl['p50']} | {sl['p95']} | {sl['p99']} | {sl['mean']} "
                f"| recall vs exact {u['shortlist_recall_vs_exact']:.1%}, same top-k set "
                f"{u['shortlist_identical_top_k']}/{results['queries']} |",
                f"| every row allowed, shortlist | {sla['p50']} | {sla['p95']} | {sla['p99']} | {sla['mean']} | |",
            ]
    for c in results["corpora"]:
        diag = c.get("bm25_topk_diagnostic")
        if not diag:
            continue
        lines += [
            "",
            f"BM25 accented field, {c['corpus']}: `BM25Field.search` vs the same scores + top-k over non-zero "
            "scores (ms, p50 / p95):",
            "",
            "| filter | BM25Field.search | scores + non-zero top-k |",
            "|---|---:|---:|",
        ]
        for name, d in diag.items():
            a, b = d["bm25field_search_ms"], d["scores_then_nonzero_topk_ms"]
            lines.append(f"| {name} | {a['p50']} / {a['p95']} | {b['p50']} / {b['p95']} |")
    for c in results["corpora"]:
        if c["corpus"].startswith("synthetic"):
            lines += [
                "",
                f"{c['corpus']}: document vectors synthetic; query embedding real "
                f"({results['real_model']}). Chunk text: real Vietnamese Wikipedia.",
            ]
            est = c.get("real_embedding_estimate")
            if est:
                lines.append(
                    f"Embedding these {c['chunks']:,} chunks with the real model would take "
                    f"≈{est['estimated_s_for_corpus'] / 60:.0f} min ({est['s_per_chunk'] * 1000:.0f} ms/chunk)."
                )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("seed", "synthetic", "all"), default="all")
    parser.add_argument("--chunks", type=int, default=100_000, help="target chunks of the synthetic index")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(tempfile.gettempdir()) / "rag-bench",
        help="cache folder for the built indexes (seed/ and synthetic-N/ inside)",
    )
    parser.add_argument("--viwiki", type=Path, default=VIWIKI)
    parser.add_argument("--queries", type=int, default=200, help="questions per row (at most 200)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true", help="ignore cached indexes")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or reuse) the indexes, measure nothing"
    )
    parser.add_argument("--no-chroma-compare", action="store_true")
    parser.add_argument(
        "--vectors", choices=("covariance", "hash"), default="covariance",
        help="synthetic chunk vectors: drawn with the covariance of real chunk vectors (default; needs "
        "--real-chunks chunks embedded once with the bundled model, cached under --home) or isotropic hashes",
    )
    parser.add_argument("--real-chunks", type=int, default=4000, help="real chunks embedded for the covariance")
    parser.add_argument(
        "--bulk-bf16-sample",
        type=int,
        default=0,
        metavar="N",
        help="synthetic build only: embed its first N chunks (~8 per article) for real with "
        "RAG_EMBEDDING_BULK_BF16=on, the bfloat16 torch path `rag ingest` takes on AMX/AVX512-BF16 CPUs, "
        "so the build's peak RSS includes that path's memory (the bulk model is loaded from the first "
        "batch to the end of the embed loop, as in a real ingest); the rest get synthetic vectors. Index "
        "under --home/synthetic-<chunks>-bf16-<N>. Slow where bfloat16 is emulated (no AMX/AVX512-BF16); "
        "run once without it first so the --real-chunks vectors are cached and not embedded in the same "
        "process. 0 (default) = off",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="numpy BLAS threads while measuring, as RAG_BLAS_THREADS in the app (default 1; 0 = library default)",
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="JSON results (default bench/results.json; with --build-only, written only when given)",
    )
    parser.add_argument("--serve-rss", type=Path, default=None, help=argparse.SUPPRESS)  # the child of serve_memory
    args = parser.parse_args(argv)
    if args.serve_rss is not None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        return _serve_rss_child(args.serve_rss, args.queries)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("chromadb", "httpx", "sentence_transformers", "rag.index"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    from rag.embed import load_embedder

    args.home.mkdir(parents=True, exist_ok=True)
    real_settings = make_settings(args.home)
    if args.bulk_bf16_sample:  # the query model and the bulk path in one embedder, as `rag ingest` loads them
        real_settings = real_settings.model_copy(update={"embedding_bulk_bf16": "on"})
    real = load_embedder(real_settings).embedder
    try:
        from rag.lexicon import default_lexicon

        lexicon: Any = default_lexicon()
        lexicon_note = f"default ({len(lexicon)} entries)"
    except Exception as exc:  # rag.gazetteer may not exist yet
        lexicon, lexicon_note = None, f"none ({type(exc).__name__}: {exc})"
        log.warning("lexicon unavailable, benchmarking without it: %s", exc)
    questions = bench_questions()[: args.queries]

    results: dict[str, Any] = {
        "issue_target": "retrieval p95 <= 50 ms at 100k chunks, 2 cores, query embedding and filters included",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        "real_model": real.name,
        "real_model_runtime": getattr(real, "runtime", "?"),
        "lexicon": lexicon_note,
        "queries": len(questions),
        "warmup": args.warmup,
        "candidates": make_settings(args.home).candidates,
        "corpora": [],
    }
    builds: dict[str, tuple[Path, dict[str, Any]]] = {}
    if args.corpus in ("seed", "all"):
        home = args.home / "seed"
        builds["seed"] = (home, build_seed(home, real, args.rebuild))
    if args.corpus in ("synthetic", "all"):
        home = args.home / (
            f"synthetic-{args.chunks}" + (f"-bf16-{args.bulk_bf16_sample}" if args.bulk_bf16_sample else "")
        )
        label = f"synthetic-{args.chunks // 1000}k" if args.chunks >= 1000 else f"synthetic-{args.chunks}"
        real_vectors = None
        if args.vectors == "covariance":
            from dense_shortlist import real_vectors as embed_real_chunks

            real_vectors = embed_real_chunks(args.home / "real-vectors", args.real_chunks)[0]
        bulk_sample = (real, args.bulk_bf16_sample) if args.bulk_bf16_sample and real_vectors is not None else None
        if args.bulk_bf16_sample and bulk_sample is None:
            raise SystemExit("--bulk-bf16-sample needs --vectors covariance")
        builds[label] = (
            home, build_synthetic(home, args.chunks, args.viwiki, args.rebuild, real_vectors, bulk_sample)
        )
    if args.build_only:
        built = {k: b for k, (_, b) in builds.items()}
        print(json.dumps(built, indent=1, ensure_ascii=False))
        if args.out is not None:
            record = {k: results[k] for k in ("command", "environment", "real_model", "real_model_runtime")}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps({**record, "builds": built}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        return 0
    if args.out is None:
        args.out = REPO / "bench" / "results.json"

    # The app limits BLAS at its edge (RAG_BLAS_THREADS, default 1); measure the same way.
    from rag.config import apply_thread_limits

    apply_thread_limits(make_settings(args.home).model_copy(update={"blas_threads": args.blas_threads}))
    results["blas_threads"] = args.blas_threads
    for label, (home, build) in builds.items():
        synthetic = label != "seed"
        entry = measure_corpus(
            label,
            home,
            build,
            RealQueryEmbedder(real, json.loads((home / "manifest.json").read_text())["embedding_model"])
            if synthetic else real,
            real,
            questions,
            args.warmup,
            lexicon,
            compare_chroma=synthetic and not args.no_chroma_compare,
        )
        if synthetic:
            entry["vectors"] = "document vectors synthetic; query embedding real"
            entry["real_embedding_estimate"] = estimate_real_embedding(home, real)
        log.info("%s: peak RSS of a process serving it like the app", label)
        entry["serve"] = serve_memory(home, len(questions))
        results["corpora"].append(entry)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
