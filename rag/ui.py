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
README = Path(__file__).resolve().parent.parent / "README.md"
MODELS_LINK_TEXT = "Mô hình / Models (README)"
MODELS_FALLBACK = (
    "Set `RAG_EMBEDDING_MODEL` to a multilingual sentence-transformers model available on this machine "
    "(default `intfloat/multilingual-e5-small`), then run `rag ingest` to re-embed the documents. / "
    "Đặt `RAG_EMBEDDING_MODEL` là một mô hình đa ngôn ngữ có sẵn trên máy rồi chạy `rag ingest`."
)

log = logging.getLogger(__name__)

EXAMPLES = [
    "Có bao nhiêu kỹ sư CNTT Việt Nam đang làm việc tại Nhật Bản?",
    "EMB-AI là gì và được ra mắt khi nào?",
    "doanh nghiep o Osaka co the lien he co quan nao de hop tac KH&CN?",
    "How many Vietnamese IT engineers work in Japan?",
    "Which technology sectors did the Deputy Prime Minister prioritise for cooperation with Japan?",
]
# Fonts that cover every Vietnamese letter (precomposed, all tones, ơ/ư/đ) in regular and bold, tried in
# order: Windows, Android/ChromeOS/many Linux desktops, Debian (fonts-dejavu-core comes with fontconfig,
# so every Debian chromium has it), macOS/iOS. Gradio's default ("Source Sans Pro", a Latin-only subset)
# mixed fonts inside bold Vietnamese words. Local names only: the page asks no font server, on or offline.
# Arial/Helvetica are deliberately absent: on Linux they resolve to Liberation Sans, which lacks ơ, ư and
# the dot-below/hook-above letters.
FONT_STACK = ("Segoe UI", "Noto Sans", "DejaVu Sans", "-apple-system", "BlinkMacSystemFont", "system-ui",
              "sans-serif")
FONT_STACK_MONO = ("Consolas", "Noto Sans Mono", "DejaVu Sans Mono", "Menlo", "ui-monospace", "monospace")
# Page CSS: the compact notice row; table headers that wrap between words only; tables in the text font
# (Gradio's tables use the monospace one, and no monospace font here has every Vietnamese letter: DejaVu
# Sans Mono lacks 46 of them, e.g. ả ấ ầ, which then render as a letter plus a misplaced accent).
CSS = """
#notices-row { align-items: center; gap: 4px; padding: 2px 8px; min-height: 0; }
#notices-row .prose, #notices { font-size: 0.85rem; line-height: 1.3; }
#notices p { margin: 0; }
#notices-dismiss { flex-grow: 0; min-width: 2.2em; max-width: 2.6em; padding: 0 4px; }
th, th * { word-break: normal !important; overflow-wrap: normal !important; hyphens: manual !important; }
th, td { font-family: var(--font) !important; }
"""
# A link to "#models" opens the (closed) Models accordion and scrolls to it: a plain anchor cannot open it.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href$="#models"]');
  if (!link) return;
  event.preventDefault();
  const section = document.getElementById("models");
  if (!section) return;
  const toggle = section.querySelector(".label-wrap");
  if (toggle && !toggle.classList.contains("open")) toggle.click();
  section.scrollIntoView();
}, true);
</script>"""
# Status icons as plain-text symbols that the fonts above have: emoji (⚠️ ✅ ⏳) need an emoji font, which
# a server's or a minimal desktop's browser may lack (they showed as empty boxes).
ICON_WARN, ICON_INFO, ICON_WAIT, ICON_OK = "⚠", "ℹ", "⟳", "✓"
# Long questions are shown as their first lines in the chat bubble; the service always gets the full text.
PREVIEW_LINES = 4
PREVIEW_CHARS = 400
GENERIC_ERROR = {
    "vi": "Đã có lỗi không mong muốn; vui lòng thử lại. Dữ liệu của bạn không bị thay đổi.",
    "en": "Something unexpected went wrong; please try again. Your data was not changed.",
}


def render_answer(answer: Answer, model: str = "") -> str:
    """Markdown for the chat (see `rag.render.answer_markdown`: document and LLM text made safe)."""
    return answer_markdown(answer, model)


def question_preview(text: str, max_lines: int = PREVIEW_LINES, max_chars: int = PREVIEW_CHARS) -> str:
    """What the chat bubble shows of a question: at most `max_lines` lines and `max_chars` characters,
    cut at a word boundary and ended with "…" when anything was left out."""
    text = text or ""
    lines = text.splitlines()
    shown = "\n".join(lines[:max_lines])
    if len(shown) > max_chars:
        cut = shown[:max_chars]
        space = cut.rfind(" ")
        shown = cut[:space] if space > max_chars // 2 else cut
    if shown == text:
        return text
    return shown.rstrip() + " …"


def restore_questions(history: list[dict[str, Any]], asked: list[str]) -> list[dict[str, Any]]:
    """The history with each shortened user bubble replaced by the full question it stands for, so a
    follow-up is condensed from what was really asked (`asked`: the session's questions, in order)."""
    full = {question_preview(q): q for q in asked or [] if question_preview(q) != q}
    if not full:
        return list(history or [])
    out = []
    for m in history or []:
        if isinstance(m, dict) and m.get("role") == "user" and _text(m) in full:
            m = {**m, "content": full[_text(m)]}
        out.append(m)
    return out


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


def _text(message: Any) -> str:
    """The text of a chat message in either Gradio format (a string, or a list of {type: text} parts)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):  # Gradio 6: [{"type": "text", "text": ...}, ...]
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _turns(history: list[dict[str, Any]]) -> list[Any]:
    from rag.chain import Turn

    turns: list[Turn] = []
    pending = None
    for m in history or []:
        text = _text(m)
        if m.get("role") == "user":
            pending = text
        elif m.get("role") == "assistant" and pending is not None:
            turns.append(Turn(pending, text))
            pending = None
    return turns


def mode_notices(service: Service) -> str:
    """The notice under the title, compact (one short line each): the fallback embedder with a link to
    the models section, the answer mode (offline or LLM), and "warming up" until the service is ready."""
    lines = [f"{ICON_WARN} {vi} / {en} [{MODELS_LINK_TEXT}](#models)" for en, vi in service.notices]
    if not service.settings.llm_base_url.strip():
        lines.append(f"{ICON_INFO} Trích nguyên văn từ tài liệu (chế độ offline, không dùng LLM) / "
                     "Answers quote the documents verbatim (offline extractive mode, no LLM).")
    else:
        name = service.settings.llm_model or "LLM"
        lines.append(f"{ICON_INFO} LLM `{name}` viết câu trả lời từ tài liệu; lỗi thì trích nguyên văn / "
                     f"Answers are written by the LLM `{name}` from the documents, with quoted fallback.")
    if not service.ready:
        lines.append(f"{ICON_WAIT} {WARMING_UP['vi']} / {WARMING_UP['en']}")
    return "  \n".join(lines)


def models_section(readme: Path = README) -> str:
    """The README's "## Models" section (what the notice links to), or a short summary without a README
    (an installed wheel); shown in the page, since the app must work with no internet."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return MODELS_FALLBACK
    match = re.search(r"^## Models[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return match.group(1).strip() if match else MODELS_FALLBACK


def _extra_tabs(service: Service) -> None:
    """Tabs other packages register under `rag.ui_tabs` (e.g. eval's Evaluation tab)."""
    for ep in entry_points(group="rag.ui_tabs"):
        try:
            build = ep.load()
        except Exception as exc:  # an optional tab must not take the app down
            log.warning("UI tab %s unavailable: %s", ep.name, exc)
            continue
        build(lambda: service.pipeline, DATASETS_DIR)


def theme():
    """Gradio's default theme with fonts that cover Vietnamese, by local name only (no web fonts)."""
    import gradio as gr

    return gr.themes.Default(font=list(FONT_STACK), font_mono=list(FONT_STACK_MONO))


def page_options() -> dict[str, Any]:
    """Theme, CSS and head script of the page, for `demo.launch(**...)` or `gr.mount_gradio_app(**...)`
    (Gradio 6 takes them there, not in gr.Blocks)."""
    return {"theme": theme(), "css": CSS, "head": HEAD}


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
        with gr.Row(elem_id="notices-row", variant="panel", equal_height=True) as notices_row:
            notices = gr.Markdown(mode_notices(service), elem_id="notices")
            dismiss = gr.Button("✕", size="sm", variant="secondary", elem_id="notices-dismiss", scale=0,
                                min_width=30)
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
            # Filters live in per-session state, so the /chat API keeps its (message, history) signature;
            # so do the full texts of questions whose bubble shows only their first lines.
            filter_state = gr.State(None)
            asked = gr.State([])
            chatbot.like(feedback_handler(service, service.settings), inputs=chatbot, outputs=None,
                         api_visibility="private")
        connections = build_connections_tab(service)
        build_admin_tab(service)
        _extra_tabs(service)
        with gr.Accordion("Mô hình / Models", open=False, elem_id="models"):
            gr.Markdown(models_section())

        def set_filters(sources: list[str] | None, docs: list[str] | None, date_from: str, date_to: str):
            try:
                filters = build_filters(sources, docs, date_from, date_to)
            except ValueError as exc:
                return None, f"{ICON_WARN} {exc}"
            return filters, "" if filters is None else f"{ICON_OK} Đang lọc kết quả / Filtering results"

        for widget in (f_source, f_doc, f_from, f_to):
            widget.change(set_filters, [f_source, f_doc, f_from, f_to], [filter_state, filter_note],
                          api_visibility="private")

        def respond(message: str, history: list[dict[str, Any]], filters: Filters | None = None,
                    questions: list[str] | None = None):
            past = list(history or [])
            questions = [*(questions or []), message or ""]
            shown = [*past, {"role": "user", "content": question_preview(message or "")},
                     {"role": "assistant", "content": "…"}]
            yield "", shown, questions
            for version in handler.reply_stream(message, restore_questions(past, questions), filters):
                shown[-1] = {"role": "assistant", "content": version}
                yield "", shown, questions

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
        box.submit(respond, [box, chatbot, filter_state, asked], [box, chatbot, asked], api_name="chat")
        send.click(respond, [box, chatbot, filter_state, asked], [box, chatbot, asked], api_visibility="private")
        clear.click(lambda: ([], []), None, [chatbot, asked], api_visibility="private")
        dismiss.click(lambda: gr.update(visible=False), None, notices_row, api_visibility="private")

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
