"""The one service every interface uses: the CLI, the Gradio UI, the HTTP API and eval call this object and
serialise its results with `rag.schema`; none of them imports another.

    service = Service(load_settings())
    service.ask("EMB-AI là gì?")            # Answer (validates before loading any model)
    service.ingest([Path("corpus")])          # IngestReport, under the index's writer lock

What it adds on top of `rag.chain.Pipeline`:
- lazy, once-only loading (a bad question or path fails before any model loads), optionally in the
  background with a visible "warming up" state;
- one writer per index (`rag.lock`): a second ingest waits up to RAG_WRITE_LOCK_WAIT seconds, then fails
  with one sentence — it never interleaves;
- live readers: a watcher notices when another process (the CLI, another app instance) changed the index
  and swaps in a freshly opened one; in-process ingests swap atomically too, so a query never sees half
  an update;
- document management: list, upload, re-ingest and delete, each returning an IngestReport.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.errors import AccessDenied, BadInput, IndexBusy, RagError
from rag.lock import writer_lock
from rag.schema import DocumentInfo, IngestReportOut, SkippedOut, Status

if TYPE_CHECKING:  # heavy modules (torch, chromadb, langchain) load only when the service first needs them
    from rag.chain import Pipeline, StreamEvent, Turn
    from rag.index import Index, IngestReport
    from rag.retrieve import Filters, RetrievalResult
    from rag.types import Answer

log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]

WARMING_UP = {
    "vi": "Trợ lý đang khởi động (tải mô hình); vui lòng thử lại sau ít giây.",
    "en": "The assistant is warming up (loading models); please try again in a few seconds.",
}


def version() -> str:
    """The installed package version (the API's /health and the UI footer)."""
    try:
        return metadata.version("vj-rag")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def report_out(report: IngestReport) -> IngestReportOut:
    """An IngestReport in the wire shape."""
    return IngestReportOut(
        added=list(report.added), updated=list(report.updated), removed=list(report.removed),
        unchanged=list(report.unchanged),
        skipped=[SkippedOut(path=str(s.path), reason=s.reason_en) for s in report.skipped],
        chunks_embedded=report.chunks_embedded, total_chunks=report.total_chunks, summary=report.summary(),
    )


def validate_question(question: str) -> str:
    """The NFC question, stripped; BadInput (one sentence) if it cannot be used. Loads no model."""
    from rag.retrieve import validate_question as check

    return check(question)


class Service:
    """ask / stream / retrieve / connect / ingest / documents / status — the assistant as one object."""

    def __init__(self, settings: Settings, *, pipeline_factory: Callable[[Settings], Pipeline] | None = None) -> None:
        self.settings = settings
        self._factory = pipeline_factory
        self._pipeline: Pipeline | None = None
        self._load_lock = threading.Lock()  # one loader; readers of self._pipeline take no lock
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._loaded_embedder: Any = None
        self._generation: Any = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.ingest_running = threading.Event()
        self._started = False

    # ------------------------------------------------------------------ loading
    def start(self, *, sync_corpus: bool = False, background: bool = False, watch: bool = False) -> None:
        """Load the pipeline (building/updating the index from RAG_CORPUS_DIR first with `sync_corpus`).

        With `background`, return at once; requests wait for readiness and `status()` says "warming_up".
        With `watch`, a daemon thread reloads the index when another process changes it.
        """
        self._started = True

        def run() -> None:
            try:
                self._load(sync_corpus)
            except BaseException as exc:
                self._startup_error = exc
                log.error("Start-up failed: %s", exc)
            finally:
                self._ready.set()

        if background:
            threading.Thread(target=run, name="rag-startup", daemon=True).start()
        else:
            run()
            if self._startup_error is not None:
                raise self._startup_error
        if watch and self.settings.reload_interval > 0 and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="rag-index-watcher", daemon=True)
            self._watcher.start()

    def _load(self, sync_corpus: bool) -> None:
        with self._load_lock:
            if self._pipeline is not None:
                return
            if self.server_mode and self._factory is None:
                from rag.replica import mirror

                try:
                    with writer_lock(self.settings.home, self.settings.write_lock_wait):
                        mirror(self.settings, self._embedder().embedder)  # what other instances ingested
                except IndexBusy:
                    log.warning("The local cache is being written by another process; mirroring later.")
            corpus = Path(self.settings.corpus_dir)
            pipeline = None
            if sync_corpus and corpus.exists():
                try:
                    with self._exclusive():
                        pipeline = self._make_pipeline(sync_corpus=True)
                except IndexBusy:
                    # Someone else is writing: serve what is built; the watcher picks up their result.
                    log.warning("Another process is ingesting; opening the index as it is.")
                except BadInput as exc:  # e.g. an empty corpus folder: documents may come by upload
                    log.warning("Corpus not indexed: %s", exc.message("en"))
            if pipeline is None:
                pipeline = self._make_pipeline(sync_corpus=False, allow_empty=sync_corpus)
            self._generation = self._current_generation()
            self._pipeline = pipeline
            self._loaded_embedder = pipeline.loaded
        pipeline.warm_up()

    def _make_pipeline(self, *, sync_corpus: bool, allow_empty: bool = False) -> Pipeline:
        if self._factory is not None:
            return self._factory(self.settings)
        from rag.chain import Pipeline

        return Pipeline.from_settings(self.settings, sync_corpus=sync_corpus, loaded=self._embedder(),
                                      allow_empty=allow_empty)

    @property
    def server_mode(self) -> bool:
        """Whether the vectors live on a `chroma run` server shared with other instances."""
        return bool(self.settings.chroma_host)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The writer lock of this RAG_HOME, plus the server-wide lease when instances share a Chroma server."""
        with writer_lock(self.settings.home, self.settings.write_lock_wait):
            if not self.server_mode:
                yield
                return
            from rag.replica import server_lease

            with server_lease(self.settings):
                yield

    @property
    def pipeline(self) -> Pipeline:
        """The loaded pipeline, loading it now if nobody started the service (CLI use)."""
        if self._pipeline is None:
            if not self._started:
                self.start()
            self._ready.wait()
            if self._pipeline is None:
                if isinstance(self._startup_error, RagError):
                    raise self._startup_error
                raise RagError(detail=f"start-up failed: {self._startup_error}")
        return self._pipeline

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until start-up finished (successfully or not); True if the pipeline is loaded."""
        self._ready.wait(timeout)
        return self._pipeline is not None

    def _embedder(self) -> Any:
        """The loaded embedder (LoadedEmbedder): the pipeline's if loaded, else loaded alone (ingest only)."""
        if self._pipeline is not None:
            return self._pipeline.loaded
        if self._loaded_embedder is None:
            from rag.embed import load_embedder

            self._loaded_embedder = load_embedder(self.settings)
        return self._loaded_embedder

    @property
    def notices(self) -> list[tuple[str, str]]:
        """(en, vi) notices to show permanently, e.g. that the fallback embedder is in use."""
        loaded = self._pipeline.loaded if self._pipeline is not None else self._loaded_embedder
        if loaded is not None and loaded.is_fallback:
            return [(loaded.warning_en, loaded.warning_vi)]
        return []

    # ------------------------------------------------------------------ questions
    def ask(
        self, question: str, history: list[Turn] | None = None, filters: Filters | None = None,
        k: int | None = None, backend: str | None = None,
    ) -> Answer:
        """A cited answer or a refusal. BadInput for an unusable question, before anything loads."""
        question = validate_question(question)
        return self.pipeline.ask(question, history=history, filters=filters, k=k, backend=backend)

    def stream(
        self, question: str, history: list[Turn] | None = None, filters: Filters | None = None,
        k: int | None = None, backend: str | None = None,
    ) -> Iterator[StreamEvent]:
        """LLM tokens as they arrive, then the final Answer (see `Pipeline.stream`)."""
        question = validate_question(question)
        return self.pipeline.stream(question, history=history, filters=filters, k=k, backend=backend)

    def retrieve(self, question: str, k: int | None = None, filters: Filters | None = None) -> RetrievalResult:
        """Hybrid retrieval only."""
        question = validate_question(question)
        return self.pipeline.retrieve(question, k=k, filters=filters)

    def connect(
        self, question: str | None = None, province: str | None = None, sector: str | None = None,
        lang: str | None = None, k: int = 10,
    ) -> Any:
        """The connection finder's structured, cited answer (rag.connect.ConnectionAnswer)."""
        from rag.connect import build_connection_answer

        question = (question or "").strip() or None
        if question is not None:
            question = validate_question(question)
        if not (question or (province or "").strip() or (sector or "").strip()):
            raise BadInput("Give a question, a province or a sector.", "Hãy nhập câu hỏi, tỉnh/thành hoặc lĩnh vực.")
        return build_connection_answer(self.pipeline, question, province=province, sector=sector, lang=lang, k=k)

    def entity_overview(self) -> list[dict]:
        """One row per entity in the corpus (rag.entities.corpus_overview)."""
        from rag.entities import chunk_entities_of, corpus_overview

        index = self.pipeline.index
        return corpus_overview(chunk_entities_of(index), index.chunks)

    @property
    def default_backend(self) -> str:
        return self.pipeline.default_backend

    @property
    def llm_name(self) -> str:
        p = self._pipeline
        return p.llm.name if p is not None and p.llm is not None else ""

    def feedback_store(self) -> Any:
        """The chat's thumbs up/down store (rag.feedback.FeedbackStore under RAG_HOME)."""
        from rag.feedback import FeedbackStore

        return FeedbackStore.from_settings(self.settings)

    # ------------------------------------------------------------------ the index
    def ingest(self, paths: list[Path] | None = None, progress: Progress | None = None) -> IngestReport:
        """Add, update and remove documents under `paths` (default: RAG_CORPUS_DIR) as the only writer."""
        targets = [Path(p) for p in (paths or [self.settings.corpus_dir])]
        for p in targets:
            if not p.exists():
                raise BadInput(f"{p} does not exist; nothing was changed.", f"{p} không tồn tại; chưa có gì thay đổi.")
        return self._write(lambda index, embedder: index.sync(targets, embedder, progress=progress))

    def _write(self, change: Callable[[Index, Any], IngestReport]) -> IngestReport:
        """Run `change` on a freshly opened index under the writer lock, then swap it in for readers."""
        from rag.index import Index

        with self._exclusive():
            self.ingest_running.set()
            try:
                loaded = self._embedder()
                if self.server_mode:
                    from rag.replica import mirror

                    mirror(self.settings, loaded.embedder)  # start from what other instances wrote
                # Open from disk inside the lock: another process may have written since we loaded.
                index = Index.open(self.settings, must_exist=False)
                report = change(index, loaded.embedder)
            finally:
                self.ingest_running.clear()
            self._swap(index)
        log.info("Index updated: %s", report.summary())
        return report

    def _swap(self, index: Index) -> None:
        """Readers move to `index` in one assignment: a query uses either the old or the new one, whole."""
        self._generation = self._current_generation()
        old = self._pipeline
        if old is None:
            return
        from rag.chain import Pipeline

        self._pipeline = Pipeline(
            self.settings, old.loaded, index, old.lexicon, old.llm, old.prompts_dir, reranker=old.reranker
        )

    def _current_generation(self) -> Any:
        """What identifies the index's current state: the generation published on the Chroma server, or
        locally the manifest file (written last, atomically)."""
        if self.server_mode:
            from rag.replica import remote_generation

            try:
                return remote_generation(self.settings)
            except Exception as exc:  # server unreachable: keep serving what we have
                log.warning("Chroma server unreachable while checking for changes (%s)", exc)
                return self._generation
        try:
            st = self.settings.manifest_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh_if_changed(self) -> bool:
        """Reopen the index if another process (or instance) changed it since we loaded it. True if reloaded."""
        if self._pipeline is None or self.ingest_running.is_set():
            return False
        current = self._current_generation()
        if current is None or current == self._generation:
            return False
        from rag.index import Index

        try:
            if self.server_mode:
                from rag.replica import mirror

                with writer_lock(self.settings.home, 0.0):  # the local cache has one writer too
                    mirror(self.settings, self._pipeline.embedder)
            index = Index.open(self.settings)
        except (RagError, OSError, ValueError) as exc:  # mid-write elsewhere: try again next tick
            log.info("Index changed but could not be reopened yet (%s)", exc)
            return False
        self._swap(index)
        self._generation = current
        log.info("Reloaded the index another process changed: %d chunks.", len(index.chunks))
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            try:
                self.refresh_if_changed()
            except Exception:  # the watcher must never die; the next tick tries again
                log.exception("Index reload failed")

    def close(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()

    # ------------------------------------------------------------------ documents
    def documents(self) -> list[DocumentInfo]:
        """Every indexed document with its chunk count, newest first."""
        from rag.index import Index

        index = self._pipeline.index if self._pipeline is not None else Index.open(self.settings, must_exist=False)
        urls: dict[str, str] = {}
        for c in index.chunks.values():
            urls.setdefault(c.doc_id, c.url)
        out = [
            DocumentInfo(
                doc_id=doc_id, title=info.get("title", ""), source=info.get("source", ""), date=info.get("date", ""),
                language=info.get("language", ""), url=urls.get(doc_id, ""), path=info.get("path", ""),
                chunks=len(info.get("chunk_ids", [])), added_at=info.get("added_at", ""),
            )
            for doc_id, info in index.manifest.get("docs", {}).items()
        ]
        return sorted(out, key=lambda d: (d.date, d.title), reverse=True)

    def _doc_info(self, doc_id: str) -> dict[str, Any]:
        """The manifest entry of a document (reads manifest.json only, not the chunk store or BM25)."""
        try:
            docs = json.loads(self.settings.manifest_path.read_text(encoding="utf-8")).get("docs", {})
        except FileNotFoundError:
            docs = {}
        info = docs.get(doc_id)
        if info is None:
            raise BadInput(f"There is no document '{doc_id}' in the index.", f"Không có tài liệu '{doc_id}' trong chỉ mục.")
        return info

    def delete_document(self, doc_id: str) -> IngestReport:
        """Remove a document from the index; its file moves to RAG_HOME/trash so a restart does not re-add it."""
        info = self._doc_info(doc_id)

        def change(index: Index, embedder: Any) -> IngestReport:
            path = Path(info.get("path", ""))
            if path.is_file():
                trash = self.settings.home / "trash"
                trash.mkdir(parents=True, exist_ok=True)
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                shutil.move(str(path), trash / f"{stamp}-{path.name}")
            return index.remove_documents([doc_id], embedder)

        return self._write(change)

    def reingest(self, doc_id: str) -> IngestReport:
        """Clean, chunk and embed one document again from its file, even if the file did not change."""
        info = self._doc_info(doc_id)
        path = Path(info.get("path", ""))
        if not path.is_file():
            raise BadInput(
                f"The file of '{doc_id}' is gone ({path}); it cannot be re-ingested.",
                f"Tệp của tài liệu '{doc_id}' không còn ({path}); không thể xử lý lại.",
            )

        def change(index: Index, embedder: Any) -> IngestReport:
            index.manifest["docs"][doc_id]["hash"] = ""  # forces "updated": re-clean, re-chunk, re-embed
            return index.sync([path], embedder)

        return self._write(change)

    def add_files(self, files: list[tuple[str, bytes]], progress: Progress | None = None) -> IngestReport:
        """Save uploaded files under the uploads folder and ingest them (one writer, one report).

        Each file is checked before anything is written (rag.guard.check_upload).
        """
        if not files:
            raise BadInput("No file was uploaded.", "Chưa có tệp nào được tải lên.")
        from rag.guard import Limits, check_upload

        limits = Limits.from_settings(self.settings)
        # Name (no folders or control characters), type, size, emptiness and content, before any write.
        checked = [(check_upload(name, data[:8192], len(data), limits)[0], data) for name, data in files]
        for name, data in checked:
            if not data.strip():  # only blanks: as good as empty, and nothing to index
                raise BadInput(f"{name} is empty; nothing was changed.", f"{name} trống; chưa có gì thay đổi.")
        folder = self.settings.uploads_path
        staging = self.settings.home / ".uploading"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, data in checked:
            (staging / name).write_bytes(data)

        def change(index: Index, embedder: Any) -> IngestReport:
            folder.mkdir(parents=True, exist_ok=True)
            targets = []
            for name, _data in checked:
                shutil.move(str(staging / name), folder / name)
                targets.append(folder / name)
            return index.sync(targets, embedder, progress=progress)

        try:
            return self._write(change)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def check(self) -> list[Any]:
        """Invariant problems of the index on disk (rag.check): [] when Chroma, both BM25 fields, chunks,
        tokens, entities, vectors and the manifest agree."""
        from rag.check import check_index

        return check_index(self.settings)

    # ------------------------------------------------------------------ access
    @property
    def admin_enabled(self) -> bool:
        """Whether corpus-changing actions are possible at all (RAG_ADMIN_TOKEN is set)."""
        return bool(self.settings.admin_token.get_secret_value())

    def authorize_admin(self, token: str | None) -> None:
        """AccessDenied unless `token` is the admin token (constant-time compare; never logged)."""
        expected = self.settings.admin_token.get_secret_value()
        if not expected:
            raise AccessDenied(
                "Document management is disabled: start the app with RAG_ADMIN_TOKEN set to enable it.",
                "Chức năng quản lý tài liệu đang tắt: hãy khởi động ứng dụng với RAG_ADMIN_TOKEN để bật.",
            )
        if not hmac.compare_digest((token or "").encode("utf-8"), expected.encode("utf-8")):
            raise AccessDenied("The admin token is not correct.", "Mã quản trị không đúng.")

    def authorize_api_key(self, key: str | None) -> None:
        """AccessDenied unless `key` is one of RAG_API_KEYS (every key is accepted when none is set)."""
        keys = self.settings.api_key_list()
        if not keys:
            return
        given = (key or "").encode("utf-8")
        # Compare against every key, so the time taken says nothing about which one nearly matched.
        if not any([hmac.compare_digest(given, k.encode("utf-8")) for k in keys]):
            raise AccessDenied("A valid API key is required (Authorization: Bearer <key>).",
                               "Cần khóa API hợp lệ (Authorization: Bearer <khóa>).")

    # ------------------------------------------------------------------ status
    def status(self) -> Status:
        """Health: warming up / ok / error, index size, model, backend, version."""
        p = self._pipeline
        backend = "llm" if self.settings.llm_base_url.strip() else "extractive"
        common = {
            "version": version(), "backend": backend, "llm_model": self.settings.llm_model,
            "chroma": "server" if self.settings.chroma_host else "embedded",
        }
        if p is None:
            if self._startup_error is not None:
                msg = self._startup_error.message("en") if isinstance(self._startup_error, RagError) else "start-up failed"
                return Status(status="error", documents=0, chunks=0, embedding_model="", embedding_fallback=False,
                              message=msg, **common)
            return Status(status="warming_up", documents=0, chunks=0, embedding_model="", embedding_fallback=False,
                          message=WARMING_UP["en"], **common)
        return Status(
            status="ok", documents=len(p.index.manifest.get("docs", {})), chunks=len(p.index.chunks),
            embedding_model=p.embedder.name, embedding_fallback=p.loaded.is_fallback, **common,
        )

    def filter_choices(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Outlets and (label, doc id) pairs for the chat's filter widgets."""
        p = self.pipeline
        sources = sorted({c.source for c in p.index.chunks.values() if c.source})
        titles = {c.doc_id: c.title for c in p.index.chunks.values()}
        docs = sorted(((f"{t[:60]} ({d})", d) for d, t in titles.items()), key=lambda x: x[0])
        return sources, docs
