"""`rag connect`: the connection finder on the command line.

    rag connect --province "Vĩnh Phúc" --sector semiconductors
    rag connect "Who can help our province's companies meet partners in Osaka?" --json

Registered by rag.cli as `app.command("connect")(connect_command)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rag.errors import BadInput, RagError


def connect_command(
    province: Annotated[
        str | None,
        typer.Option("--province", "-p", help="Province or city, new (34) or pre-July-2025 name, tones optional."),
    ] = None,
    sector: Annotated[
        str | None,
        typer.Option("--sector", "-s", help="Sector id or name, e.g. semiconductors, 'bán dẫn', AI."),
    ] = None,
    question: Annotated[str | None, typer.Argument(help="Optional question in Vietnamese or English.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Index folder (default: RAG_HOME).")] = None,
) -> None:
    """Who to contact, which programmes and which Japanese localities the documents name, with citations."""
    from rag.cli import _fail, _lang, _pipeline, make_settings
    from rag.connect import build_connection_answer, render_markdown, to_json
    from rag.text import nfc

    settings = make_settings(home)
    q = nfc(question).strip() if question else ""
    lang = _lang(q) if q else "vi"
    try:
        if not (q or (province or "").strip() or (sector or "").strip()):
            raise BadInput("Give a QUESTION, --province or --sector.", "Hãy nhập câu hỏi, --province hoặc --sector.")
        pipeline = _pipeline(settings)
        answer = build_connection_answer(pipeline, q or None, province=province, sector=sector, lang=lang)
    except RagError as exc:
        _fail(exc, lang if q else "en")  # like the other commands: errors in English unless asked in Vietnamese
        return
    if as_json:
        typer.echo(json.dumps(to_json(answer), ensure_ascii=False))
    else:
        typer.echo(render_markdown(answer, lang))
