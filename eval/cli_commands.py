"""Command functions for `rag eval` and `rag feedback export` (typer-annotated).

They reach the `rag` command as entry points of the group `rag.commands` (pyproject.toml), so rag.cli
never imports eval.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATASET = Path("eval/datasets/gold.jsonl")
DEFAULT_SOURCE = Path("../shared/corpora/viwiki.tar.xz")
DEFAULT_CACHE = Path.home() / ".cache" / "vj-rag-eval"


def _settings(home: Path | None):
    from rag.config import load_settings

    return load_settings(home)


def _judge(settings: Any, url: str, model: str) -> Any:
    if not url.strip():
        return None
    from rag.llm import OpenAICompatibleClient

    return OpenAICompatibleClient.from_settings(settings.model_copy(update={"llm_base_url": url, "llm_model": model}))


def eval_command(
    dataset: Annotated[Path, typer.Option(
        "--dataset", "-d", metavar="FILE", show_default=False,
        help=f"Gold questions (JSONL); default {DEFAULT_DATASET.as_posix()}.")] = DEFAULT_DATASET,
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="DIR", show_default=False,
        help="Folder for results.jsonl, report.json/.md and plots; default eval/runs/latest.")] = Path(
        "eval/runs/latest"),
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", metavar="NAME[=FILE]",
        help="Built-in configuration (hybrid, bm25, dense, hybrid-nolexicon) or NAME=FILE (.json/.toml/.yaml "
             "overrides); repeatable. Default: hybrid.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", metavar="FILE", help="An earlier report.json: print deltas and exit 1 on a drop beyond --tolerance.")] = None,
    gate_metrics: Annotated[str, typer.Option(
        "--gate-metrics", metavar="LIST", show_default=False,
        help="Comma-separated metrics the baseline gate checks; default hit@5,refusal_accuracy.")] = (
        "hit@5,refusal_accuracy"),
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=0.0, metavar="X", show_default=False,
        help="Allowed drop, absolute (0.02 = 2 points); default 0.02.")] = 0.02,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Skip (config, question) pairs already in OUT/results.jsonl.")] = True,
    home: Annotated[Path | None, typer.Option(
        "--home", metavar="DIR", help="Index folder to use (built/updated from RAG_CORPUS_DIR); default OUT/index.")] = None,
    judge_url: Annotated[str, typer.Option(
        "--judge-url", envvar="RAG_JUDGE_BASE_URL", metavar="URL", show_envvar=False,
        help="OpenAI-compatible server for the LLM judge (faithfulness, answer relevancy); off when empty. "
             "Env: RAG_JUDGE_BASE_URL.")] = "",
    judge_model: Annotated[str, typer.Option("--judge-model", envvar="RAG_JUDGE_MODEL", metavar="NAME",
                                             show_envvar=False,
                                             help="Model name on the judge server. Env: RAG_JUDGE_MODEL.")] = "",
    distractors: Annotated[str | None, typer.Option(
        "--distractors", metavar="DIR|LIST", show_default=False,
        help="Also answer the gold set with these documents indexed beside the corpus: a folder, a list of "
             "viwiki article ids (eval/distractors/ci.txt, full.txt) or a .json {list, source}. The report "
             "then shows every metric seeds-only and with distractors.")] = None,
    distractor_source: Annotated[Path, typer.Option(
        "--distractor-source", envvar="RAG_DISTRACTOR_SOURCE", metavar="PATH", show_envvar=False,
        show_default=False,
        help=f"The viwiki archive (.tar.xz) or extracted folder that list ids refer to; default "
             f"{DEFAULT_SOURCE.as_posix()}. Env: RAG_DISTRACTOR_SOURCE.")] = DEFAULT_SOURCE,
    cache_dir: Annotated[Path, typer.Option(
        "--cache-dir", envvar="RAG_EVAL_CACHE", metavar="DIR", show_envvar=False, show_default=False,
        help=f"Where distractor documents and their index are kept between runs (outside the repo); "
             f"default {DEFAULT_CACHE.as_posix()}. Env: RAG_EVAL_CACHE.")] = DEFAULT_CACHE,
) -> None:
    """Evaluate answer quality on a gold dataset.

    Optionally compares with a baseline report (--baseline). Writes per-question results, a report (Markdown and JSON) and plots to --out.
    """
    from tqdm import tqdm

    from eval import distractors as D
    from eval.gate import compare
    from eval.runner import (
        REPORT_MD,
        fmt_metric,
        parse_config_specs,
        resolve_configs,
        run_eval,
        settings_view,
    )

    settings = _settings(home if home is not None else out / "index")
    try:
        specs = parse_config_specs(config)
        resolve_configs(specs, settings)  # fail on a bad configuration before loading anything
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc
    if not dataset.is_file():
        raise typer.BadParameter(f"{dataset} does not exist", param_hint="--dataset")
    if baseline is not None and not baseline.exists():
        raise typer.BadParameter(f"{baseline} does not exist", param_hint="--baseline")
    if distractors is None:  # a configuration file may name the distractors for the whole run
        named = {str(c.overrides["distractors"]) for c in resolve_configs(specs, settings)
                 if c.overrides.get("distractors")}
        if len(named) > 1:
            raise typer.BadParameter("configurations name different distractors; run them separately",
                                     param_hint="--config")
        distractors = next(iter(named), None)
    dset = None
    if distractors:
        try:
            dset = D.resolve(distractors, distractor_source, cache_dir)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--distractors") from exc
    judge = _judge(settings, judge_url, judge_model)

    bar = tqdm(total=0, desc="evaluating", unit="q", file=sys.stderr)

    def progress(done: int, total: int, info: dict[str, Any]) -> None:
        if bar.total != total:
            bar.total = total
            bar.n = done - 1
        bar.set_postfix_str(f"{info.get('config')} {info.get('id')}", refresh=False)
        bar.update(done - bar.n)

    t = time.perf_counter()
    try:
        report = run_eval(dataset, out, specs, settings, resume=resume, progress=progress, judge=judge,
                          distractors=dset,
                          distractor_home=dset.index_home(cache_dir, settings) if dset is not None else None)
    except ValueError as exc:
        bar.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    bar.close()
    typer.echo(f"{report['n_questions']} questions × {len(report['results'])} configuration(s) in "
               f"{time.perf_counter() - t:.1f} s → {out / REPORT_MD}")
    judged = report["judge"]["configured"]
    cols = ("hit@1", "hit@5", "mrr", "ndcg@10", "refusal_accuracy", "false_refusal_rate", "evidence_coverage",
            "faithfulness")
    typer.echo("config".ljust(34) + "".join(c.rjust(19) for c in cols))
    for setting, results in settings_view(report).items():
        for name, res in results.items():
            typer.echo(f"{name} ({setting})".ljust(34)
                       + "".join(fmt_metric(c, res["overall"][c], judged).rjust(19) for c in cols))
    if baseline is not None:
        table, failed = compare(report, baseline, gate_metrics, tolerance)
        typer.echo("")
        typer.echo(table)
        if failed:
            raise typer.Exit(code=1)


def feedback_export_command(
    out: Annotated[Path, typer.Argument(metavar="FILE", hidden=True)] = Path("eval/datasets/feedback-drafts.jsonl"),
    home: Annotated[Path | None, typer.Option("--home", metavar="DIR",
                                              help="Index folder (default: RAG_HOME or .rag).")] = None,
) -> None:
    """Export chat thumbs up / down as draft gold questions to FILE.

    FILE defaults to eval/datasets/feedback-drafts.jsonl; thumbs-down ones are flagged needs_review.
    """
    from rag.feedback import FeedbackStore

    store = FeedbackStore.from_settings(_settings(home))
    n = store.export_drafts(out)
    up, down = store.count(1), store.count(-1)
    typer.echo(f"{n} draft question(s) written to {out} ({up} 👍, {down} 👎 needing review).")
