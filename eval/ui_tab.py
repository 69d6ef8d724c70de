"""Gradio pieces for the evaluation tab and for chat feedback (imported by rag/ui.py only).

    with gr.Blocks() as demo:
        with gr.Tab("Chat / Hỏi đáp"):
            chatbot = gr.Chatbot(...)
            chatbot.like(feedback_handler(pipeline, settings), inputs=chatbot, outputs=None)
        build_eval_tab(pipeline, Path("eval/datasets"))
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from eval.runner import (
    BUILTIN_CONFIGS,
    JUDGE_METRICS,
    MAIN_COLUMNS,
    METRIC_LABELS,
    REPORT_JSON,
    RESULTS,
    VARIANT_LABELS,
    fmt_metric,
    run_eval,
)
from rag.config import Settings
from rag.errors import RagError
from rag.feedback import FeedbackStore
from rag.text import detect_language

log = logging.getLogger(__name__)

PLOT_FILES = (
    ("config_comparison.png", "Configurations / Cấu hình"),
    ("metrics_by_variant.png", "By language / Theo ngôn ngữ"),
    ("metrics_by_category.png", "By category / Theo loại câu hỏi"),
    ("latency.png", "Speed / Tốc độ"),
)
_INTRO = (
    "Chạy bộ câu hỏi chuẩn qua trợ lý và chấm điểm câu trả lời. / Run a gold question set through the assistant "
    "and score the answers. **hit@5**: a passage with the answer is among the first 5 found · **MRR**: how high "
    "the first useful passage ranks (1 = first) · **Refusal accuracy**: answers when it should and says "
    "“not in the documents” when it should · **Evidence coverage**: share of the expected facts the answer quotes."
)


def _resolve(pipeline_or_factory: Any) -> Any:
    return pipeline_or_factory() if callable(pipeline_or_factory) and not hasattr(pipeline_or_factory, "ask") \
        else pipeline_or_factory


def list_datasets(datasets_dir: Path) -> list[str]:
    """JSONL files in the datasets folder, by name."""
    d = Path(datasets_dir)
    return sorted(p.name for p in d.glob("*.jsonl")) if d.is_dir() else []


def summary_table(report: dict[str, Any]):
    """The main table of a report as a pandas DataFrame (one row per configuration)."""
    import pandas as pd

    from eval.runner import settings_view

    judged = bool(report["judge"]["configured"])
    rows = []
    views = settings_view(report)  # seeds only, and with distractors when the run had them
    for setting, results in views.items():
        for name, res in results.items():
            o = res["overall"]
            total = res["latency_ms"].get("total")
            row = {"Configuration": name, **({"Setting": setting} if len(views) > 1 else {}), "Questions": o["n"]}
            row.update({METRIC_LABELS[m]: fmt_metric(m, o.get(m), judged) for m in MAIN_COLUMNS
                        if judged or m not in JUDGE_METRICS})
            row["p50 / p95 ms"] = f"{total['p50']:.0f} / {total['p95']:.0f}" if total else "—"
            rows.append(row)
    return pd.DataFrame(rows)


def question_detail(out_dir: Path, config: str, qid: str) -> str:
    """Markdown for one evaluated question: gold, answer, citations, top-10 passages, metrics."""
    path = Path(out_dir) / RESULTS
    if not path.exists() or not qid:
        return ""
    row = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("config") == config and str(obj.get("id")) == str(qid):
            row = obj
    if row is None:
        return f"No result for `{qid}` in configuration `{config}`."
    gold = row.get("gold", {})
    esc = html.escape
    parts = [
        f"### `{esc(str(qid))}` — {esc(VARIANT_LABELS.get(gold.get('variant'), str(gold.get('variant'))))}, "
        f"{esc(str(gold.get('category')))}",
        f"**Question / Câu hỏi:** {esc(row.get('question', ''))}",
        f"**Expected / Đáp án chuẩn:** {esc(gold.get('answer') or ('(not answerable)' if not gold.get('answerable') else '—'))}",
        "**Answer / Trả lời" + (" (refused / từ chối)" if row.get("refused") else "") + ":**  \n"
        + esc(row.get("answer", "")).replace("\n", "  \n"),
    ]
    if row.get("error"):
        parts.append(f"⚠️ {esc(row['error'])}")
    if row.get("citations"):
        parts.append("**Sources / Nguồn**")
        for c in row["citations"]:
            parts.append(f"[{c.get('n')}] **{esc(c.get('title', ''))}** — {esc(c.get('source') or '?')}, "
                         f"{esc(c.get('date') or '?')} (`{esc(c.get('chunk_id', ''))}`)  \n> {esc(c.get('quote', ''))}")
    if gold.get("evidence"):
        parts.append("**Evidence phrases / Bằng chứng:** " + " · ".join(f"“{esc(e)}”" for e in gold["evidence"]))
    top = row.get("retrieved_at_10", [])
    if top:
        parts.append("**Top 10 passages / 10 đoạn đầu:** " + ", ".join(
            f"{i}. `{esc(h['chunk_id'])}`{' ✅' if h.get('relevant') else ''}" for i, h in enumerate(top, 1)))
    metrics = row.get("metrics", {})
    shown = [f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items() if v is not None]
    parts.append("**Scores:** " + ", ".join(shown))
    parts.append("**Latency (ms):** " + ", ".join(f"{k} {v:.0f}" for k, v in row.get("latency_ms", {}).items()))
    return "\n\n".join(parts)


def build_eval_tab(pipeline_factory_or_pipeline: Any, datasets_dir: Path, out_root: Path | None = None) -> None:
    """Render the "Evaluation / Đánh giá" tab inside the current gr.Blocks() context.

    `pipeline_factory_or_pipeline`: a loaded Pipeline, or a no-argument callable returning one (called at
    the first run). Results go to `out_root/<dataset>` (default: <pipeline home>/eval-ui).
    """
    datasets_dir = Path(datasets_dir)
    lock = threading.Lock()
    holder: dict[str, Any] = {}

    def pipeline() -> Any:
        if "p" not in holder:
            holder["p"] = _resolve(pipeline_factory_or_pipeline)
        return holder["p"]

    def out_dir_for(dataset_name: str) -> Path:
        root = out_root if out_root is not None else Path(pipeline().settings.home) / "eval-ui"
        return Path(root) / Path(dataset_name).stem

    choices = list_datasets(datasets_dir)
    with gr.Tab("Evaluation / Đánh giá", id="eval-tab"):
        gr.Markdown(_INTRO)
        with gr.Row():
            dataset = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                                  label="Dataset / Bộ câu hỏi", elem_id="eval-dataset", scale=3)
            configs = gr.Dropdown(choices=list(BUILTIN_CONFIGS), value=["hybrid"], multiselect=True,
                                  label="Configuration / Cấu hình", elem_id="eval-configs", scale=3)
            run = gr.Button("Run / Chạy", variant="primary", elem_id="eval-run", scale=1)
        status = gr.Markdown(elem_id="eval-status")
        table = gr.Dataframe(label="Results / Kết quả", interactive=False, wrap=True, elem_id="eval-table")
        with gr.Row():
            images = [gr.Image(label=label, type="filepath", interactive=False, show_label=True)
                      for _, label in PLOT_FILES[:2]]
        with gr.Row():
            images += [gr.Image(label=label, type="filepath", interactive=False, show_label=True)
                       for _, label in PLOT_FILES[2:]]
        gr.Markdown("#### Xem từng câu hỏi / Inspect one question")
        with gr.Row():
            pick_cfg = gr.Dropdown(choices=[], label="Configuration / Cấu hình", elem_id="eval-pick-config")
            pick_id = gr.Dropdown(choices=[], label="Question id / Mã câu hỏi", elem_id="eval-pick-id")
        detail = gr.Markdown(elem_id="eval-detail")
        out_state = gr.State("")

        def on_run(dataset_name: str | None, names: list[str] | None, progress=gr.Progress()):  # noqa: B008
            if not dataset_name:
                raise gr.Error("Chọn bộ câu hỏi / Pick a dataset.")
            names = list(names or ["hybrid"])
            if not lock.acquire(blocking=False):
                raise gr.Error("Một lượt đánh giá đang chạy / An evaluation is already running.")
            try:
                p = pipeline()
                out = out_dir_for(dataset_name)

                def tick(done: int, total: int, info: dict[str, Any]) -> None:
                    progress(done / max(total, 1), desc=f"{info.get('config')} · {info.get('id')} ({done}/{total})")

                progress(0, desc="Loading / Đang tải…")
                report = run_eval(datasets_dir / dataset_name, out, names, p.settings, resume=False,
                                  progress=tick, pipeline=p)
            except (ValueError, OSError, RagError) as exc:
                raise gr.Error(str(exc)) from exc
            finally:
                lock.release()
            ids = [w for w in _ids(out, names[0])]
            pngs = [str(out / f) if (out / f).exists() else None for f, _ in PLOT_FILES]
            msg = (f"✅ {report['n_questions']} questions × {len(names)} configuration(s), "
                   f"{report.get('runtime_s')} s — `{out / 'report.md'}`")
            if not report["judge"]["configured"]:
                msg += "  \nFaithfulness / answer relevancy: not measured (no LLM judge configured)."
            return (msg, summary_table(report), *pngs,
                    gr.update(choices=names, value=names[0]), gr.update(choices=ids, value=ids[0] if ids else None),
                    str(out))

        def on_pick(out: str, cfg: str | None, qid: str | None) -> str:
            if not out or not cfg or not qid:
                return ""
            return question_detail(Path(out), cfg, qid)

        def on_pick_cfg(out: str, cfg: str | None):
            ids = _ids(Path(out), cfg) if out and cfg else []
            return gr.update(choices=ids, value=ids[0] if ids else None)

        run.click(on_run, [dataset, configs], [status, table, *images, pick_cfg, pick_id, out_state],
                  api_visibility="private")
        pick_cfg.change(on_pick_cfg, [out_state, pick_cfg], pick_id, api_visibility="private")
        pick_id.change(on_pick, [out_state, pick_cfg, pick_id], detail, api_visibility="private")


def _ids(out: Path, config: str) -> list[str]:
    path = Path(out) / REPORT_JSON
    results = Path(out) / RESULTS
    if not path.exists() or not results.exists():
        return []
    ids: list[str] = []
    for line in results.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("config") == config and str(obj.get("id")) not in ids:
            ids.append(str(obj.get("id")))
    return ids


# ============================================================================ feedback

def _text(content: Any) -> str:
    """Plain text of a chat message's content (a string, a part dict, or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or content.get("content") or "")
    if isinstance(content, list | tuple):
        return "\n".join(t for t in (_text(c) for c in content) if t)
    return str(content)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", html.unescape(text))


def feedback_handler(
    pipeline: Any, settings: Settings | None = None, lookup: Callable[[str], Any] | None = None
) -> Callable[..., None]:
    """A `chatbot.like(fn, inputs=chatbot)` listener that stores 👍/👎 in RAG_HOME/feedback.sqlite3.

    The liked message's question is the user message before it. The structured answer (citations,
    backend, language) comes from `lookup(shown_text)` when given (e.g. a dict of the Answers the chat
    produced); otherwise, for the offline extractive backend, by asking the pipeline again with the same
    history (deterministic and cheap). When neither yields the answer that was shown (e.g. an LLM answer),
    the shown text is stored without citations. A string `liked` (Gradio feedback options) is stored as 👎
    with the option as comment.
    """
    store = FeedbackStore.from_settings(settings or pipeline.settings)

    def on_like(history: list[dict[str, Any]], data: gr.LikeData) -> None:
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        messages = list(history or [])
        if not isinstance(index, int) or not 0 <= index < len(messages):
            return None
        shown = _text(data.value) or _text(messages[index].get("content"))
        question, turns, pending = "", [], None
        for m in messages[:index]:
            role, text = m.get("role"), _text(m.get("content"))
            if role == "user":
                pending = text
            elif role == "assistant" and pending is not None:
                turns.append((pending, text))
                pending = None
        question = pending or ""
        liked = data.liked
        rating = (1 if liked else -1) if isinstance(liked, bool) else -1
        comment = "" if isinstance(liked, bool) else str(liked)
        answer_text, citations, language = html.unescape(shown), [], ""
        backend = str(getattr(pipeline, "default_backend", "") or "")
        answer = lookup(shown) if lookup is not None else None
        if answer is None and question.strip() and backend in ("", "extractive"):
            try:
                from rag.chain import Turn

                answer = pipeline.ask(question, history=[Turn(q, a) for q, a in turns])
            except RagError:
                answer = None
        if answer is not None and _squash(answer.text) and _squash(answer.text) in _squash(shown):
            answer_text, citations = answer.text, list(answer.citations)
            backend, language = answer.backend, answer.language
        language = language or ("en" if detect_language(question or shown) == "en" else "vi")
        store.record(question, answer_text, rating, comment, citations, backend, language)
        gr.Info("Cảm ơn phản hồi của bạn! / Thanks for the feedback!")
        return None

    return on_like
