"""Gradio UI only: renders what the service returns; no retrieval or answering logic lives here.

Gradio is imported in the rag.ui* modules alone, so the CLI and tests that do not need it stay fast. The
page is built before the models finish loading: choices that need the index are filled in when a page
loads, and a "warming up" line shows until the service is ready. Tabs from other packages (the
Evaluation tab from eval/) are entry points of the group `rag.ui_tabs`, so this module never imports them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import RagError
from rag.render import answer_markdown, escape_inline, partial_markdown
from rag.retrieve import Filters
from rag.schema import answer_json
from rag.service import WARMING_UP, Service
from rag.text import detect_language
from rag.types import Answer
from rag.ui_admin import build_admin_tab
from rag.ui_connect import build_connections_tab
from rag.ui_feedback import feedback_handler

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

    def __init__(self, service: Service) -> None:
        self.service = service

    def reply_stream(
        self, message: str, history: list[dict[str, Any]], filters: Filters | None = None
    ) -> Iterator[str]:
        """Successive versions of the assistant message: streamed LLM text, then the final rendering."""
        lang = _ui_lang(message or "")
        partial = ""
        try:
            if not self.service.ready and (message or "").strip():
                yield WARMING_UP[lang]  # the stream below waits for start-up to finish
            for event in self.service.stream(message or "", history=_turns(history), filters=filters):
                if event.kind == "token":
                    partial += event.text
                    yield partial_markdown(partial) + " ▌"
                elif event.kind == "reset":
                    partial = ""
                    yield "…"
                elif event.answer is not None:
                    yield render_answer(event.answer, self.service.llm_name)
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
            answer = self.service.ask(question)
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


def _turns(history: list[dict[str, Any]]) -> list[Any]:
    from rag.chain import Turn

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


def mode_notices(service: Service) -> str:
    """The notice lines under the title: fallback embedder, offline/LLM mode, warming up."""
    lines = [f"⚠️ {en}<br>⚠️ {vi}" for en, vi in service.notices]
    if not service.settings.llm_base_url.strip():
        lines.append(
            "ℹ️ Câu trả lời trích nguyên văn từ tài liệu (chế độ offline, không dùng LLM). / "
            "Answers quote the documents verbatim (offline extractive mode, no LLM)."
        )
    else:
        name = service.settings.llm_model or "LLM"
        lines.append(
            f"ℹ️ Câu trả lời do LLM `{name}` viết, dựa trên tài liệu; nếu LLM lỗi sẽ trích nguyên văn. / "
            f"Answers are written by the LLM `{name}` from the documents, with quoted fallback."
        )
    if not service.ready:
        lines.append(f"⏳ {WARMING_UP['vi']} / {WARMING_UP['en']}")
    return "\n\n".join(lines)


def _extra_tabs(service: Service) -> None:
    """Tabs other packages register under `rag.ui_tabs` (e.g. eval's Evaluation tab)."""
    for ep in entry_points(group="rag.ui_tabs"):
        try:
            build = ep.load()
        except Exception as exc:  # an optional tab must not take the app down
            log.warning("UI tab %s unavailable: %s", ep.name, exc)
            continue
        build(lambda: service.pipeline, DATASETS_DIR)


def build_ui(service: Service):
    """The Gradio Blocks app over a service (started or still warming up)."""
    import gradio as gr

    handler = ChatHandler(service)
    with gr.Blocks(title="Hỏi đáp Hợp tác Việt Nam – Nhật Bản", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Trợ lý hỏi đáp hợp tác Việt Nam – Nhật Bản · Vietnam–Japan cooperation assistant\n"
            "Hỏi bằng tiếng Việt (có hoặc không dấu) hoặc tiếng Anh; mỗi câu trả lời đều kèm nguồn. "
            "Ask in Vietnamese or English; every answer cites its sources."
        )
        notices = gr.Markdown(mode_notices(service), elem_id="notices")
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
                    f_source = gr.Dropdown([], multiselect=True, label="Nguồn / Outlet", elem_id="filter-source")
                    f_doc = gr.Dropdown([], multiselect=True, label="Tài liệu / Document")
                    f_from = gr.Textbox(label="Từ ngày / From (YYYY-MM-DD)", elem_id="filter-from")
                    f_to = gr.Textbox(label="Đến ngày / To (YYYY-MM-DD)", elem_id="filter-to")
                filter_note = gr.Markdown()
            clear = gr.Button("Xóa hội thoại / Clear", size="sm")
            # Filters live in per-session state, so the /chat API keeps its (message, history) signature.
            filter_state = gr.State(None)
            chatbot.like(feedback_handler(service, service.settings), inputs=chatbot, outputs=None,
                         api_visibility="private")
        connections = build_connections_tab(service)
        build_admin_tab(service)
        _extra_tabs(service)

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

        def on_load():
            # Waits for start-up, so the page itself is served at once and fills in when the models are in.
            service.wait_ready(timeout=600)
            try:
                sources, docs = service.filter_choices()
            except RagError:
                sources, docs = [], []
            return (mode_notices(service), gr.update(choices=sources), gr.update(choices=docs),
                    *connections["load"]())

        demo.load(on_load, None, [notices, f_source, f_doc, *connections["load_outputs"]], api_visibility="private")
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
    """Serve the app (UI + HTTP API) on settings.host:settings.port; see rag.server."""
    from rag.server import serve

    serve(settings, **kwargs)
