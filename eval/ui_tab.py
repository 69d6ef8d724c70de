"""The Evaluation tab (Gradio). It reaches the app as an entry point of the group `rag.ui_tabs`
(pyproject.toml), so rag/ui.py never imports eval:

    with gr.Blocks() as demo:
        build_eval_tab(lambda: service.pipeline, Path("eval/datasets"))
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from rag.errors import RagError
from rag.render import eval_row_markdown

log = logging.getLogger(__name__)

PLOT_FILES = (
    ("config_comparison.png", "Configurations / Cấu hình"),
    ("metrics_by_variant.png", "By language / Theo ngôn ngữ"),
    ("metrics_by_category.png", "By category / Theo loại câu hỏi"),
    ("latency.png", "Speed / Tốc độ"),
)
# Plain-text symbols every font stack here has (DejaVu Sans, Segoe UI, …): no emoji font needed.
ICON_OK = "✓"
ICON_FAIL = "✗"
ICON_RUNNING = "⟳"
ALREADY_RUNNING = "Một lượt đánh giá đang chạy / An evaluation is already running."
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
    return eval_row_markdown(row, VARIANT_LABELS)


@dataclass
class EvalJob:
    """One evaluation run, kept on the server so any page (a reload, another tab) can follow it."""

    dataset: str
    configs: list[str]
    out: Path
    total: int = 0
    done: int = 0
    current: str = ""
    state: str = "running"  # running | done | failed
    error: str = ""
    report: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> bool:
        return self.state == "running"


class EvalJobs:
    """The app's evaluation job: at most one runs at a time; the last one stays readable after it ends.

    Held by the tab builder (one per app), so the state is server-side and shared by every page: a page
    loaded while a run is going finds it here and re-attaches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job: EvalJob | None = None

    def start(self, job: EvalJob, work: Any) -> EvalJob:
        """Run `work(job)` in a thread; RuntimeError (one sentence) if a run is already going."""
        with self._lock:
            if self.job is not None and self.job.running:
                raise RuntimeError(ALREADY_RUNNING)
            self.job = job

        def run() -> None:
            try:
                job.report = work(job)
                job.state = "done"
            except (ValueError, OSError, RagError) as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # a broken run must not leave the page waiting forever
                log.exception("Evaluation failed")
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"

        threading.Thread(target=run, name="eval-ui-run", daemon=True).start()
        return job


def progress_html(job: EvalJob | None) -> str:
    """The progress bar of a running job (questions done / total), or "" when none runs."""
    if job is None or not job.running:
        return ""
    total = max(job.total, 1)
    pct = 100 * job.done / total
    label = f"{job.done} / {job.total}" if job.total else "…"
    where = html.escape(job.current)
    return (
        f'<div id="eval-progress-box"><progress id="eval-progress-bar" value="{job.done}" max="{total}" '
        f'style="width:100%;height:14px"></progress>'
        f'<div>{ICON_RUNNING} Đang chạy / Running: <b><span id="eval-progress-count">{label}</span></b> '
        f"câu hỏi / questions ({pct:.0f}%) · {html.escape(job.dataset)} · {html.escape(', '.join(job.configs))}"
        f"{' · ' + where if where else ''}</div></div>"
    )


def status_markdown(job: EvalJob) -> str:
    """One line on a finished (or failed) job, with plain-text icons (no emoji font needed)."""
    if job.state == "failed":
        return f"{ICON_FAIL} {html.escape(job.error)}"
    report = job.report or {}
    msg = (f"{ICON_OK} {report.get('n_questions')} questions × {len(job.configs)} configuration(s), "
           f"{report.get('runtime_s')} s — `{job.out / 'report.md'}`")
    if report and not report.get("judge", {}).get("configured"):
        msg += "  \nFaithfulness / answer relevancy: not measured (no LLM judge configured)."
    return msg


def build_eval_tab(pipeline_factory_or_pipeline: Any, datasets_dir: Path, out_root: Path | None = None) -> None:
    """Render the "Evaluation / Đánh giá" tab inside the current gr.Blocks() context.

    `pipeline_factory_or_pipeline`: a loaded Pipeline, or a no-argument callable returning one (called at
    the first run). Results go to `out_root/<dataset>` (default: <pipeline home>/eval-ui). A run goes on
    in a server thread; pages poll it once a second while it runs, so a reloaded page re-attaches to it
    (progress bar, then the results).
    """
    datasets_dir = Path(datasets_dir)
    jobs = EvalJobs()
    holder: dict[str, Any] = {}

    def pipeline() -> Any:
        if "p" not in holder:
            holder["p"] = _resolve(pipeline_factory_or_pipeline)
        return holder["p"]

    def out_dir_for(dataset_name: str) -> Path:
        root = out_root if out_root is not None else Path(pipeline().settings.home) / "eval-ui"
        return Path(root) / Path(dataset_name).stem

    choices = list_datasets(datasets_dir)
    with gr.Tab("Evaluation / Đánh giá", id="eval-tab") as tab:
        gr.Markdown(_INTRO)
        with gr.Row():
            dataset = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                                  label="Dataset / Bộ câu hỏi", elem_id="eval-dataset", scale=3)
            configs = gr.Dropdown(choices=list(BUILTIN_CONFIGS), value=["hybrid"], multiselect=True,
                                  label="Configuration / Cấu hình", elem_id="eval-configs", scale=3)
            run = gr.Button("Run / Chạy", variant="primary", elem_id="eval-run", scale=1)
        progress = gr.HTML(elem_id="eval-progress")
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
        # Seen job: the page shows results once per finished job (so polling does not reset the pickers).
        seen = gr.State(None)
        timer = gr.Timer(1.0, active=False)

        def work(job: EvalJob) -> dict[str, Any]:
            p = pipeline()

            def tick(done: int, total: int, info: dict[str, Any]) -> None:
                job.done, job.total, job.current = done, total, f"{info.get('config')} · {info.get('id')}"

            return run_eval(datasets_dir / job.dataset, job.out, job.configs, p.settings, resume=False,
                            progress=tick, pipeline=p)

        def results(job: EvalJob) -> tuple[Any, ...]:
            """Values for `result_outputs` when `job` has ended."""
            if job.state != "done" or job.report is None:
                return (status_markdown(job), gr.skip(), *[gr.skip()] * len(images), gr.skip(), gr.skip(),
                        gr.skip())
            out, names = job.out, job.configs
            ids = _ids(out, names[0])
            pngs = [str(out / f) if (out / f).exists() else None for f, _ in PLOT_FILES]
            return (status_markdown(job), summary_table(job.report), *pngs,
                    gr.update(choices=names, value=names[0]), gr.update(choices=ids, value=ids[0] if ids else None),
                    str(out))

        result_outputs = [status, table, *images, pick_cfg, pick_id, out_state]
        idle = (gr.skip(),) * len(result_outputs)

        def on_run(dataset_name: str | None, names: list[str] | None):
            if not dataset_name:
                raise gr.Error("Chọn bộ câu hỏi / Pick a dataset.")
            names = list(names or ["hybrid"])
            try:
                # The total is known before the run starts, so the first progress bar already shows it.
                total = sum(1 for _ in _dataset_lines(datasets_dir / dataset_name)) * len(names)
                job = jobs.start(EvalJob(dataset_name, names, out_dir_for(dataset_name), total=total), work)
            except RuntimeError as exc:
                raise gr.Error(str(exc)) from exc
            except (ValueError, OSError, RagError) as exc:
                raise gr.Error(str(exc)) from exc
            return progress_html(job), "", gr.Timer(active=True), None

        def on_poll(seen_id: int | None):
            """Follow the app's job: progress while it runs; its results once when it has ended. The
            dataset and configuration pickers show the job's (a reloaded page starts with the defaults)."""
            job = jobs.job
            if job is None:
                return "", gr.Timer(active=False), seen_id, gr.skip(), gr.skip(), *idle
            picked = (gr.update(value=job.dataset), gr.update(value=list(job.configs)))
            if job.running:
                return progress_html(job), gr.Timer(active=True), seen_id, *picked, *idle
            if seen_id == id(job):
                return "", gr.Timer(active=False), seen_id, gr.skip(), gr.skip(), *idle
            return "", gr.Timer(active=False), id(job), *picked, *results(job)

        def on_pick(out: str, cfg: str | None, qid: str | None) -> str:
            if not out or not cfg or not qid:
                return ""
            return question_detail(Path(out), cfg, qid)

        def on_pick_cfg(out: str, cfg: str | None):
            ids = _ids(Path(out), cfg) if out and cfg else []
            return gr.update(choices=ids, value=ids[0] if ids else None)

        run.click(on_run, [dataset, configs], [progress, status, timer, seen], api_visibility="private")
        poll_outputs = [progress, timer, seen, dataset, configs, *result_outputs]
        timer.tick(on_poll, seen, poll_outputs, api_visibility="private", show_progress="hidden")
        # A page opened (or reloaded) while a run is going re-attaches to it; so does opening the tab.
        tab.select(on_poll, seen, poll_outputs, api_visibility="private", show_progress="hidden")
        root = gr.context.get_blocks_context()
        if root is not None:
            root.root_block.load(on_poll, seen, poll_outputs, api_visibility="private", show_progress="hidden")
        pick_cfg.change(on_pick_cfg, [out_state, pick_cfg], pick_id, api_visibility="private")
        pick_id.change(on_pick, [out_state, pick_cfg, pick_id], detail, api_visibility="private")


def _dataset_lines(path: Path) -> Iterator[str]:
    """The non-empty lines of a JSONL dataset (one question each), for the progress bar's total."""
    with Path(path).open(encoding="utf-8") as f:
        yield from (line for line in f if line.strip())


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
