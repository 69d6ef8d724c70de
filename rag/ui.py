"""Gradio UI only: renders what the Pipeline returns; no retrieval or answering logic lives here.

Gradio is imported in this module alone, so the CLI and tests that do not need it stay fast.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eval.ui_tab import build_eval_tab, feedback_handler
from rag.chain import Pipeline, Turn
from rag.cli import answer_json
from rag.config import Settings
from rag.errors import RagError
from rag.render import answer_markdown, escape_inline, partial_markdown
from rag.retrieve import Filters
from rag.text import detect_language
from rag.types import Answer
from rag.ui_connect import build_connections_tab

DATASETS_DIR = Path(__file__).resolve().parent.parent / "eval" / "datasets"

log = logging.getLogger(__name__)

EXAMPLES = [
    "Có bao nhiêu kỹ sư CNTT Việt Nam đang làm việc tại Nhật Bản?",
    "EMB-AI là gì và được ra mắt khi nào?",
    "doanh nghiep o Osaka co the lien he co quan nao de hop tac KH&CN?",
    "What did the Vietnamese delegation do at the STS forum in Kyoto?",
    "Which technology sectors did the Deputy Prime Minister prioritise for cooperation with Japan?",
]
GENERIC_ERROR = {
    "vi": "Đã có lỗi không mong muốn; vui lòng thử lại. Dữ liệu của bạn không bị thay đổi.",
    "en": "Something unexpected went wrong; please try again. Your data was not changed.",
}


def render_answer(answer: Answer, model: str = "") -> str:
    """Markdown for the chat (see `rag.render.answer_markdown`: document and LLM text made safe)."""
    return answer_markdown(answer, model)


def _ui_lang(question: str) -> str:
    return "en" if question.strip() and detect_language(question) == "en" else "vi"


class ChatHandler:
    """Turns a chat message into an assistant reply; errors become one sentence, never a traceback."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def reply_stream(
        self, message: str, history: list[dict[str, Any]], filters: Filters | None = None
    ) -> Iterator[str]:
        """Successive versions of the assistant message: streamed LLM text, then the final rendering."""
        lang = _ui_lang(message or "")
        model = self.pipeline.llm.name if self.pipeline.llm is not None else ""
        partial = ""
        try:
            for event in self.pipeline.stream(message or "", history=_turns(history), filters=filters):
                if event.kind == "token":
                    partial += event.text
                    yield partial_markdown(partial) + " ▌"
                elif event.kind == "reset":
                    partial = ""
                    yield "…"
                elif event.answer is not None:
                    yield render_answer(event.answer, model)
        except RagError as exc:
            if not (message or "").strip():
                yield escape_inline(f"{exc.message('vi')} / {exc.message('en')}")
            else:
                yield escape_inline(exc.message(lang))
        except Exception:
            log.exception("Unexpected error while answering")
            yield GENERIC_ERROR[lang]

    def reply(self, message: str, history: list[dict[str, Any]]) -> str:
        """The final assistant message (non-streaming)."""
        out = ""
        for out in self.reply_stream(message, history):  # noqa: B007 - keep the last version
            pass
        return out

    def ask_api(self, question: str) -> dict:
        """The JSON answer of `rag ask --json`, for API clients; errors come back as {"error": sentence}."""
        try:
            answer = self.pipeline.ask(question)
        except RagError as exc:
            return {"question": question, "error": exc.message(_ui_lang(question))}
        return answer_json(answer)


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def build_filters(
    sources: list[str] | None, docs: list[str] | None, date_from: str, date_to: str
) -> Filters | None:
    """Filters from the UI widgets (None when nothing is chosen); ValueError with a bilingual sentence."""
    date_from, date_to = (date_from or "").strip(), (date_to or "").strip()
    for value in (date_from, date_to):
        if value and not _ISO_DATE.match(value):
            raise ValueError(f"Ngày phải có dạng YYYY-MM-DD / Dates must look like YYYY-MM-DD: {value!r}")
    try:
        filters = Filters(date_from=date_from, date_to=date_to, sources=tuple(sources or ()), doc_ids=tuple(docs or ()))
    except RagError as exc:  # e.g. month 13: the widget's shape check passes, Filters' calendar check does not
        raise ValueError(f"{exc.vi} / {exc.en}") from exc
    return None if filters.is_empty() else filters


def _choices(pipeline: Pipeline, field: str) -> list[str]:
    return sorted({getattr(c, field) for c in pipeline.index.chunks.values() if getattr(c, field)})


def _doc_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    titles = {c.doc_id: c.title for c in pipeline.index.chunks.values()}
    return sorted(((f"{t[:60]} ({d})", d) for d, t in titles.items()), key=lambda x: x[0])


def _turns(history: list[dict[str, Any]]) -> list[Turn]:
    turns: list[Turn] = []
    pending = None
    for m in history or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # Gradio 6: [{"type": "text", "text": ...}, ...]
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        if m.get("role") == "user":
            pending = text
        elif m.get("role") == "assistant" and pending is not None:
            turns.append(Turn(pending, text))
            pending = None
    return turns


def build_ui(pipeline: Pipeline):
    """The Gradio Blocks app for a loaded pipeline."""
    import gradio as gr

    handler = ChatHandler(pipeline)
    notices = [f"⚠️ {en}<br>⚠️ {vi}" for en, vi in pipeline.notices]
    if pipeline.llm is None:
        notices.append(
            "ℹ️ Câu trả lời trích nguyên văn từ tài liệu (chế độ offline, không dùng LLM). / "
            "Answers quote the documents verbatim (offline extractive mode, no LLM)."
        )
    else:
        notices.append(
            f"ℹ️ Câu trả lời do LLM `{pipeline.llm.name}` viết, dựa trên tài liệu; nếu LLM lỗi sẽ trích nguyên văn. / "
            f"Answers are written by the LLM `{pipeline.llm.name}` from the documents, with quoted fallback."
        )
    with gr.Blocks(title="Hỏi đáp Hợp tác Việt Nam – Nhật Bản", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Trợ lý hỏi đáp hợp tác Việt Nam – Nhật Bản · Vietnam–Japan cooperation assistant\n"
            "Hỏi bằng tiếng Việt (có hoặc không dấu) hoặc tiếng Anh; mỗi câu trả lời đều kèm nguồn. "
            "Ask in Vietnamese or English; every answer cites its sources."
        )
        gr.Markdown("\n\n".join(notices), elem_id="notices")
        with gr.Tab("Hỏi đáp / Q&A", id="chat-tab"):
            chatbot = gr.Chatbot(label="Hội thoại / Conversation", height=520, elem_id="chat")
            with gr.Row():
                box = gr.Textbox(
                    placeholder="Nhập câu hỏi… / Type a question…", show_label=False, scale=8, elem_id="question"
                )
                send = gr.Button("Gửi / Send", variant="primary", scale=1, elem_id="send")
            gr.Examples(EXAMPLES, inputs=box, label="Ví dụ / Examples")
            with gr.Accordion("Bộ lọc / Filters", open=False):
                with gr.Row():
                    f_source = gr.Dropdown(_choices(pipeline, "source"), multiselect=True,
                                           label="Nguồn / Outlet", elem_id="filter-source")
                    f_doc = gr.Dropdown(_doc_choices(pipeline), multiselect=True, label="Tài liệu / Document")
                    f_from = gr.Textbox(label="Từ ngày / From (YYYY-MM-DD)", elem_id="filter-from")
                    f_to = gr.Textbox(label="Đến ngày / To (YYYY-MM-DD)", elem_id="filter-to")
                filter_note = gr.Markdown()
            clear = gr.Button("Xóa hội thoại / Clear", size="sm")
            # Filters live in per-session state, so the /chat API keeps its (message, history) signature.
            filter_state = gr.State(None)
            chatbot.like(feedback_handler(pipeline, pipeline.settings), inputs=chatbot, outputs=None,
                         api_visibility="private")
        build_connections_tab(pipeline)
        build_eval_tab(pipeline, DATASETS_DIR)

        def set_filters(sources: list[str] | None, docs: list[str] | None, date_from: str, date_to: str):
            try:
                filters = build_filters(sources, docs, date_from, date_to)
            except ValueError as exc:
                return None, f"⚠️ {exc}"
            return filters, "" if filters is None else "✓ Đang lọc kết quả / Filtering results"

        for widget in (f_source, f_doc, f_from, f_to):
            widget.change(set_filters, [f_source, f_doc, f_from, f_to], [filter_state, filter_note],
                          api_visibility="private")

        def respond(message: str, history: list[dict[str, Any]], filters: Filters | None = None):
            past = list(history or [])
            shown = [*past, {"role": "user", "content": message or ""}, {"role": "assistant", "content": "…"}]
            yield "", shown
            for version in handler.reply_stream(message, past, filters):
                shown[-1] = {"role": "assistant", "content": version}
                yield "", shown

        box.submit(respond, [box, chatbot, filter_state], [box, chatbot], api_name="chat")
        send.click(respond, [box, chatbot, filter_state], [box, chatbot], api_visibility="private")
        clear.click(lambda: [], None, chatbot, api_visibility="private")
        gr.api(handler.ask_api, api_name="ask")
    return demo


def launch_options(settings: Settings) -> dict[str, Any]:
    """Defensive `Blocks.launch` arguments: no SSR (no Node server rendering untrusted text), no
    analytics or share links, an upload size cap, and RAG_HOME and the corpus blocked from Gradio's
    file routes (`/gradio_api/file=…`) whatever Gradio's defaults allow."""
    blocked = sorted({str(Path(p).resolve()) for p in (settings.home, settings.corpus_dir)})
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "show_error": False,
        "ssr_mode": False,
        "share": False,
        "max_file_size": int(settings.max_file_mb * 1024 * 1024),
        "blocked_paths": blocked,
        "allowed_paths": [],
        "enable_monitoring": False,
        "mcp_server": False,
        "pwa": False,
    }


def launch(settings: Settings, **kwargs: Any) -> None:
    """Build the index if needed, then serve the app on settings.host:settings.port (see `launch_options`)."""
    pipeline = Pipeline.from_settings(settings, sync_corpus=True)
    pipeline.warm_up()
    demo = build_ui(pipeline)
    demo.analytics_enabled = False
    demo.queue(default_concurrency_limit=2).launch(**{**launch_options(settings), **kwargs})
