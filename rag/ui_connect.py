"""The "Kết nối / Connections" tab: province + sector + free text -> contact points, programmes and Japanese
localities with the passages that mention them, plus an overview of the entities in the corpus.

Thin UI: the answer and the overview come from the service; this module only lays out components and
formats tables and the chart. Gradio and matplotlib are imported inside functions.
"""

from __future__ import annotations

import logging
from typing import Any

from rag.connect import HEADERS
from rag.entities import KIND_LABELS, default_gazetteer
from rag.errors import RagError
from rag.render import connection_markdown, escape_inline
from rag.text import answer_language, detect_language, nfc, strip_diacritics

log = logging.getLogger(__name__)

TAB_LABEL = "Kết nối / Connections"
OVERVIEW_HEADERS = [
    "Thực thể / Entity",
    "Loại / Kind",
    "Số đoạn / Chunks",
    "Số tài liệu / Documents",
    "Từ ngày / First date",
    "Đến ngày / Last date",
    "Thường đi cùng / Co-occurring",
]
# Entity names and co-occurring lists are long, counts and dates short: widths in that proportion keep
# every header on one or two whole-word lines at 1280 px.
OVERVIEW_WIDTHS = ["22%", "11%", "9%", "10%", "11%", "11%", "26%"]
MISSING = {"vi": "không rõ", "en": "unknown"}
NEED_INPUT = (
    "Hãy chọn tỉnh/thành, lĩnh vực hoặc nhập câu hỏi. / "
    "Choose a province or a sector, or type a question."
)
GENERIC_ERROR = {
    "vi": "Đã có lỗi không mong muốn; vui lòng thử lại.",
    "en": "Something unexpected went wrong; please try again.",
}
INTRO = (
    "Tìm cơ quan đầu mối, chương trình và địa phương Nhật Bản mà tài liệu nêu, kèm đoạn trích dẫn nguồn. "
    "Tên tỉnh cũ (trước 1/7/2025) cũng được chấp nhận.  \n"
    "Find the contact points, programmes and Japanese localities the documents mention, each with the "
    "passage that says so. Pre-merger province names are accepted too."
)


def _lang(question: str) -> str:
    return answer_language(detect_language(question)) if question and question.strip() else "vi"


def connect_markdown(service: Any, province: str | None, sector: str | None, question: str | None) -> str:
    """The rendered connection answer for the tab (errors become one sentence, never a traceback)."""
    province = (province or "").strip() or None
    sector = (sector or "").strip() or None
    question = (question or "").strip() or None
    if not (province or sector or question):
        return NEED_INPUT
    lang = _lang(question or "")
    try:
        answer = service.connect(question, province=province, sector=sector, lang=lang)
    except RagError as exc:
        return escape_inline(exc.message(lang))
    except Exception:
        log.exception("Unexpected error in the connection finder")
        return GENERIC_ERROR[lang]
    return with_source_list(connection_markdown(answer, lang), answer, lang)


def with_source_list(markdown: str, answer: Any, lang: str) -> str:
    """The rendered answer with its Sources block as a list: one line per source, "[n] title — outlet,
    date", no chunk ids (they mean nothing to a reader; `rag connect --json` keeps them)."""
    sources = getattr(answer, "sources", ())
    heading = f"**{HEADERS[lang]['sources']}**"
    if not sources or heading not in markdown:
        return markdown
    body = markdown[: markdown.rindex(heading)].rstrip()
    lines = [heading, ""]
    for c in sources:
        meta = ", ".join(x for x in (c.chunk.source, c.chunk.date) if x) or MISSING[lang]
        lines.append(f"{c.n}. {escape_inline(c.chunk.title)} — {escape_inline(meta)}")
    return f"{body}\n\n" + "\n".join(lines)


def overview_rows(service: Any) -> list[dict]:
    """The entity overview of the service's index ([] while it cannot be read)."""
    try:
        return service.entity_overview()
    except RagError:
        return []


def _name(kind: str, canonical: str) -> str:
    gz = default_gazetteer()
    vi, en = gz.display(kind, canonical, "vi"), gz.display(kind, canonical, "en")
    return vi if vi == en else f"{vi} / {en}"


def overview_table(rows: list[dict]) -> list[list[Any]]:
    """Rows for the overview Dataframe (bilingual names and kinds)."""
    out = []
    for r in rows:
        co = "; ".join(f"{_name(c['kind'], c['entity'])} ({c['chunks']})" for c in r["co_occurring"])
        vi, en = KIND_LABELS[r["kind"]]
        out.append([_name(r["kind"], r["entity"]), f"{vi} / {en}", r["chunks"], r["documents"],
                    r["first_date"], r["last_date"], co])
    return out


def overview_frame(table: list[list[Any]]):
    """The overview rows as a DataFrame with the bilingual headers (a bare list would replace them by
    column numbers, or leave the header row empty while there are no rows)."""
    import pandas as pd

    return pd.DataFrame(table, columns=OVERVIEW_HEADERS)


def overview_figure(rows: list[dict], per_kind: int = 5):
    """A matplotlib Figure: one horizontal bar panel per entity kind, its most frequent entities."""
    from matplotlib.figure import Figure

    kinds = [k for k in KIND_LABELS if any(r["kind"] == k for r in rows)]
    fig = Figure(figsize=(10, max(2.2, 1.7 * ((len(kinds) + 1) // 2))), layout="constrained")
    if not kinds:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "Chưa có thực thể / No entities yet", ha="center", va="center")
        ax.axis("off")
        return fig
    cols = 2 if len(kinds) > 1 else 1
    nrows = (len(kinds) + cols - 1) // cols
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(nrows, cols, i + 1)
        top = [r for r in rows if r["kind"] == kind][:per_kind]
        names = [_short(default_gazetteer().display(kind, r["entity"], "vi")) for r in top][::-1]
        counts = [r["chunks"] for r in top][::-1]
        ax.barh(names, counts, color=f"C{i}")
        vi, en = KIND_LABELS[kind]
        ax.set_title(f"{vi} / {en}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Thực thể thường gặp (số đoạn) / Most frequent entities (chunks)", fontsize=10)
    return fig


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _fold(text: str) -> str:
    return strip_diacritics(nfc(text)).casefold().replace("đ", "d")


def sector_choices() -> list[tuple[str, str]]:
    """The sector dropdown's choices (label, id) from the gazetteer.

    The dropdown suggests choices as the user types, in the browser, by "label contains the typed text"
    (case-insensitive); so a label carries the name without tones too when it has tones, and typing
    "ban dan", "bán", "semi" or "Semiconductors" all suggest "Bán dẫn / Semiconductors · ban dan". (Filtering
    on the server at each key press lagged behind fast typing and showed stale lists.)
    """
    from rag.gazetteer import load_sectors

    out = []
    for s in load_sectors():
        label = f"{s.name_vi} / {s.name_en}"
        plain = _fold(s.name_vi)
        if plain != s.name_vi.casefold():
            label += f" · {plain}"
        out.append((label, s.id))
    return out


def build_connections_tab(service: Any) -> dict[str, Any]:
    """Add the Connections tab; call inside `with gr.Blocks():` (or a `gr.Tabs()` of it).

    Returns the components by name so a caller (or a test) can wire or inspect them, plus `load` (a
    function returning fresh values for `load_outputs`, called when a page loads: the overview needs the
    index, which may still be loading when the page is built).
    """
    import gradio as gr

    from rag.gazetteer import new_province_names

    sectors = sector_choices()
    with gr.Tab(TAB_LABEL, id="connections", elem_id="connections-tab"):
        gr.Markdown(INTRO)
        with gr.Row():
            province = gr.Dropdown(
                choices=list(new_province_names()), value=None, allow_custom_value=True,
                label="Tỉnh/thành (34 đơn vị mới; gõ tên cũ cũng được) / Province", elem_id="connect-province",
            )
            sector = gr.Dropdown(
                choices=sectors, value=None, allow_custom_value=True, label="Lĩnh vực / Sector",
                info="Gõ vài chữ, có dấu hoặc không / Type a few letters (Vietnamese or English)",
                elem_id="connect-sector",
            )
        question = gr.Textbox(
            label="Câu hỏi (không bắt buộc) / Question (optional)",
            placeholder="Doanh nghiệp ở Phú Thọ muốn hợp tác bán dẫn với Nhật thì bắt đầu từ đâu?",
            elem_id="connect-question",
        )
        button = gr.Button("Tìm đầu mối / Find connections", variant="primary", elem_id="connect-button")
        output = gr.Markdown(elem_id="connect-output")
        with gr.Accordion("Tổng quan thực thể trong tài liệu / Entities in the documents", open=False):
            table = gr.Dataframe(
                value=overview_frame([]), headers=OVERVIEW_HEADERS, interactive=False, wrap=True,
                column_widths=OVERVIEW_WIDTHS, elem_id="connect-overview",
            )
            plot = gr.Plot(elem_id="connect-chart")

        def run(p: str | None, s: str | None, q: str | None) -> str:
            return connect_markdown(service, p, s, q)

        button.click(run, [province, sector, question], output, api_name="connect")
        question.submit(run, [province, sector, question], output, api_visibility="private")
    def load() -> tuple[Any, Any]:
        rows = overview_rows(service)
        return overview_frame(overview_table(rows)), overview_figure(rows)

    return {"province": province, "sector": sector, "question": question, "button": button, "output": output,
            "table": table, "plot": plot, "load": load, "load_outputs": [table, plot]}
