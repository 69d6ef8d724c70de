"""The one settings object. Precedence: defaults < `.env` < environment (`RAG_*`) < CLI flags.

Built once at the edge (`app.py`, `rag.cli`) and passed in; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """All configuration of the assistant; every field maps to an env var `RAG_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".rag"), description="Where the index, manifest and feedback live.")
    corpus_dir: Path = Field(Path("corpus"), description="Documents indexed by `rag ingest` with no paths.")

    embedding_model: str = Field(
        "intfloat/multilingual-e5-small",
        description="sentence-transformers model name or path; falls back to the bundled model.",
    )
    embedding_fallback: str = Field(BUNDLED_MODEL, description="Model used when the configured one cannot load.")
    embedding_allow_download: bool = Field(True, description="Allow fetching the configured model from its hub.")
    embedding_batch_size: int = 32
    embedding_runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="auto/onnx: ONNX Runtime export of the model (same vectors, faster), torch when it is "
        "unavailable; torch: sentence-transformers only.",
    )
    embedding_bulk_bf16: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Embed large ingest batches in bfloat16 on torch (about 2x faster on CPUs with AMX or "
        "AVX512-BF16, vectors within 0.9999 cosine of float32); auto: on such CPUs for `rag ingest`, off in "
        "the app (keeps torch out of the server's memory).",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "vj-rag", description="Per-machine cache (ONNX exports of the embedder)."
    )

    chroma_host: str = Field("", description="Chroma server host; empty means an embedded PersistentClient.")
    chroma_port: int = 8000
    collection: str = Field("vj_rag", min_length=3)

    chunk_words: int = Field(180, ge=20, description="Target words per chunk.")
    chunk_overlap_words: int = Field(40, ge=0, description="Words of whole sentences repeated between chunks.")

    top_k: int = Field(5, ge=1, le=50)
    candidates: int = Field(40, ge=1, description="Hits taken from each retriever before fusion.")
    # Reciprocal-rank-fusion constant. 20, not the customary 60: with a few strong lexical runs and light
    # dense runs, a passage two strong runs rank first must beat one that many weak runs rank middling
    # (measured on the gold set with the CI distractors: hit@5 94% -> 97%, MRR 0.82 -> 0.87; seeds only 98% -> 99%).
    rrf_k: int = Field(20, ge=1)
    exact_search_max_rows: int = Field(
        300_000,
        ge=0,
        description="Up to this many chunks, unfiltered dense search is an exact pass over the in-memory "
        "vectors (about 5 ms per 100k chunks on one core, recall 100%); above it, Chroma's HNSW index.",
    )

    min_evidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the question's key terms the evidence must cover."
    )

    llm_base_url: str = Field("", description="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")
    llm_model: str = ""
    llm_api_key: SecretStr = SecretStr("")
    llm_connect_timeout: float = 5.0
    llm_read_timeout: float = 60.0
    llm_max_retries: int = 2

    reranker_model: str = Field("", description="Optional sentence-transformers CrossEncoder; empty = off.")

    blas_threads: int = Field(
        1,
        ge=0,
        description="Threads for numpy's BLAS (0 = library default). One avoids BLAS threads spinning "
        "against torch's on small machines, which doubled tail latency at 100k chunks.",
    )

    max_file_mb: float = Field(20.0, gt=0, description="Files (and uploads) larger than this are skipped.")
    max_pdf_pages: int = Field(1000, ge=1, description="PDFs with more pages are skipped.")
    max_document_chars: int = Field(2_000_000, ge=1000, description="Documents whose text is longer are skipped.")
    max_line_chars: int = Field(
        100_000, ge=1000, description="Text with a longer line (minified data, not prose) is skipped."
    )

    host: str = Field("127.0.0.1", description="Where the app listens; anything but loopback needs RAG_ADMIN_TOKEN.")
    port: int = 7860

    admin_token: SecretStr = Field(
        SecretStr(""), description="Token for corpus-changing actions (admin tab, document API); empty = disabled."
    )
    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated keys accepted by the HTTP API (Bearer); empty = open API."
    )
    upload_dir: Path | None = Field(None, description="Where uploaded files are kept (default: <corpus_dir>/uploads).")
    write_lock_wait: float = Field(
        1.0, ge=0, description="Seconds a second writer waits for the index's writer lock before giving up."
    )
    reload_interval: float = Field(
        2.0, ge=0, description="Seconds between checks for documents another process added (0 = off)."
    )
    max_queue: int = Field(64, ge=1, description="Requests allowed to wait for an answer before 'busy'.")
    concurrency: int = Field(2, ge=1, description="Answers computed at once (each uses a core).")
    api_rate_limit: int = Field(60, ge=0, description="Chat/retrieve requests per minute per API key (0 = off).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"

    @property
    def bm25_dir(self) -> Path:
        return self.home / "bm25"

    @property
    def manifest_path(self) -> Path:
        return self.home / "manifest.json"

    @property
    def uploads_path(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.corpus_dir / "uploads"

    def api_key_list(self) -> list[str]:
        """The accepted API keys (never logged)."""
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]


def apply_thread_limits(settings: Settings) -> None:
    """Limit numpy's BLAS thread pool for this process (called once at the edge, like logging setup).

    A query does a few small matrix-vector products; with a multi-threaded BLAS its idle workers keep
    spinning while torch embeds the next query, and on two cores the two pools fight.
    """
    if settings.blas_threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=settings.blas_threads, user_api="blas")


def load_settings(home: Path | None = None) -> Settings:
    """Settings from defaults, `.env` and RAG_* variables (plus an explicit --home), with the process set up:
    logging to stderr and the BLAS thread limit. Called once, at the edge (CLI, app, eval)."""
    import logging
    import sys

    settings = Settings()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("bm25s", "sentence_transformers", "httpx", "chromadb", "urllib3", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    apply_thread_limits(settings)
    return settings
