"""The `rag` command: ingest, retrieve, ask (single or --batch JSONL), connect, documents, check, serve.

A thin view of `rag.service.Service`; output with --json is the `rag.schema` contract, one object per
line (README, "CLI"). Heavy modules (torch, chromadb, langchain, gradio) load only inside commands, after
the arguments were checked, so `rag --help` and a bad question or path answer at once. Commands from
other packages (`rag eval`, `rag feedback export`) are entry points of the group `rag.commands`, so this
module never imports them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rag.config import Settings, load_settings
from rag.errors import BadInput, RagError
from rag.text import detect_language, nfc

if TYPE_CHECKING:
    from rag.service import Service

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Vietnam–Japan cooperation Q&A assistant (Trợ lý hỏi đáp hợp tác Việt Nam – Nhật Bản).",
)
documents_app = typer.Typer(help="List, re-ingest or delete indexed documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")

log = logging.getLogger("rag")


def make_settings(home: Path | None) -> Settings:
    """Settings from defaults, .env and RAG_* variables (plus --home); also configures logging."""
    return load_settings(home)


def _progress(items: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="batch", file=sys.stderr, disable=total < 2)


def fail(exc: RagError, lang: str = "en") -> None:
    """Print the error's one sentence (in `lang`) on stderr and exit 1; the detail goes to the debug log."""
    typer.echo(exc.message(lang), err=True)
    if exc.detail:
        log.debug("detail: %s", exc.detail)
    raise typer.Exit(code=1)


def user_lang(question: str) -> str:
    """'en' for an English question, else 'vi' (error sentences follow the question's language)."""
    return "en" if detect_language(question or "") == "en" else "vi"


def error_lang(question: str | None) -> str:
    """The language of a command's error sentences: the question's, or English when there is no question
    to go by (--batch, a missing QUESTION, language-neutral commands)."""
    return user_lang(question) if question and question.strip() else "en"


def _service(settings: Settings) -> Service:
    from rag.service import Service

    return Service(settings)


def _warn_notices(service: Service) -> None:
    for en, _vi in service.notices:
        typer.echo(f"WARNING: {en}", err=True)


def _read_batch(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, object or None, error) for every non-blank line of a JSONL file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"Cannot read {path} as UTF-8 JSONL.", f"Không đọc được {path} dạng JSONL UTF-8.") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            yield n, None, f"line {n}: not valid JSON"
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
            yield n, None, f"line {n}: an object with a string 'question' is required"
            continue
        yield n, obj, ""


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _filters(source: list[str] | None, doc: list[str] | None, date_from: str, date_to: str, lang: list[str] | None):
    from rag.retrieve import Filters

    return Filters(
        date_from=date_from, date_to=date_to, sources=tuple(source or ()), doc_ids=tuple(doc or ()),
        languages=tuple(lang or ()),
    )


def _batch_items(batch: Path | None, question: str | None) -> list[tuple[Any, str, str]]:
    """(id, question, error) per question; a single QUESTION is validated here, before any model loads."""
    from rag.service import validate_question

    if batch is None:
        if question is None:
            raise BadInput("Give a QUESTION or --batch FILE.", "Hãy nhập câu hỏi hoặc --batch FILE.")
        q = nfc(question)
        try:
            validate_question(q)
        except RagError as exc:
            fail(exc, error_lang(q))
        return [(None, q, "")]
    items = []
    for n, obj, err in _read_batch(batch):
        if obj is None:
            items.append((n, "", err))
        else:
            items.append((obj.get("id", n), nfc(obj["question"]), ""))
    return items


class _Outcome:
    """Runs one command per question; a failure becomes an error line (structured output) or exit 1."""

    def __init__(self) -> None:
        self.failed = False

    def each(self, items: list[tuple[Any, str, str]], run: Any, structured: bool) -> Iterator[tuple[Any, Any]]:
        for qid, q, err in items:
            if err:
                _emit({"id": qid, "question": q, "error": err})
                self.failed = True
                continue
            try:
                result = run(q)
            except RagError as exc:
                self.failed = True
                if structured:
                    _emit({"id": qid, "question": q, "error": exc.message(error_lang(q))})
                    continue
                fail(exc, error_lang(q))
            yield qid, result


HomeOpt = Annotated[Path | None, typer.Option("--home", metavar="DIR", help="Index folder (default: RAG_HOME or .rag).",
                                              show_default=False)]
SourceOpt = Annotated[list[str] | None, typer.Option("--source", metavar="OUTLET", help="Only chunks from this outlet (repeatable).",
                                                     show_default=False)]
DocOpt = Annotated[list[str] | None, typer.Option("--doc", metavar="DOC_ID", help="Only chunks of this document id (repeatable).",
                                                  show_default=False)]
FromOpt = Annotated[str, typer.Option("--date-from", metavar="DATE", help="ISO date (2025-03-14, 2025-03 or 2025), inclusive.",
                                      show_default=False)]
ToOpt = Annotated[str, typer.Option("--date-to", metavar="DATE", help="ISO date (2025-03-14, 2025-03 or 2025), inclusive.",
                                    show_default=False)]
LangOpt = Annotated[list[str] | None, typer.Option("--lang", metavar="vi|en", help="Only documents in this language (repeatable).",
                                                   show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
BatchOpt = Annotated[Path | None, typer.Option("--batch", metavar="FILE", help="JSONL file of {id, question}.",
                                                show_default=False)]
TopKOpt = Annotated[int | None, typer.Option("-k", "--top-k", metavar="N", help="Hits to return (default: RAG_TOP_K).",
                                             show_default=False)]


@app.command(short_help="Add, update and remove documents in the index (incremental).")
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(metavar="PATH", hidden=True, show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """Add, update and remove documents in the index (incremental; unchanged files are not re-embedded).

    PATH: files or folders to index (default: RAG_CORPUS_DIR).
    """
    settings = make_settings(home)
    targets = paths or [settings.corpus_dir]
    for p in targets:  # before any model loads
        if not Path(p).exists():
            fail(BadInput(f"{p} does not exist; nothing was changed.", f"{p} không tồn tại; chưa có gì thay đổi."))
    service = _service(settings)
    try:
        t = time.perf_counter()
        report = service.ingest(list(targets), progress=_progress)
    except RagError as exc:
        fail(exc)
        return
    _warn_notices(service)
    for s in report.skipped:
        typer.echo(f"skipped {s.path}: {s.reason_en}", err=True)
    model = service._embedder().embedder.name
    typer.echo(f"{report.summary()} ({time.perf_counter() - t:.1f} s, model {model}).")


@app.command()
def retrieve(
    question: Annotated[str | None, typer.Argument(metavar="QUESTION", hidden=True, show_default=False)] = None,
    k: TopKOpt = None,
    as_json: JsonOpt = False,
    batch: BatchOpt = None,
    source: SourceOpt = None, doc: DocOpt = None, date_from: FromOpt = "", date_to: ToOpt = "", lang: LangOpt = None,
    home: HomeOpt = None,
) -> None:
    """Show the chunks hybrid retrieval finds for QUESTION.

    QUESTION in Vietnamese (with or without tones) or English; errors come in its language.
    """
    settings = make_settings(home)
    try:
        items = _batch_items(batch, question)
        filters = _filters(source, doc, date_from, date_to, lang)
        service = _service(settings)
        service.pipeline  # noqa: B018 - load now, so a missing index fails once, not per question
        _warn_notices(service)
    except RagError as exc:
        fail(exc, error_lang(question))
        return
    from rag.schema import RetrievalOut, hit_out

    outcome = _Outcome()
    for qid, result in outcome.each(items, lambda q: service.retrieve(q, k=k, filters=filters), as_json or batch):
        if as_json or batch:
            _emit(RetrievalOut(
                id=qid, question=result.plan.question, language="en" if result.plan.language == "en" else "vi",
                query_language=result.plan.language, retrieved=[hit_out(h) for h in result.hits],
                timings_ms=result.timings_ms,
            ).model_dump())
        else:
            for i, h in enumerate(result.hits, 1):
                meta = ", ".join(x for x in (h.chunk.source, h.chunk.date) if x)
                typer.echo(f"{i}. [{h.score:.4f}] {h.chunk.chunk_id} — {h.chunk.title}" + (f" ({meta})" if meta else ""))
                typer.echo(f"   {h.chunk.text[:240]}…")
    if outcome.failed and not batch:
        raise typer.Exit(code=1)


@app.command(short_help="Answer QUESTION with numbered citations (or say it is not found).")
def ask(
    question: Annotated[str | None, typer.Argument(metavar="QUESTION", hidden=True, show_default=False)] = None,
    as_json: JsonOpt = False,
    batch: BatchOpt = None,
    k: TopKOpt = None,
    backend: Annotated[str | None, typer.Option("--backend", metavar="extractive|llm",
                                                help="Answer backend (default: llm if configured).",
                                                show_default=False)] = None,
    source: SourceOpt = None, doc: DocOpt = None, date_from: FromOpt = "", date_to: ToOpt = "", lang: LangOpt = None,
    home: HomeOpt = None,
) -> None:
    """Answer QUESTION with numbered citations (or say it is not in the documents).

    QUESTION in Vietnamese (with or without tones) or English; errors come in its language.
    """
    settings = make_settings(home)
    ui_lang = error_lang(question)
    if backend not in (None, "extractive", "llm"):
        bad = BadInput("--backend must be 'extractive' or 'llm'.", "--backend phải là 'extractive' hoặc 'llm'.")
        typer.echo(bad.message(ui_lang), err=True)
        raise typer.Exit(code=2)
    try:
        items = _batch_items(batch, question)
        filters = _filters(source, doc, date_from, date_to, lang)
        if backend == "llm" and not settings.llm_base_url.strip():
            raise BadInput("No LLM is configured: set RAG_LLM_BASE_URL (and RAG_LLM_MODEL).",
                           "Chưa cấu hình LLM: hãy đặt RAG_LLM_BASE_URL (và RAG_LLM_MODEL).")
        service = _service(settings)
        service.pipeline  # noqa: B018 - load now, so a missing index fails once, not per question
        _warn_notices(service)
    except RagError as exc:
        fail(exc, ui_lang)
        return
    from rag.schema import answer_json

    outcome = _Outcome()
    ask_one = lambda q: service.ask(q, filters=filters, k=k, backend=backend)  # noqa: E731
    for qid, answer in outcome.each(items, ask_one, as_json or batch):
        if as_json or batch:
            _emit(answer_json(answer, qid))
        else:
            if answer.notice:
                typer.echo(f"NOTE: {answer.notice}", err=True)
            typer.echo(answer.text)
            for c in answer.citations:
                meta = ", ".join(x for x in (c.chunk.source, c.chunk.date) if x)
                typer.echo(f"[{c.n}] {c.chunk.title}" + (f" — {meta}" if meta else "") + f" ({c.chunk.chunk_id})")
    if outcome.failed and not batch:
        raise typer.Exit(code=1)


@app.command(short_help="Contacts, programmes and Japanese localities, with citations.")
def connect(
    question: Annotated[str | None, typer.Argument(metavar="QUESTION", hidden=True, show_default=False)] = None,
    province: Annotated[str | None, typer.Option(
        "--province", "-p", metavar="NAME", help="Province or city, new (34) or pre-July-2025 name, tones optional.",
        show_default=False)] = None,
    sector: Annotated[str | None, typer.Option(
        "--sector", "-s", metavar="SECTOR", help="Sector id or name, e.g. semiconductors, 'bán dẫn', AI.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    home: HomeOpt = None,
) -> None:
    """Who to contact, which programmes and which Japanese localities the documents name, with citations.

    QUESTION (optional) in Vietnamese or English; give it, --province or --sector.
    """
    settings = make_settings(home)
    q = nfc(question).strip() if question else ""
    lang = user_lang(q) if q else "en"
    try:
        if not (q or (province or "").strip() or (sector or "").strip()):
            raise BadInput("Give a QUESTION, --province or --sector.", "Hãy nhập câu hỏi, --province hoặc --sector.")
        if q:
            from rag.service import validate_question

            validate_question(q)
        service = _service(settings)
        answer = service.connect(q or None, province=province, sector=sector, lang=lang if q else "vi")
    except RagError as exc:
        fail(exc, lang)
        return
    from rag.connect import render_markdown, to_json

    if as_json:
        typer.echo(json.dumps(to_json(answer), ensure_ascii=False))
    else:
        typer.echo(render_markdown(answer, lang if q else "vi"))


@documents_app.command("list")
def documents_list(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Indexed documents: id, date, outlet, chunks, title."""
    service = _service(make_settings(home))
    try:
        docs = service.documents()
    except RagError as exc:
        fail(exc)
        return
    for d in docs:
        if as_json:
            _emit(d.model_dump())
        else:
            typer.echo(f"{d.doc_id}  {d.date or '-':10}  {d.source or '-':18.18}  {d.chunks:4d}  {d.title[:60]}")


DocIdArg = Annotated[str, typer.Argument(metavar="DOC_ID", hidden=True)]


def _document_action(action: str, doc_id: str, home: Path | None) -> None:
    """Run Service.delete_document or Service.reingest and print the ingest report (or the error)."""
    service = _service(make_settings(home))
    try:
        report = service.delete_document(doc_id) if action == "delete" else service.reingest(doc_id)
    except RagError as exc:
        fail(exc)
        return
    typer.echo(report.summary())


@documents_app.command("delete", short_help="Remove a document (its file moves to RAG_HOME/trash).")
def documents_delete(doc_id: DocIdArg, home: HomeOpt = None) -> None:
    """Remove document DOC_ID from the index (its file moves to RAG_HOME/trash)."""
    _document_action("delete", doc_id, home)


@documents_app.command("reingest")
def documents_reingest(doc_id: DocIdArg, home: HomeOpt = None) -> None:
    """Clean, chunk and embed document DOC_ID again from its file."""
    _document_action("reingest", doc_id, home)


@app.command(short_help="Check that the index stores agree; say how to repair.")
def check(home: HomeOpt = None) -> None:
    """Verify that Chroma, both BM25 fields, chunks, entities and the manifest agree; say how to repair."""
    service = _service(make_settings(home))
    try:
        problems = service.check()
    except RagError as exc:
        fail(exc)
        return
    if not problems:
        typer.echo("The index is consistent: Chroma, BM25 (accented and plain), chunks, tokens, entities, "
                   "vectors and the manifest agree.")
        return
    for problem in problems:
        typer.echo(f"- {problem.message('en')}", err=True)
    raise typer.Exit(code=1)


@app.command(short_help="Start the web app: chat UI, HTTP API (/v1, /docs), /health.")
def serve(home: HomeOpt = None) -> None:
    """Start the web app: chat UI, HTTP API (/v1, /docs) and health (same as `python app.py`)."""
    from rag.server import serve as run_server

    run_server(make_settings(home))


def _register_plugins() -> None:
    """Add commands other packages declare under the entry-point group `rag.commands`.

    A name `group.command` becomes a sub-command (`feedback.export` -> `rag feedback export`).
    """
    groups: dict[str, typer.Typer] = {}
    for ep in entry_points(group="rag.commands"):
        try:
            command = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            log.warning("Command %s unavailable: %s", ep.name, exc)
            continue
        group, _, name = ep.name.rpartition(".")
        if not group:
            app.command(name)(command)
            continue
        if group not in groups:
            groups[group] = typer.Typer(no_args_is_help=True, help=f"{group.capitalize()} commands.")
            app.add_typer(groups[group], name=group)
        groups[group].command(name)(command)


def main() -> None:
    """Console-script entry point."""
    _register_plugins()
    app()


if __name__ == "__main__":
    main()
