"""The index: Chroma vectors + two in-process BM25 fields over the same chunk ids, kept in sync by a manifest.

Layout under RAG_HOME (every file readable on its own):
  manifest.json     documents, their content hashes and chunk ids, the embedding model that built the vectors
  chunks.jsonl      every chunk with its metadata and text (the chunk store)
  tokens.jsonl      BM25 tokens per chunk, cached so a rebuild does not re-segment unchanged text
  bm25/accented/    bm25s index over segmented, lower-cased tokens
  bm25/plain/       bm25s index over the same tokens without diacritics (unaccented queries)
  vectors.npy       one float32 vector per chunk, rows in chunk-store order (exact dense search)
  sentences.npy     float16 vectors of every quotable sentence of every chunk, chunk after chunk
  sentences.npz     per chunk row: first row in sentences.npy (`offsets`) and a digest of its sentences
  chroma/           Chroma PersistentClient data (unless RAG_CHROMA_HOST points to a server)

Crash safety: Chroma is updated first, per document; chunk store, BM25 and manifest are then replaced
atomically, the manifest last. A run killed midway leaves the old manifest, so the next run redoes the
interrupted documents, and a final sweep makes Chroma's ids equal the chunk store's.

Embedding, the cost of ingest: every sentence of a batch of chunks is embedded once (a sentence shared
by two overlapping chunks, and the title every chunk of a document carries, only once), and a chunk's
vector is the word-weighted mean of its title's and sentences' vectors (the same windowed-mean idea the
embedder uses for long texts, with sentences as the windows: every token counts, none is embedded
twice). The sentence vectors are kept for the extractive answerer, which would otherwise embed the
sentences of every retrieved chunk at question time (`Index.sentence_vectors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunk import chunk_document
from rag.clean import clean_document
from rag.config import Settings
from rag.embed import Embedder
from rag.entities import Entities, extract_entities
from rag.errors import BadInput, IndexMissing, IndexModelMismatch
from rag.guard import Limits, storage_error, store_unavailable
from rag.load import Skipped, discover, iter_documents
from rag.text import index_tokens, split_sentences, strip_tokens
from rag.types import Chunk, Document

log = logging.getLogger(__name__)

PIPELINE_VERSION = "2"  # bump when cleaning/chunking/tokenising changes, to re-process every document
_EMBED_BATCH = 64
_INGEST_BATCH = 512  # chunks loaded, embedded and sent to Chroma per step of a streamed ingest


@dataclass
class IngestReport:
    """What an ingest run did; printed by the CLI."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    total_chunks: int = 0
    reembedded_for_model: bool = False

    def summary(self) -> str:
        """One line for logs, the CLI and the admin tab."""
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
            f"{self.chunks_embedded} chunks embedded, {self.total_chunks} chunks in the index"
        )


def _atomic_write(path: Path, text: str | Iterable[str]) -> None:
    """Replace `path` with `text` (a string, or lines written one by one so a 100k-chunk store is
    never one string in memory) through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        if isinstance(text, str):
            f.write(text)
        else:
            f.writelines(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _chunk_from_json(d: dict[str, Any]) -> Chunk:
    return Chunk(**{k: d[k] for k in Chunk.__dataclass_fields__ if k in d})


def _doc_hash(raw_text: str, meta: dict[str, str], settings: Settings) -> str:
    h = hashlib.sha256()
    for part in (PIPELINE_VERSION, str(settings.chunk_words), str(settings.chunk_overlap_words), raw_text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    h.update(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def date_number(value: str, *, end: bool = False) -> int:
    """An ISO date ('2025', '2025-03' or '2025-03-14') as YYYYMMDD; a partial date covers its whole
    year or month (`end` picks its last day). 0 for an empty or unreadable date."""
    parts = (value or "").strip()[:10].split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else (12 if end else 1)
        day = int(parts[2]) if len(parts) > 2 else (31 if end else 1)
    except ValueError:
        return 0
    return year * 10000 + month * 100 + day


@dataclass(frozen=True)
class MetadataColumns:
    """Chunk metadata in index row order: dates as YYYYMMDD integers (0 = unknown) and the text fields
    as integer codes, so filtering 100k rows costs well under a millisecond (string/object compares
    cost several)."""

    date: np.ndarray
    codes: dict[str, np.ndarray]
    vocab: dict[str, dict[str, int]]

    @classmethod
    def build(cls, chunks: list[Chunk]) -> MetadataColumns:
        fields = {
            "source": [c.source.casefold() for c in chunks],
            "doc_id": [c.doc_id for c in chunks],
            "language": [c.language for c in chunks],
        }
        codes: dict[str, np.ndarray] = {}
        vocab: dict[str, dict[str, int]] = {}
        for name, values in fields.items():
            table: dict[str, int] = {}
            codes[name] = np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int32, count=len(values))
            vocab[name] = table
        date = np.fromiter((date_number(c.date) for c in chunks), dtype=np.int32, count=len(chunks))
        return cls(date=date, codes=codes, vocab=vocab)

    def __len__(self) -> int:
        return len(self.date)

    def is_in(self, name: str, values: Iterable[str]) -> np.ndarray:
        """Rows whose `name` field (source values compared case-insensitively) is one of `values`."""
        table = self.vocab[name]
        wanted = [table[v] for v in {v.casefold() if name == "source" else v for v in values} if v in table]
        column = self.codes[name]
        if len(wanted) == 1:
            return column == wanted[0]
        return np.isin(column, wanted)

    def date_between(self, date_from: str, date_to: str) -> np.ndarray:
        """Rows dated within [date_from, date_to] (either may be empty); undated rows never match."""
        mask = self.date > 0
        if date_from:
            mask &= self.date >= date_number(date_from)
        if date_to:
            mask &= self.date <= date_number(date_to, end=True)
        return mask


class _SentenceSpill:
    """Quotable-sentence vectors of the chunks embedded by a run, parked in an unnamed temporary file
    under the index home until the sentence store is written: at 100k chunks they are ~640 MB of
    float16 an ingest would otherwise hold in memory. The file vanishes when closed, even on a crash.

    Maps chunk id -> (sentences key, float16 vectors), like the dict it replaces.
    """

    def __init__(self, home: Path) -> None:
        self._home = home
        self._file: Any = None
        self._rows: dict[str, tuple[bytes, int, int]] = {}  # chunk id -> (key, first row, count)
        self._count = 0
        self._dim = 0

    def __setitem__(self, chunk_id: str, value: tuple[bytes, np.ndarray]) -> None:
        key, vectors = value
        block = np.ascontiguousarray(vectors, dtype=np.float16)
        if block.size:
            if self._file is None:
                self._home.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self._home, prefix=".sentences-")  # noqa: SIM115 - closed by close()
                self._dim = block.shape[1]
            self._file.seek(self._count * self._dim * 2)
            self._file.write(block.tobytes())
        self._rows[chunk_id] = (key, self._count, len(block))
        self._count += len(block)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._rows

    def __getitem__(self, chunk_id: str) -> tuple[bytes, np.ndarray]:
        key, start, count = self._rows[chunk_id]
        if not count:
            return key, np.zeros((0, self._dim), dtype=np.float16)
        # Read, not memory-mapped: mapped pages would count in the process's resident memory.
        self._file.flush()
        data = os.pread(self._file.fileno(), count * self._dim * 2, start * self._dim * 2)
        return key, np.frombuffer(data, dtype=np.float16).reshape(count, self._dim)

    def key_and_count(self, chunk_id: str) -> tuple[bytes, int]:
        """A chunk's sentences key and number of vectors, without reading them."""
        key, _, count = self._rows[chunk_id]
        return key, count

    def __len__(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._rows, self._count = None, {}, 0


@dataclass(frozen=True)
class DenseShortlist:
    """A PCA-reduced float32 copy of the chunk vectors for the first step of the dense pass.

    The exact pass reads every vector for every query (100k x 384 float32 = 154 MB: memory-bound). This
    reads `dims` of the 384 coordinates instead, along the vectors' principal axes, takes the `size`
    best rows and rescores them with the exact vectors. Sentence embeddings concentrate in a few
    directions, so the reduced dot product ranks nearly like the full one; random vectors do not,
    which is why `build` measures the shortlist on the index's own rows and returns None (exact pass)
    unless it keeps at least `min_recall` of the exact top-k.
    """

    projection: np.ndarray  # (dim, dims) principal axes
    reduced: np.ndarray  # (rows, dims) = vectors @ projection
    size: int  # rows rescored exactly per query
    recall: float  # measured share of the exact top-k inside the shortlist

    @classmethod
    def build(
        cls, vectors: np.ndarray, k: int, *, dims: int = 128, sizes: tuple[int, ...] = (20, 40),
        min_recall: float = 0.995, probes: int = 64,
    ) -> DenseShortlist | None:
        """The smallest shortlist (`sizes` are multiples of `k`) whose recall of the exact top-`k`, for
        `probes` of the index's own vectors used as queries, is at least `min_recall`; else None.

        The probes (two rows' mean) are easier than real questions: with real MiniLM questions over
        100k covariance-matched vectors, 128 dims keep 99.9% of the exact top-40 in a shortlist of 400
        and 99.97% in one of 800 (bench/dense_shortlist.py), hence 20 x k at the least."""
        n = len(vectors)
        if vectors.ndim != 2 or n == 0 or dims >= vectors.shape[1] or k <= 0 or max(sizes) * k * 4 > n:
            return None
        step = max(1, n // 8192)
        sample = np.asarray(vectors[::step], dtype=np.float32)
        _, axes = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
        projection = np.ascontiguousarray(axes[:, ::-1][:, :dims], dtype=np.float32)
        reduced = np.empty((n, dims), dtype=np.float32)
        for start in range(0, n, 8192):
            reduced[start : start + 8192] = vectors[start : start + 8192] @ projection
        # Probe queries: rows spread over the index, nudged off themselves (a query is not a chunk).
        rng = np.random.default_rng(0)
        picked = np.asarray(vectors[np.sort(rng.choice(n, size=min(probes, n), replace=False))], dtype=np.float32)
        queries = picked + np.asarray(vectors[np.sort(rng.choice(n, size=len(picked), replace=False))], np.float32)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        exact = _blocked_dot(np.asarray(vectors), queries)
        approx = _blocked_dot(reduced, queries @ projection)
        widest = max(sizes) * k
        recalls = {size: [] for size in sizes}
        for e, a in zip(exact, approx, strict=True):
            truth = set(np.argpartition(-e, k - 1)[:k].tolist())
            best = np.argpartition(-a, widest - 1)[:widest]
            best = best[np.argsort(-a[best], kind="stable")]
            for size in sizes:
                recalls[size].append(len(truth & set(best[: size * k].tolist())) / k)
        for size in sorted(sizes):
            recall = float(np.mean(recalls[size]))
            if recall >= min_recall:
                return cls(projection, reduced, size * k, recall)
        log.info("Dense shortlist off: recall %.3f < %.3f on this index's vectors.", np.mean(recalls[widest // k]), min_recall)
        return None

    def top_rows(self, queries: np.ndarray, rows: np.ndarray | None, excluded: np.ndarray | None) -> list[np.ndarray]:
        """Per query, the shortlisted rows (sorted): among `rows` when given, else among the rows not
        `excluded`."""
        reduced_queries = np.asarray(queries, dtype=np.float32) @ self.projection
        if rows is not None:
            sims = _blocked_dot(self.reduced[rows], reduced_queries)
        else:
            sims = _blocked_dot(self.reduced, reduced_queries)
            if excluded is not None:
                sims[:, excluded] = -np.inf
        out = []
        for s in sims:
            best = np.argpartition(-s, self.size - 1)[: self.size]
            out.append(np.sort(best if rows is None else rows[best]))
        return out


class BM25Field:
    """One bm25s index plus its row -> chunk id mapping."""

    def __init__(self, retriever: Any, ids: list[str]) -> None:
        self.retriever = retriever
        self.ids = ids
        self.vocab: dict[str, int] = retriever.vocab_dict if retriever is not None else {}

    @classmethod
    def build(cls, ids: list[str], tokens: list[list[str]]) -> BM25Field:
        import bm25s

        # bm25s pins its logger to DEBUG at import; leave the level to the application's logging setup.
        logging.getLogger("bm25s").setLevel(logging.NOTSET)

        if not ids:
            return cls(None, [])
        retriever = bm25s.BM25()
        if retriever.method == "lucene" and retriever.idf_method in (None, "lucene") and retriever.delta == 0.5:
            # bm25s's own build holds a list of token ids per document and three full-length arrays it
            # sorts as int64 keys, at the moment of a 100k-chunk ingest's peak RSS.
            scores, vocab = _bm25_lucene_matrix(tokens, retriever.k1, retriever.b)
            retriever.scores, retriever.vocab_dict = scores, vocab
            retriever.unique_token_ids_set = set(vocab.values())
            retriever.nonoccurrence_array = None
        else:  # pragma: no cover - a bm25s whose defaults changed: its own build
            retriever.index(tokens, show_progress=False)
        return cls(retriever, ids)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.retriever is not None:
            self.retriever.save(str(directory), show_progress=False)
        (directory / "ids.json").write_text(json.dumps(self.ids), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> BM25Field:
        import bm25s

        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
        if not ids:
            return cls(None, [])
        return cls(bm25s.BM25.load(str(directory), show_progress=False), ids)

    def idf(self, token: str) -> float | None:
        """BM25-style idf of a token, or None when the token never occurs in the index."""
        col = self.vocab.get(token)
        if self.retriever is None or col is None:
            return None
        indptr = self.retriever.scores["indptr"]
        df = int(indptr[col + 1] - indptr[col])
        n = len(self.ids)
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5))) if df else None

    def search(self, tokens: list[str], k: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, score) with score > 0; `mask` (0/1 per row) restricts the candidates."""
        known = [t for t in tokens if t in self.vocab]
        if self.retriever is None or not known or k <= 0:
            return []
        # Scores for every row, then top-k among the non-zero ones: at 100k chunks this is ~1 ms where
        # bm25s's own retrieve() (sorting every row) costs ~15 ms.
        scores = np.asarray(self.retriever.get_scores(known), dtype=np.float32)
        if mask is not None:
            scores = scores * mask
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(self.ids[int(r)], float(scores[r])) for r in order]


class Index:
    """Chroma + BM25 over one chunk store. Open with `Index.open(settings)`; build with `sync`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.manifest: dict[str, Any] = {"version": 1, "embedding_model": "", "dim": 0, "docs": {}}
        self.chunks: dict[str, Chunk] = {}
        self.accented: BM25Field = BM25Field(None, [])
        self.plain: BM25Field = BM25Field(None, [])
        self._collection: Any = None
        self._row_of: dict[str, int] = {}
        self.vectors = np.zeros((0, 0), dtype=np.float32)  # rows aligned with the chunk store order
        self.shortlist: DenseShortlist | None = None  # first step of the dense pass on large indexes
        self.columns = MetadataColumns.build([])
        self._new_vectors: dict[str, np.ndarray] = {}
        # Quotable-sentence vectors: float16 rows (memory-mapped), a slice per chunk row, and a digest
        # of each chunk's sentences so a change in how sentences are cut is detected, not misread.
        self._sentence_matrix: np.ndarray = np.zeros((0, 0), dtype=np.float16)
        self._sentence_offsets: np.ndarray = np.zeros(1, dtype=np.int64)
        self._sentence_keys: np.ndarray = np.zeros(0, dtype="S16")
        self._new_sentences = _SentenceSpill(self.home)
        self.entities: dict[str, Entities] = {}  # chunk id -> places, organisations, people, programmes, sectors
        self._new_entities: dict[str, tuple[str, Entities]] = {}
        self._compounds: frozenset[tuple[str, ...]] | None = None
        self.phrase_cache: dict[tuple[str, ...], bool] = {}  # answer.py: does a phrase occur in the corpus?

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, settings: Settings, *, must_exist: bool = True) -> Index:
        """Load manifest, chunk store and BM25; raise IndexMissing when nothing was built yet."""
        index = cls(settings)
        manifest_path = settings.manifest_path
        if not manifest_path.exists():
            if must_exist:
                raise IndexMissing(detail=str(manifest_path))
            return index
        index.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        chunks_path = index.home / "chunks.jsonl"
        if chunks_path.exists():
            with chunks_path.open(encoding="utf-8") as f:
                for line in f:
                    c = _chunk_from_json(json.loads(line))
                    index.chunks[c.chunk_id] = c
        if (index.home / "bm25" / "accented" / "ids.json").exists():
            index.accented = BM25Field.load(index.home / "bm25" / "accented")
            index.plain = BM25Field.load(index.home / "bm25" / "plain")
        index._row_of = {cid: i for i, cid in enumerate(index.accented.ids)}
        index.entities = {
            cid: ents
            for cid, (key, ents) in index._load_entity_cache().items()
            if cid in index.chunks and key == _text_key(index.chunks[cid])
        }
        vectors_path = index.home / "vectors.npy"
        if vectors_path.exists():
            # Mapped, not read: the exact rescoring touches a few hundred rows per query on a large
            # index, and instances on one machine share the pages.
            index.vectors = np.asarray(np.load(vectors_path, mmap_mode="r"))
        if len(index.vectors) != len(index.chunks):
            index.vectors = index._vectors_from_chroma(list(index.chunks))
        index._load_sentence_store()
        index._build_columns()
        index._build_shortlist()
        return index

    def _build_shortlist(self) -> None:
        n = len(self.vectors)
        min_rows = self.settings.dense_shortlist_min_rows
        self.shortlist = None
        if min_rows and n >= min_rows:
            self.shortlist = DenseShortlist.build(self.vectors, self.settings.candidates)

    def _load_sentence_store(self) -> None:
        """Map sentences.npy (not read into memory) when it matches the chunk rows; else leave it empty."""
        rows_path, matrix_path = self.home / "sentences.npz", self.home / "sentences.npy"
        if not (rows_path.exists() and matrix_path.exists()):
            return
        with np.load(rows_path) as rows:
            offsets, keys = rows["offsets"], rows["keys"]
        matrix = np.load(matrix_path, mmap_mode="r")
        if len(offsets) == len(self.accented.ids) + 1 and int(offsets[-1]) == len(matrix):
            self._sentence_matrix, self._sentence_offsets, self._sentence_keys = matrix, offsets, keys

    def sentence_vectors(self, chunk_id: str, sentences: list[str]) -> np.ndarray | None:
        """The ingest-time vectors of `sentences` of a chunk (float32, one row each), or None when the
        index has none for exactly these sentences (older index, or sentences cut differently)."""
        row = self._row_of.get(chunk_id)
        if row is None or row + 1 >= len(self._sentence_offsets) or not sentences:
            return None
        start, end = int(self._sentence_offsets[row]), int(self._sentence_offsets[row + 1])
        if end - start != len(sentences) or self._sentence_keys[row] != _sentences_key(sentences):
            return None
        return np.asarray(self._sentence_matrix[start:end], dtype=np.float32)

    @property
    def compounds(self) -> frozenset[tuple[str, ...]]:
        """Tone-free multi-syllable words of the corpus, e.g. ('doanh', 'nghiep'); guides segmentation."""
        if self._compounds is None:
            self._compounds = frozenset(tuple(t.split("_")) for t in self.plain.vocab if "_" in t)
        return self._compounds

    @property
    def embedding_model(self) -> str:
        return str(self.manifest.get("embedding_model", ""))

    def check_model(self, embedder: Embedder) -> None:
        """Refuse to mix vectors: the query embedder must be the one that built the index."""
        built_with = self.embedding_model
        if built_with and built_with != embedder.name:
            raise IndexModelMismatch(
                f"The index was built with embedding model '{built_with}' but '{embedder.name}' is loaded; "
                "run `rag ingest` to re-embed the documents with the current model.",
                f"Chỉ mục được tạo bằng mô hình '{built_with}' nhưng đang dùng '{embedder.name}'; "
                "hãy chạy `rag ingest` để nhúng lại tài liệu bằng mô hình hiện tại.",
            )

    def collection(self) -> Any:
        """The Chroma collection (embedded PersistentClient or a `chroma run` server)."""
        if self._collection is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            chroma_settings = ChromaSettings(anonymized_telemetry=False)
            if self.settings.chroma_host:
                client = chromadb.HttpClient(
                    host=self.settings.chroma_host, port=self.settings.chroma_port, settings=chroma_settings
                )
            else:
                self.settings.chroma_dir.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(self.settings.chroma_dir), settings=chroma_settings)
            self._client = client
            self._collection = client.get_or_create_collection(
                self.settings.collection, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        return self._collection

    def _reset_collection(self) -> None:
        self.collection()
        with contextlib.suppress(Exception):  # already gone
            self._client.delete_collection(self.settings.collection)
        self._collection = None
        self.collection()

    # ------------------------------------------------------------ queries
    def dense_search(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, cosine similarity) for one query vector; see `dense_search_many`."""
        return self.dense_search_many(np.asarray(vector)[None, :], k, rows)[0]

    def dense_search_many(
        self, vectors: np.ndarray, k: int, rows: np.ndarray | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-k (chunk id, cosine similarity) for each row of `vectors`.

        Exact dot products over the in-memory matrix (rows aligned with the chunk store; `open` and
        `sync` always load it): filtered queries score only the allowed `rows` (Chroma's `where` costs
        ~35 ms at 100k vectors and 2% selectivity, this well under 1 ms), unfiltered ones the whole
        matrix (~5-16 ms at 100k on one core: memory-bound, recall 100%). From
        `settings.dense_shortlist_min_rows` chunks on, when the index's vectors allow it, the pass reads
        a reduced copy first and rescores a shortlist exactly (`DenseShortlist`). Above
        `settings.exact_search_max_rows` chunks, unfiltered queries go to Chroma's HNSW index instead
        (all vectors in one request).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(self.accented.ids)  # equals Chroma's count (sync's sweep keeps them equal); count() costs ~6 ms
        if n == 0 or (rows is not None and len(rows) == 0):
            return [[] for _ in vectors]
        if rows is None and n > self.settings.exact_search_max_rows:
            try:
                res = self.collection().query(
                    query_embeddings=vectors.tolist(), n_results=min(k, n), include=["distances"]
                )
            except Exception as exc:  # a stopped server: one sentence; the next query simply retries
                down = store_unavailable(exc)
                if down is None:
                    raise
                raise down from exc
            return [
                [(cid, 1.0 - float(d)) for cid, d in zip(ids, dists, strict=True)]
                for ids, dists in zip(res["ids"], res["distances"], strict=True)
            ]
        ids = self.accented.ids
        allowed = n if rows is None else len(rows)
        # A wide filter is one pass over the whole matrix and a mask: cheaper than copying most rows.
        wide = rows is None or len(rows) > n // 5
        excluded = None
        if rows is not None and wide:
            excluded = np.ones(n, dtype=bool)
            excluded[rows] = False
        count = min(k, allowed)
        shortlist = self.shortlist
        if shortlist is not None and k <= self.settings.candidates and allowed >= 4 * shortlist.size:
            # Large index: shortlist in the reduced vectors, then the exact scores of the shortlisted rows.
            results = []
            for vector, candidates in zip(vectors, shortlist.top_rows(vectors, None if wide else rows, excluded),
                                          strict=True):
                sims = self.vectors[candidates] @ vector
                top = np.argpartition(-sims, count - 1)[:count]
                top = top[np.argsort(-sims[top], kind="stable")]
                results.append([(ids[int(candidates[i])], float(sims[i])) for i in top])
            return results
        subset = None if wide else self.vectors[rows]
        results = []
        all_sims = _blocked_dot(self.vectors, vectors) if subset is None else None
        for j, vector in enumerate(vectors):
            if all_sims is not None:
                sims, positions = all_sims[j], None
                if excluded is not None:
                    sims[excluded] = -np.inf
            else:
                sims, positions = subset @ vector, rows
            top = np.argpartition(-sims, count - 1)[:count] if len(sims) > count else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            rows_of_top = top if positions is None else positions[top]
            results.append([(ids[int(r)], float(sims[i])) for r, i in zip(rows_of_top, top, strict=True)])
        return results

    def _build_columns(self) -> None:
        """Metadata as integer numpy columns in row order, so a filter is a few vectorised compares."""
        self.columns = MetadataColumns.build([self.chunks[cid] for cid in self.accented.ids if cid in self.chunks])

    def _vectors_from_chroma(self, ids: list[str]) -> np.ndarray:
        """Vectors for `ids` in that order, read back from Chroma (indexes built before vectors.npy)."""
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        col = self.collection()
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(ids), 2000):
            res = col.get(ids=ids[i : i + 2000], include=["embeddings"])
            for cid, emb in zip(res["ids"], res["embeddings"], strict=True):
                found[cid] = np.asarray(emb, dtype=np.float32)
        dim = len(next(iter(found.values()))) if found else 0
        return np.stack([found.get(cid, np.zeros(dim, dtype=np.float32)) for cid in ids]) if found else np.zeros((0, 0), np.float32)

    # ------------------------------------------------------------ ingest
    def sync(
        self,
        paths: list[Path],
        embedder: Embedder,
        *,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    ) -> IngestReport:
        """`_sync`, with a full disk turned into one sentence (`StorageFull`) and its temporary files removed:
        the files are replaced atomically, manifest last, so the previous index still answers."""
        try:
            return self._sync(paths, embedder, progress=progress)
        except Exception as exc:
            full = storage_error(exc)
            if full is None:
                down = store_unavailable(exc)
                if down is not None:
                    raise down from exc
                raise
            for leftover in self.home.glob(".*"):
                if leftover.name != ".bm25-old" and leftover.name.startswith(
                    (".chunks.", ".tokens.", ".entities.", ".manifest.", ".vectors-", ".bm25-", ".sentences-")
                ):
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            log.error("Ingest stopped, out of space: %s", full.detail)
            raise full from exc

    def _sync(
        self,
        paths: list[Path],
        embedder: Embedder,
        *,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    ) -> IngestReport:
        """Bring the index in line with the files under `paths`: add, replace and remove documents.

        Only documents whose source lies under one of `paths` can be removed, so ingesting an extra
        folder never drops the main corpus. Unchanged documents are not re-embedded.
        """
        report = IngestReport()
        files = discover(paths)
        if not files:
            # An empty folder is almost always a mistake; never treat it as "delete everything".
            raise BadInput(
                "No .txt, .md, .html or .pdf documents were found there; the index was not changed.",
                "Không tìm thấy tài liệu .txt, .md, .html hoặc .pdf nào ở đó; chỉ mục không bị thay đổi.",
            )
        roots = [Path(p).resolve() for p in paths]
        known: dict[str, dict[str, Any]] = self.manifest["docs"]

        model_changed = bool(self.embedding_model) and self.embedding_model != embedder.name
        if model_changed:
            log.warning("Embedding model changed from %s to %s: re-embedding all chunks.", self.embedding_model, embedder.name)
            self._reset_collection()
            report.reembedded_for_model = True
        col = self.collection()

        # Documents stream through load -> clean -> chunk -> embed -> Chroma in batches of about
        # _INGEST_BATCH chunks; only their chunks, vectors and entities stay in memory (the sentence
        # vectors go to a temporary file), never the whole corpus's raw text.
        seen_ids: set[str] = set()
        embedded: list[Chunk] = []
        pending: list[Chunk] = []
        new_docs: dict[str, dict[str, Any]] = {}
        stream: Iterable[Document | Skipped] = iter_documents(files, Limits.from_settings(self.settings))
        if progress is not None:
            stream = progress(stream, len(files), "Ingesting")  # one item per file
        for raw in stream:
            if isinstance(raw, Skipped):
                report.skipped.append(raw)
                continue
            meta = {k: getattr(raw, k) for k in ("title", "source", "date", "language", "url")}
            digest = _doc_hash(raw.text, meta, self.settings)
            seen_ids.add(raw.doc_id)
            old = known.get(raw.doc_id)
            if old and old["hash"] == digest and not model_changed:
                report.unchanged.append(raw.doc_id)
                continue
            doc = clean_document(raw)
            chunks = chunk_document(doc, self.settings.chunk_words, self.settings.chunk_overlap_words)
            if not chunks:
                report.skipped.append(
                    Skipped(raw.path, "no article text left after cleaning", "không còn nội dung sau khi làm sạch")
                )
                continue
            if old:  # the replaced document's chunks leave Chroma before the new ones arrive
                col.delete(where={"doc_id": raw.doc_id})
            (report.updated if old else report.added).append(raw.doc_id)
            new_docs[raw.doc_id] = {
                "path": raw.path,
                "hash": digest,
                "title": doc.title,
                "date": doc.date,
                "source": doc.source,
                "language": doc.language,
                "chunk_ids": [c.chunk_id for c in chunks],
                "added_at": _now_iso(),
            }
            pending.extend(chunks)
            if len(pending) >= _INGEST_BATCH:
                self._embed_and_store(pending, embedder, None)
                embedded.extend(pending)
                pending = []
        self._embed_and_store(pending, embedder, None)
        embedded.extend(pending)

        removed = [
            doc_id
            for doc_id, info in known.items()
            if doc_id not in seen_ids and _is_under(Path(info.get("path", "")), roots)
        ]
        report.removed = removed
        for doc_id in removed:
            col.delete(where={"doc_id": doc_id})
        if model_changed:  # every unchanged chunk must be re-embedded too
            unchanged_chunks = [c for c in self.chunks.values() if c.doc_id not in new_docs and c.doc_id not in removed]
            for i in range(0, len(unchanged_chunks), _INGEST_BATCH):
                self._embed_and_store(unchanged_chunks[i : i + _INGEST_BATCH], embedder, None)
            embedded.extend(unchanged_chunks)
        report.chunks_embedded = len(embedded)

        # Chunk store: drop removed/replaced docs, add new chunks.
        gone = set(removed) | set(new_docs)
        chunks_now = {cid: c for cid, c in self.chunks.items() if c.doc_id not in gone}
        for c in embedded:
            chunks_now[c.chunk_id] = c
        del embedded
        docs_now = {k: v for k, v in known.items() if k not in gone}
        docs_now.update(new_docs)
        self._sweep(chunks_now, embedder, progress)
        # Embedding is over: the bulk model (torch, ~1 GiB with its allocator) must not sit beside the
        # keyword-index build, the other memory peak of a large ingest.
        release = getattr(embedder, "release_bulk", None)
        if callable(release):
            release()
        self._write(chunks_now, docs_now, embedder)
        report.total_chunks = len(self.chunks)
        return report

    def remove_documents(self, doc_ids: list[str], embedder: Embedder) -> IngestReport:
        """Drop documents by id (whatever their files), from Chroma first, then the chunk store and BM25."""
        report = IngestReport()
        known: dict[str, dict[str, Any]] = self.manifest["docs"]
        gone = {d for d in doc_ids if d in known}
        col = self.collection()
        for doc_id in sorted(gone):
            col.delete(where={"doc_id": doc_id})
        report.removed = sorted(gone)
        chunks_now = {cid: c for cid, c in self.chunks.items() if c.doc_id not in gone}
        docs_now = {k: v for k, v in known.items() if k not in gone}
        self._sweep(chunks_now, embedder, None)
        self._write(chunks_now, docs_now, embedder)
        report.total_chunks = len(self.chunks)
        return report

    def _embed_and_store(
        self,
        chunks: list[Chunk],
        embedder: Embedder,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None,
    ) -> None:
        col = self.collection()
        batches = [chunks[i : i + _EMBED_BATCH] for i in range(0, len(chunks), _EMBED_BATCH)]
        iterator: Iterable[list[Chunk]] = progress(batches, len(batches), "Embedding") if progress else batches
        for batch in iterator:
            vectors = self._embed_batch(batch, embedder)
            for c, v in zip(batch, vectors, strict=True):
                self._new_vectors[c.chunk_id] = v
                self._new_entities[c.chunk_id] = (_text_key(c), extract_entities(c.text))
            col.upsert(
                ids=[c.chunk_id for c in batch],
                embeddings=vectors.tolist(),
                # The chunk text travels with its vector, so another instance sharing a Chroma server can
                # rebuild its keyword index from the server alone (rag.replica).
                documents=[c.text for c in batch],
                metadatas=[{**c.metadata(), **self._new_entities[c.chunk_id][1].as_metadata()} for c in batch],
            )

    def _embed_batch(self, batch: list[Chunk], embedder: Embedder) -> np.ndarray:
        """Chunk vectors for `batch`, each unique title/sentence embedded once; keeps the quotable
        sentences' vectors in `_new_sentences` for the sentence store."""
        units: dict[str, int] = {}  # text -> row in `vectors`
        plans: list[tuple[list[int], list[float], list[int]]] = []
        pieces_of: list[list[str]] = []
        for c in batch:
            pieces = [c.text[s:e] for s, e in split_sentences(c.text)]
            pieces_of.append(pieces)
            texts = ([c.title] if c.title.strip() else []) + pieces
            rows = [units.setdefault(t, len(units)) for t in texts]
            quotable = [units[p] for p in pieces if _is_quotable(p)]
            plans.append((rows, [float(len(t.split())) for t in texts], quotable))
        vectors = embedder.embed_documents(list(units))
        out = np.zeros((len(batch), vectors.shape[1] if len(vectors) else embedder.dim), dtype=np.float32)
        for i, (c, (rows, weights, quotable)) in enumerate(zip(batch, plans, strict=True)):
            if rows:
                mean = np.asarray(weights, dtype=np.float32) @ vectors[rows]
                out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            sentences = [t for t in pieces_of[i] if _is_quotable(t)]
            self._new_sentences[c.chunk_id] = (_sentences_key(sentences), vectors[quotable].astype(np.float16))
        return out

    def _sweep(
        self,
        chunks_now: dict[str, Chunk],
        embedder: Embedder,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None,
    ) -> None:
        """Make Chroma's ids exactly the chunk store's (repairs a previously interrupted run)."""
        col = self.collection()
        in_chroma = set(col.get(include=[])["ids"])
        extra = sorted(in_chroma - set(chunks_now))
        for i in range(0, len(extra), 1000):
            col.delete(ids=extra[i : i + 1000])
        missing = [chunks_now[cid] for cid in chunks_now if cid not in in_chroma]
        if missing:
            log.info("Repairing %d chunks missing from Chroma.", len(missing))
            self._embed_and_store(missing, embedder, progress)

    def _write(
        self, chunks_now: dict[str, Chunk], docs_now: dict[str, Any], embedder: Embedder, *, generation: str = ""
    ) -> None:
        """Replace chunk store, tokens, entities, BM25, vectors and (last) the manifest.

        `generation` identifies the index state; a new one is made for a local change and, with a Chroma
        server, published beside the vectors so other instances notice it. A mirror (rag.replica) passes
        the server's generation and publishes nothing.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        token_cache = self._load_token_cache()
        ids = list(chunks_now)
        tokens = []
        for cid in ids:
            if cid not in token_cache or token_cache[cid][0] != _text_key(chunks_now[cid]):
                fresh = [sys.intern(t) for t in index_tokens(_embedding_text(chunks_now[cid]))]
                token_cache[cid] = (_text_key(chunks_now[cid]), fresh)
            tokens.append(token_cache[cid][1])
        _atomic_write(
            self.home / "tokens.jsonl",
            (
                json.dumps({"chunk_id": cid, "key": token_cache[cid][0], "tokens": " ".join(token_cache[cid][1])}, ensure_ascii=False)
                + "\n"
                for cid in ids
            ),
        )
        del token_cache
        _atomic_write(
            self.home / "chunks.jsonl",
            (json.dumps(asdict(chunks_now[cid]), ensure_ascii=False) + "\n" for cid in ids),
        )
        entity_cache = {**self._load_entity_cache(), **self._new_entities}
        for cid in ids:
            key = _text_key(chunks_now[cid])
            if cid not in entity_cache or entity_cache[cid][0] != key:
                entity_cache[cid] = (key, extract_entities(chunks_now[cid].text))
        _atomic_write(
            self.home / "entities.jsonl",
            (
                json.dumps({"chunk_id": cid, "key": entity_cache[cid][0], **entity_cache[cid][1].as_metadata()},
                           ensure_ascii=False) + "\n"
                for cid in ids
            ),
        )
        accented = BM25Field.build(ids, tokens)
        plain_tokens = _plain_tokens(tokens)
        del tokens  # one field's token lists in memory at a time
        plain = BM25Field.build(ids, plain_tokens)
        del plain_tokens
        staging = Path(tempfile.mkdtemp(dir=self.home, prefix=".bm25-"))
        accented.save(staging / "accented")
        plain.save(staging / "plain")
        final = self.home / "bm25"
        if final.exists():
            old = self.home / ".bm25-old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        old_rows = {cid: i for i, cid in enumerate(self.accented.ids)} if len(self.vectors) == len(self.accented.ids) else {}
        missing = [cid for cid in ids if cid not in self._new_vectors and cid not in old_rows]
        recovered = dict(zip(missing, self._vectors_from_chroma(missing), strict=False)) if missing else {}
        dim = next((len(v) for v in self._new_vectors.values()), 0) or (
            self.vectors.shape[1] if self.vectors.ndim == 2 and len(self.vectors) else embedder.dim
        )
        vectors = np.zeros((len(ids), dim), np.float32)
        for i, cid in enumerate(ids):  # filled in place: no second copy of every row
            if cid in self._new_vectors:
                vectors[i] = self._new_vectors.pop(cid)
            elif cid in old_rows:
                vectors[i] = self.vectors[old_rows[cid]]
            else:
                vectors[i] = recovered[cid]
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".vectors-", suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, self.home / "vectors.npy")
        self._new_vectors = {}
        self._write_sentence_store(ids, old_rows, embedder)
        self.entities = {cid: entity_cache[cid][1] for cid in ids}
        self._new_entities = {}
        manifest = {"version": 1, "embedding_model": embedder.name, "dim": embedder.dim, "docs": docs_now,
                    "generation": generation or uuid.uuid4().hex}
        if self.settings.chroma_host and not generation:
            publish_state(self.settings, manifest)
        _atomic_write(self.settings.manifest_path, json.dumps(manifest, ensure_ascii=False, indent=1))
        self.manifest = manifest
        self.chunks = chunks_now
        self.accented, self.plain = accented, plain
        self._row_of = {cid: i for i, cid in enumerate(ids)}
        del vectors
        self.vectors = np.asarray(np.load(self.home / "vectors.npy", mmap_mode="r"))
        self._build_columns()
        self._build_shortlist()
        self._compounds = None
        self.phrase_cache = {}

    def _write_sentence_store(
        self, ids: list[str], old_rows: dict[str, int], embedder: Embedder
    ) -> None:
        """sentences.npy/.npz for the chunk rows `ids`: new vectors from this run, the rest copied from
        the current store, streamed to disk chunk by chunk. A chunk with neither (a mirror's chunks from
        a Chroma server, an index built before the store) gets an empty entry, and the answerer embeds
        its sentences when it quotes it, as it did before the store existed."""
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        keys = np.zeros(len(ids), dtype="S16")
        parts: list[str | int | None] = []  # a chunk id of this run, a row of the old store, or nothing
        for i, cid in enumerate(ids):
            part: str | int | None
            if cid in self._new_sentences:
                part = cid
                keys[i], count = self._new_sentences.key_and_count(cid)
            else:
                old = old_rows.get(cid)
                part = old if old is not None and old + 1 < len(self._sentence_offsets) else None
                if part is None:
                    keys[i], count = _NO_SENTENCES_KEY, 0
                else:
                    keys[i] = self._sentence_keys[part]
                    count = int(self._sentence_offsets[part + 1] - self._sentence_offsets[part])
            parts.append(part)
            offsets[i + 1] = offsets[i] + count
        dim = embedder.dim or (self.vectors.shape[1] if self.vectors.ndim == 2 else 0)
        read_old = _row_reader(self._sentence_matrix)
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".sentences-", suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                      "shape": (int(offsets[-1]), dim)}
            np.lib.format.write_array_header_1_0(f, header)
            for part in parts:
                if part is None:
                    continue
                if isinstance(part, int):
                    block = read_old(int(self._sentence_offsets[part]), int(self._sentence_offsets[part + 1]))
                else:
                    block = self._new_sentences[part][1]
                f.write(np.ascontiguousarray(block, dtype=np.float16).reshape(-1, dim).tobytes())
        fd, tmp_rows = tempfile.mkstemp(dir=self.home, prefix=".sentences-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, offsets=offsets, keys=keys)
        os.replace(tmp, self.home / "sentences.npy")
        os.replace(tmp_rows, self.home / "sentences.npz")
        self._new_sentences.close()
        self._sentence_offsets, self._sentence_keys = offsets, keys
        self._sentence_matrix = np.load(self.home / "sentences.npy", mmap_mode="r")

    def _load_entity_cache(self) -> dict[str, tuple[str, Entities]]:
        path = self.home / "entities.jsonl"
        cache: dict[str, tuple[str, Entities]] = {}
        if path.exists():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    cache[d["chunk_id"]] = (d["key"], Entities.from_metadata(d))
        return cache

    def _load_token_cache(self) -> dict[str, tuple[str, list[str]]]:
        path = self.home / "tokens.jsonl"
        cache: dict[str, tuple[str, list[str]]] = {}
        if path.exists():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    cache[d["chunk_id"]] = (d["key"], [sys.intern(t) for t in d["tokens"].split()])
        return cache


STATE_ID = "manifest"


def state_collection(settings: Settings) -> Any:
    """The small Chroma collection beside the vectors that holds the published manifest (server mode)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                 settings=ChromaSettings(anonymized_telemetry=False))
    return client.get_or_create_collection(f"{settings.collection}_state", embedding_function=None)


def publish_state(settings: Settings, manifest: dict[str, Any]) -> None:
    """Publish the manifest (documents, hashes, chunk ids, generation) for other instances to mirror."""
    state_collection(settings).upsert(
        ids=[STATE_ID], documents=[json.dumps(manifest, ensure_ascii=False)], embeddings=[[0.0]],
        metadatas=[{"generation": manifest["generation"]}],
    )


def read_state(settings: Settings) -> dict[str, Any] | None:
    """The manifest last published on the Chroma server, or None if nothing was published yet."""
    got = state_collection(settings).get(ids=[STATE_ID], include=["documents"])
    docs = got.get("documents") or []
    return json.loads(docs[0]) if docs else None


def read_generation(settings: Settings) -> str:
    """The published generation only (cheap: no manifest body), "" if none."""
    got = state_collection(settings).get(ids=[STATE_ID], include=["metadatas"])
    metas = got.get("metadatas") or []
    return str(metas[0].get("generation", "")) if metas else ""


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _embedding_text(chunk: Chunk) -> str:
    """What is BM25-indexed and what a chunk's vector stands for: the title gives every chunk its
    document's topic."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


_DOT_BLOCK = 2048  # rows (3 MB of float32): stays in cache while every query vector is applied to it


def _blocked_dot(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`vectors @ matrix.T`, reading the matrix from memory once for all query vectors.

    The pass over 100k x 384 floats is memory-bound; English questions have two query vectors, and
    two full passes cost twice the memory traffic. BLAS's matrix-matrix path for 2 columns is ~4x
    slower than matrix-vector products, so: matrix-vector products block by block, the block in cache.
    """
    if len(vectors) == 1:
        return (matrix @ vectors[0])[None, :]
    out = np.empty((len(vectors), len(matrix)), dtype=np.float32)
    for start in range(0, len(matrix), _DOT_BLOCK):
        block = matrix[start : start + _DOT_BLOCK]
        for j, vector in enumerate(vectors):
            np.dot(block, vector, out=out[j, start : start + len(block)])
    return out


_SCORE_BLOCK = 1 << 20  # score pairs computed per numpy step (bounds the float64 temporaries)


def _bm25_lucene_matrix(tokens: list[list[str]], k1: float, b: float) -> tuple[dict[str, Any], dict[str, int]]:
    """bm25s's score matrix (method and idf "lucene") and vocabulary for `tokens`, built with numpy.

    The same CSC arrays `bm25s.BM25().index(tokens)` stores (data float32 in float64 arithmetic, as
    bm25s computes it; row indices int32; indptr int64), up to the order of the vocabulary, which in
    bm25s follows a set's iteration order. Memory: one (token, count) pair per distinct token of a
    document (int32 + float32 + int32 row) and one argsort: on a synthetic 100k-document field (25M
    tokens) 148 MB less peak than bm25s, in half the time.
    """
    vocab: dict[str, int] = {}
    n_docs = len(tokens)
    per_doc_cols: list[np.ndarray] = []
    per_doc_tf: list[np.ndarray] = []
    lengths = np.empty(n_docs, dtype=np.int64)
    for d, row in enumerate(tokens):
        lengths[d] = len(row)
        ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in row), dtype=np.int32, count=len(row))
        cols_d, tf_d = np.unique(ids, return_counts=True)
        per_doc_cols.append(cols_d)
        per_doc_tf.append(tf_d.astype(np.float32))
    n_vocab = len(vocab)
    pairs_per_doc = np.fromiter((len(c) for c in per_doc_cols), dtype=np.int64, count=n_docs)
    cols = np.concatenate(per_doc_cols) if per_doc_cols else np.zeros(0, np.int32)
    del per_doc_cols
    tf = np.concatenate(per_doc_tf) if per_doc_tf else np.zeros(0, np.float32)
    del per_doc_tf
    rows = np.repeat(np.arange(n_docs, dtype=np.int32), pairs_per_doc)
    df = np.bincount(cols, minlength=n_vocab)
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)  # bm25s keeps idf in float32
    # Per document, the length normalisation k1 * (1 - b + b * |d| / avg|d|), in float64 like bm25s.
    norm = k1 * ((1 - b) + b * lengths / lengths.mean()) if n_docs else np.zeros(0)
    data = np.empty(len(cols), dtype=np.float32)
    for start in range(0, len(cols), _SCORE_BLOCK):
        end = start + _SCORE_BLOCK
        tf_b = tf[start:end]
        data[start:end] = idf[cols[start:end]] * (tf_b / (norm[rows[start:end]] + tf_b))
    del tf
    # CSC: column (token) major, rows ascending within a column; pairs are already in row order, so a
    # stable sort by column gives exactly that.
    order = np.argsort(cols, kind="stable")
    del cols
    data = data[order]
    indices = rows[order]
    del order, rows
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])  # a column holds one entry per document containing the token
    if "" not in vocab:  # bm25s's create_empty_token: "" gets the next id (no column)
        vocab[""] = n_vocab
    return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}, vocab


def _plain_tokens(tokens: list[list[str]]) -> list[list[str]]:
    """The tone-free twin of every token list, each distinct token stripped once and shared.

    Tokens are interned: at 100k chunks the two fields hold ~50M token references but only a few
    hundred thousand distinct strings; separate string objects cost ~3 GB of the ingest's peak memory.
    """
    plain_of: dict[str, str] = {}
    out = []
    for row in tokens:
        plain = []
        for t in row:
            p = plain_of.get(t)
            if p is None:
                p = plain_of[t] = sys.intern(strip_tokens([t])[0])
            plain.append(p)
        out.append(plain)
    return out


_NO_SENTENCES_KEY = b"-"  # the sentences key of a chunk without stored vectors: matches no sentences


def _row_reader(matrix: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """`matrix[start:end]` as a function; rows of a memory-mapped .npy are read from the file instead,
    so copying a whole store does not pull every mapped page into the process's resident memory."""
    filename, offset = getattr(matrix, "filename", None), getattr(matrix, "offset", None)
    if not isinstance(matrix, np.memmap) or filename is None or offset is None or matrix.ndim != 2:
        return lambda start, end: matrix[start:end]
    row_bytes = matrix.shape[1] * matrix.dtype.itemsize
    f = open(filename, "rb")  # noqa: SIM115 - closed when the reader is collected

    def read(start: int, end: int) -> np.ndarray:
        data = os.pread(f.fileno(), (end - start) * row_bytes, offset + start * row_bytes)
        return np.frombuffer(data, dtype=matrix.dtype).reshape(end - start, matrix.shape[1])

    read.file = f  # type: ignore[attr-defined]
    return read


def _is_quotable(sentence: str) -> bool:
    """Sentences the extractive answerer considers (rag/answer.py: at least four words)."""
    return len(sentence.split()) >= 4


def _sentences_key(sentences: list[str]) -> bytes:
    # ASCII hex: numpy's fixed-width bytes type drops trailing NUL bytes, which a raw digest may have.
    return hashlib.blake2b("\x00".join(sentences).encode("utf-8"), digest_size=8).hexdigest().encode("ascii")


def _text_key(chunk: Chunk) -> str:
    return hashlib.sha1(_embedding_text(chunk).encode("utf-8")).hexdigest()


def _is_under(path: Path, roots: list[Path]) -> bool:
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return any(resolved == r or r in resolved.parents for r in roots)
