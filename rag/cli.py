"""The `rag` command: ingest, retrieve, ask (single or --batch JSONL), serve.

Output with --json is one JSON object per line, the contract documented in README.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from eval.cli_commands import eval_command, feedback_export_command
from rag.cli_connect import connect_command
from rag.config import Settings, apply_thread_limits
from rag.errors import BadInput, RagError
from rag.text import detect_language, nfc
from rag.types import Answer, Hit

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Vietnam–Japan cooperation Q&A assistant.")
app.command("connect")(connect_command)
app.command("eval")(eval_command)
feedback_app = typer.Typer(help="Chat feedback (thumbs up / down).", no_args_is_help=True)
feedback_app.command("export")(feedback_export_command)
app.add_typer(feedback_app, name="feedback")


def make_settings(home: Path | None) -> Settings:
    """Settings from defaults, .env and RAG_* variables (plus --home); also configures logging."""
    settings = Settings()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("bm25s", "sentence_transformers", "httpx", "chromadb", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    apply_thread_limits(settings)
    return settings


def _progress(items: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="batch", file=sys.stderr, disable=total < 2)


def _fail(exc: RagError, lang: str = "en") -> None:
    typer.echo(exc.message(lang), err=True)
    if exc.detail:
        logging.getLogger("rag").debug("detail: %s", exc.detail)
    raise typer.Exit(code=1)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A retrieved chunk as in the JSON contract."""
    c = hit.chunk
    return {
        "chunk_id": c.chunk_id,
        "doc_id": c.doc_id,
        "score": round(hit.score, 6),
        "ranks": hit.ranks,
        "title": c.title,
        "source": c.source,
        "date": c.date,
        "text": c.text,
    }


def answer_json(answer: Answer, qid: Any = None) -> dict[str, Any]:
    """An Answer as in the `rag ask --json` contract."""
    return {
        "id": qid,
        "question": answer.question,
        "language": answer.language,
        "query_language": detect_language(answer.question),
        "answer": answer.text,
        "refused": answer.refused,
        "backend": answer.backend,
        "notice": answer.notice,
        "citations": [
            {
                "n": c.n,
                "chunk_id": c.chunk.chunk_id,
                "doc_id": c.chunk.doc_id,
                "title": c.chunk.title,
                "source": c.chunk.source,
                "date": c.chunk.date,
                "url": c.chunk.url,
                "quote": c.quote,
                "text": c.chunk.text,
            }
            for c in answer.citations
        ],
        "retrieved": [hit_json(h) for h in answer.hits],
        "timings_ms": answer.timings_ms,
    }


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


HomeOpt = Annotated[Path | None, typer.Option("--home", help="Index folder (default: RAG_HOME or .rag).")]
SourceOpt = Annotated[list[str] | None, typer.Option("--source", help="Only chunks from this outlet (repeatable).")]
DocOpt = Annotated[list[str] | None, typer.Option("--doc", help="Only chunks of this document id (repeatable).")]
FromOpt = Annotated[str, typer.Option("--date-from", help="ISO date (2025-03-14, 2025-03 or 2025), inclusive.")]
ToOpt = Annotated[str, typer.Option("--date-to", help="ISO date (2025-03-14, 2025-03 or 2025), inclusive.")]
LangOpt = Annotated[list[str] | None, typer.Option("--lang", help="Only documents in this language.")]


@app.command()
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (default: RAG_CORPUS_DIR).")] = None,
    home: HomeOpt = None,
) -> None:
    """Add, update and remove documents in the index (incremental; unchanged files are not re-embedded)."""
    from rag.chain import summarize
    from rag.embed import load_embedder
    from rag.index import Index

    settings = make_settings(home)
    targets = paths or [settings.corpus_dir]
    try:
        loaded = load_embedder(settings)
        if loaded.is_fallback:
            typer.echo(f"WARNING: {loaded.warning_en}", err=True)
        index = Index.open(settings, must_exist=False)
        t = time.perf_counter()
        report = index.sync(targets, loaded.embedder, progress=_progress)
    except RagError as exc:
        _fail(exc)
        return
    for s in report.skipped:
        typer.echo(f"skipped {s.path}: {s.reason_en}", err=True)
    typer.echo(f"{summarize(report)} ({time.perf_counter() - t:.1f} s, model {loaded.embedder.name}).")


def _pipeline(settings: Settings):
    from rag.chain import Pipeline

    pipeline = Pipeline.from_settings(settings)
    for en, _vi in pipeline.notices:
        typer.echo(f"WARNING: {en}", err=True)
    return pipeline


@app.command()
def retrieve(
    question: Annotated[str | None, typer.Argument()] = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    batch: Annotated[Path | None, typer.Option("--batch", help="JSONL file of {id, question}.")] = None,
    source: SourceOpt = None, doc: DocOpt = None, date_from: FromOpt = "", date_to: ToOpt = "", lang: LangOpt = None,
    home: HomeOpt = None,
) -> None:
    """Show the chunks hybrid retrieval finds for a question."""
    settings = make_settings(home)
    try:
        filters = _filters(source, doc, date_from, date_to, lang)
        pipeline = _pipeline(settings)
        items = _batch_items(batch, question)
    except RagError as exc:
        _fail(exc)
        return
    outcome = _Outcome()
    for qid, result in outcome.each(items, lambda q: pipeline.retrieve(q, k=k, filters=filters), as_json or batch):
        if as_json or batch:
            _emit({"id": qid, "question": result.plan.question,
                   "language": "en" if result.plan.language == "en" else "vi", "query_language": result.plan.language,
                   "retrieved": [hit_json(h) for h in result.hits], "timings_ms": result.timings_ms})
        else:
            for i, h in enumerate(result.hits, 1):
                typer.echo(f"{i}. [{h.score:.4f}] {h.chunk.chunk_id} — {h.chunk.title} ({h.chunk.source}, {h.chunk.date})")
                typer.echo(f"   {h.chunk.text[:240]}…")
    if outcome.failed and not batch:
        raise typer.Exit(code=1)


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
                    _emit({"id": qid, "question": q, "error": exc.message(_lang(q))})
                    continue
                _fail(exc, _lang(q))
            yield qid, result


def _lang(question: str) -> str:
    return "en" if detect_language(question or "") == "en" else "vi"


def _batch_items(batch: Path | None, question: str | None) -> list[tuple[Any, str, str]]:
    if batch is None:
        if question is None:
            raise BadInput("Give a QUESTION or --batch FILE.", "Hãy nhập câu hỏi hoặc --batch FILE.")
        return [(None, nfc(question), "")]
    items = []
    for n, obj, err in _read_batch(batch):
        if obj is None:
            items.append((n, "", err))
        else:
            items.append((obj.get("id", n), nfc(obj["question"]), ""))
    return items


@app.command()
def ask(
    question: Annotated[str | None, typer.Argument()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    batch: Annotated[Path | None, typer.Option("--batch", help="JSONL file of {id, question}.")] = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="extractive or llm (default: llm if configured).")] = None,
    source: SourceOpt = None, doc: DocOpt = None, date_from: FromOpt = "", date_to: ToOpt = "", lang: LangOpt = None,
    home: HomeOpt = None,
) -> None:
    """Answer a question with numbered citations (or say it is not in the documents)."""
    settings = make_settings(home)
    if backend not in (None, "extractive", "llm"):
        typer.echo("--backend must be 'extractive' or 'llm'.", err=True)
        raise typer.Exit(code=2)
    try:
        filters = _filters(source, doc, date_from, date_to, lang)
        pipeline = _pipeline(settings)
        items = _batch_items(batch, question)
        if backend == "llm" and pipeline.llm is None:
            raise BadInput("No LLM is configured: set RAG_LLM_BASE_URL (and RAG_LLM_MODEL).",
                           "Chưa cấu hình LLM: hãy đặt RAG_LLM_BASE_URL (và RAG_LLM_MODEL).")
    except RagError as exc:
        _fail(exc)
        return
    outcome = _Outcome()
    ask_one = lambda q: pipeline.ask(q, filters=filters, k=k, backend=backend)  # noqa: E731
    for qid, answer in outcome.each(items, ask_one, as_json or batch):
        if as_json or batch:
            _emit(answer_json(answer, qid))
        else:
            if answer.notice:
                typer.echo(f"NOTE: {answer.notice}", err=True)
            typer.echo(answer.text)
            for c in answer.citations:
                typer.echo(f"[{c.n}] {c.chunk.title} — {c.chunk.source or '?'}, {c.chunk.date or '?'} ({c.chunk.chunk_id})")
    if outcome.failed and not batch:
        raise typer.Exit(code=1)


@app.command()
def serve(home: HomeOpt = None) -> None:
    """Start the Gradio app (same as `python app.py`)."""
    from rag.ui import launch

    launch(make_settings(home))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
