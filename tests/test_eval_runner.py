"""Offline evaluation runner on a 6-question mini dataset over the shared seed index (no model reload)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eval import metrics as M
from eval.runner import (
    BUILTIN_CONFIGS,
    REPORT_METRICS,
    judge_answer,
    parse_config_specs,
    resolve_config,
    run_eval,
)
from rag.chain import Pipeline
from rag.config import BUNDLED_MODEL
from rag.retrieve import weights_for

DOC = "pho-thu-tuong-gap-nha-khoa-hoc-viet-nam-tai-nhat-2025"
MINI = [
    {"id": "vi-1", "lang": "vi", "variant": "diacritics", "category": "numbers", "answerable": True,
     "question": "Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?", "answer": "5.000 kỹ sư CNTT",
     "evidence": ["5.000 kỹ sư CNTT"], "doc_ids": [DOC], "follows": None},
    {"id": "vi-2", "lang": "vi", "variant": "diacritics", "category": "definition", "answerable": True,
     "question": "EMB-AI là gì?", "answer": "Ứng dụng trí tuệ nhân tạo hỗ trợ kết nối địa phương",
     "evidence": ["ứng dụng trí tuệ nhân tạo hỗ trợ kết nối địa phương"], "doc_ids": [DOC], "follows": None},
    {"id": "en-1", "lang": "en", "variant": "en", "category": "numbers", "answerable": True,
     "question": "How many Vietnamese IT engineers work in Japan?", "answer": "5,000",
     "evidence": ["5.000 kỹ sư CNTT"], "doc_ids": [DOC], "follows": None},
    {"id": "nd-1", "lang": "vi", "variant": "no_diacritics", "category": "definition", "answerable": True,
     "question": "emb-ai la gi", "answer": "Ứng dụng trí tuệ nhân tạo",
     "evidence": ["ứng dụng trí tuệ nhân tạo hỗ trợ kết nối địa phương"], "doc_ids": [DOC], "follows": None},
    {"id": "un-1", "lang": "vi", "variant": "diacritics", "category": "unanswerable", "answerable": False,
     "question": "Dân số của Osaka là bao nhiêu?", "answer": "", "evidence": [], "doc_ids": [], "follows": None},
    {"id": "un-2", "lang": "en", "variant": "en", "category": "unanswerable", "answerable": False,
     "question": "What is the population of Osaka?", "answer": "", "evidence": [], "doc_ids": [],
     "follows": "un-1"},
]
LINE_KEYS = {"id", "question", "answer", "refused", "backend", "citations", "retrieved", "timings_ms", "config",
             "gold", "metrics", "latency_ms", "retrieved_at_10", "error"}
QUESTION_METRICS = {"hit@1", "hit@3", "hit@5", "hit@10", "recall@5", "recall@10", "mrr", "ndcg@10",
                    "refusal_correct", "false_refusal", "unanswerable_refused", "citation_precision", "evidence_coverage",
                    "faithfulness",
                    "answer_relevancy"}
PER_QUESTION = {"refusal_accuracy": "refusal_correct", "false_refusal_rate": "false_refusal"}


@pytest.fixture
def dataset(tmp_path) -> Path:
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in MINI), encoding="utf-8")
    return path


@pytest.fixture
def no_reload(monkeypatch):
    """Fail loudly if the runner tries to load a model or rebuild the index instead of reusing the pipeline's."""

    def boom(*args, **kwargs):
        raise AssertionError("the evaluation must reuse the pipeline's embedder")

    monkeypatch.setattr("rag.embed.load_embedder", boom)
    monkeypatch.setattr("rag.chain.load_embedder", boom, raising=False)


@pytest.fixture
def ask_spy(monkeypatch):
    """Records (question, history) of every Pipeline.ask while still answering for real."""
    calls: list[tuple[str, list]] = []
    original = Pipeline.ask

    def spy(self, question, history=None, *args, **kwargs):
        calls.append((question, list(history or [])))
        return original(self, question, history, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "ask", spy)
    return calls


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _mean(values):
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _expected_score(ranks: dict[str, int], weights: dict[str, float], rrf_k: int) -> float:
    implicit = {"dense_translated": weights.get("dense", 1.0), "bm25_translated": weights.get("bm25", 1.0)}
    total = 0.0
    for run, rank in ranks.items():
        w = weights.get(run, implicit.get(run, 0.0))
        if w > 0:
            total += w / (rrf_k + rank)
    return total


def test_run_eval_writes_results_report_and_plots(pipeline, dataset, tmp_path, no_reload, ask_spy):
    out = tmp_path / "run"
    report = run_eval(dataset, out, ["hybrid", "bm25"], pipeline.settings, pipeline=pipeline)

    rows = _lines(out / "results.jsonl")
    assert len(rows) == 12
    assert {(r["config"], r["id"]) for r in rows} == {(c, q["id"]) for c in ("hybrid", "bm25") for q in MINI}
    for r in rows:
        assert set(r) >= LINE_KEYS, LINE_KEYS - set(r)
        assert set(r["metrics"]) == QUESTION_METRICS
        assert r["error"] is None
        assert {"retrieve", "answer", "total", "embed", "dense", "bm25"} <= set(r["latency_ms"])
        # Dense search ranks every chunk; keyword search alone may find fewer than 10 matching ones.
        if r["config"] == "hybrid":
            assert len(r["retrieved_at_10"]) == 10
        else:
            assert len(r["retrieved_at_10"]) <= 10
        gold = next(q for q in MINI if q["id"] == r["id"])
        m = r["metrics"]
        if gold["answerable"]:
            assert m["false_refusal"] == r["refused"]
            assert m["hit@1"] <= m["hit@3"] <= m["hit@5"] <= m["hit@10"]
            relevant = [h["relevant"] for h in r["retrieved_at_10"]]
            assert m["hit@10"] == float(any(relevant))
            assert m["mrr"] == pytest.approx(M.reciprocal_rank(relevant))
        else:
            assert m["hit@5"] is None and m["mrr"] is None and m["false_refusal"] is None
            assert m["refusal_correct"] == r["refused"]
        assert m["faithfulness"] is None and m["answer_relevancy"] is None  # no judge configured

    # The ablation really changes the fusion weights: every fused score is reproducible from the run
    # ranks with the configuration's weights (bm25 = dense runs weigh 0).
    for r in rows:
        weights = weights_for(BUNDLED_MODEL)[r["query_language"]]  # the tests run the fallback embedder
        if r["config"] == "bm25":
            weights = {**weights, "dense": 0.0, "dense_translated": 0.0}
        for hit in r["retrieved"]:
            expected = _expected_score(hit["ranks"], weights, pipeline.settings.rrf_k)
            assert hit["score"] == pytest.approx(expected, abs=2e-6)
    assert any(r["retrieved"] != s["retrieved"] for r in rows for s in rows
               if r["id"] == s["id"] and r["config"] == "hybrid" and s["config"] == "bm25")

    # The follow-up got the previous turn as history (once per configuration).
    follow_ups = [h for q, h in ask_spy if q == MINI[5]["question"]]
    assert len(follow_ups) == 2
    for history in follow_ups:
        assert len(history) == 1 and history[0].question == MINI[4]["question"]
    assert all(not h for q, h in ask_spy if q != MINI[5]["question"])

    # report.json is what results.jsonl says.
    on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert on_disk["results"].keys() == {"hybrid", "bm25"} == report["results"].keys()
    assert on_disk["n_questions"] == 6 and on_disk["judge"]["configured"] is False
    for config, res in on_disk["results"].items():
        mine = [r for r in rows if r["config"] == config]
        assert set(res) >= {"overall", "by_lang", "by_variant", "by_category", "latency_ms"}
        assert res["overall"]["n"] == 6 and res["overall"]["n_answerable"] == 4
        for metric in REPORT_METRICS:
            key = PER_QUESTION.get(metric, metric)
            expected = _mean(r["metrics"][key] for r in mine)
            assert res["overall"][metric] == (pytest.approx(expected, abs=1e-6) if expected is not None else None)
            for group_key, field in (("by_lang", "lang"), ("by_variant", "variant"), ("by_category", "category")):
                for group, summary in res[group_key].items():
                    sub = [r for r in mine if r["gold"][field] == group]
                    assert summary["n"] == len(sub)
                    exp = _mean(r["metrics"][key] for r in sub)
                    assert summary[metric] == (pytest.approx(exp, abs=1e-6) if exp is not None else None)
        assert set(res["by_variant"]) == {"diacritics", "no_diacritics", "en"}
        assert set(res["by_lang"]) == {"vi", "en"}
        for stage in ("embed", "retrieve", "answer", "total"):
            values = [r["latency_ms"][stage] for r in mine]
            assert res["latency_ms"][stage]["p50"] == pytest.approx(M.percentile(values, 50), abs=0.01)
            assert res["latency_ms"][stage]["p95"] == pytest.approx(M.percentile(values, 95), abs=0.01)
    # The canonical answerable question is found and answered by the default configuration.
    vi1 = next(r for r in rows if r["config"] == "hybrid" and r["id"] == "vi-1")
    assert vi1["metrics"]["hit@5"] == 1.0 and not vi1["refused"] and vi1["metrics"]["evidence_coverage"] > 0

    md = (out / "report.md").read_text(encoding="utf-8")
    for name in ("hybrid", "bm25"):
        assert f"**{name}**" in md
    assert "not measured (no LLM judge configured)" in md
    assert "hit@k" in md and "## Main results" in md
    for w in on_disk["worst"]:
        assert f"(results.jsonl#L{w['line']})" in md
        assert rows[w["line"] - 1]["id"] == w["id"] and rows[w["line"] - 1]["config"] == "hybrid"

    pngs = ["config_comparison.png", "metrics_by_variant.png", "metrics_by_category.png", "latency.png"]
    assert sorted(on_disk["plots"]) == sorted(pngs)
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) > 5_000, name
        assert f"({name})" in md


def test_resume_skips_done_questions(pipeline, dataset, tmp_path, no_reload, ask_spy):
    out = tmp_path / "resume"

    def interrupt_after_three(done, total, info):
        assert total == 12
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(dataset, out, ["hybrid", "bm25"], pipeline.settings, pipeline=pipeline,
                 progress=interrupt_after_three, plots=False)
    first = _lines(out / "results.jsonl")
    assert [r["id"] for r in first] == ["vi-1", "vi-2", "en-1"]
    assert not (out / "report.json").exists()
    ask_spy.clear()

    seen: list[int] = []
    run_eval(dataset, out, ["hybrid", "bm25"], pipeline.settings, pipeline=pipeline,
             progress=lambda done, total, info: seen.append(done), plots=False)
    rows = _lines(out / "results.jsonl")
    pairs = [(r["config"], r["id"]) for r in rows]
    assert len(rows) == 12 and len(set(pairs)) == 12
    assert rows[:3] == first  # the finished lines were kept, not recomputed
    assert len(ask_spy) == 9 and seen == list(range(4, 13))

    # A second resume has nothing to do; --no-resume starts over.
    ask_spy.clear()
    run_eval(dataset, out, ["hybrid", "bm25"], pipeline.settings, pipeline=pipeline, plots=False)
    assert ask_spy == [] and len(_lines(out / "results.jsonl")) == 12
    run_eval(dataset, out, ["hybrid"], pipeline.settings, pipeline=pipeline, resume=False, plots=False)
    assert len(ask_spy) == 6 and len(_lines(out / "results.jsonl")) == 6


def test_changed_configuration_is_recomputed_on_resume(pipeline, dataset, tmp_path, no_reload, ask_spy):
    out = tmp_path / "changed"
    run_eval(dataset, out, {"mine": {"top_k": 3}}, pipeline.settings, pipeline=pipeline, plots=False)
    assert len(ask_spy) == 6
    ask_spy.clear()
    report = run_eval(dataset, out, {"mine": {"top_k": 2}}, pipeline.settings, pipeline=pipeline, plots=False)
    assert len(ask_spy) == 6 and len(_lines(out / "results.jsonl")) == 6
    assert report["configs"]["mine"]["overrides"] == {"top_k": 2}
    assert all(len(r["retrieved"]) == 2 for r in _lines(out / "results.jsonl"))


class FakeJudge:
    """Implements the ChatModel `complete(messages) -> str` protocol with canned judgements."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []

    def complete(self, messages: list[dict]) -> str:
        self.calls.append(messages)
        if "claims" in messages[0]["content"] and "strict grader" not in messages[0]["content"]:
            return 'Here you go: ["EMB-AI is an AI app", "It connects localities", "It was built in 1990"]'
        return json.dumps([{"claim": 1, "supported": True, "relevant": True},
                           {"claim": 2, "supported": True, "relevant": False},
                           {"claim": 3, "supported": False, "relevant": True}])


def test_judge_scores_claims():
    judge = FakeJudge()
    verdict = judge_answer(judge, "EMB-AI là gì?", "EMB-AI là ứng dụng … [1]", ["EMB-AI - ứng dụng AI"])
    assert verdict == {"faithfulness": pytest.approx(2 / 3), "answer_relevancy": pytest.approx(2 / 3), "claims": 3}
    assert "EMB-AI - ứng dụng AI" in judge.calls[1][1]["content"]


def test_run_eval_with_judge(pipeline, dataset, tmp_path, no_reload):
    small = tmp_path / "two.jsonl"
    small.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in (MINI[1], MINI[4])), encoding="utf-8")
    judge = FakeJudge()
    report = run_eval(small, tmp_path / "judged", ["hybrid"], pipeline.settings, pipeline=pipeline, judge=judge,
                      plots=False)
    rows = _lines(tmp_path / "judged" / "results.jsonl")
    answered = [r for r in rows if not r["refused"]]
    assert answered, "EMB-AI is answerable from the seed corpus"
    for r in rows:
        expected = None if r["refused"] else pytest.approx(2 / 3)
        assert r["metrics"]["faithfulness"] == expected
    assert len(judge.calls) == 2 * len(answered)
    assert report["results"]["hybrid"]["overall"]["faithfulness"] == pytest.approx(2 / 3)
    md = (tmp_path / "judged" / "report.md").read_text(encoding="utf-8")
    assert "no LLM judge configured" not in md


def test_config_specs_and_files(pipeline, tmp_path):
    toml = tmp_path / "wide.toml"
    toml.write_text('retrieval = "bm25"\ntop_k = 8\nmin_evidence = 0.4\n[weights.en]\nbm25_translated = 2.0\n')
    yml = tmp_path / "flat.yaml"
    yml.write_text("weights:\n  bm25_plain: 0.9\nlexicon: false\n")
    specs = parse_config_specs(["hybrid", f"wide={toml}", str(yml)])
    assert specs == {"hybrid": "hybrid", "wide": str(toml), "flat": str(yml)}
    wide = resolve_config("wide", specs["wide"], pipeline.settings)
    assert wide.settings.top_k == 8 and wide.settings.min_evidence == 0.4
    assert wide.weights["en"]["bm25_translated"] == 2.0 and wide.weights["vi"]["dense"] == 0.0
    assert wide.settings.home == pipeline.settings.home
    flat = resolve_config("flat", specs["flat"], pipeline.settings)
    assert not flat.use_lexicon and all(w["bm25_plain"] == 0.9 for w in flat.weights.values())
    dense = resolve_config("dense", "dense", pipeline.settings)
    assert all(w.get(run, 0.0) == 0.0 for w in dense.weights.values() for run in ("bm25", "bm25_plain"))
    assert set(BUILTIN_CONFIGS) == {"hybrid", "bm25", "dense", "hybrid-nolexicon"}
    for bad in ({"chunk_words": 50}, {"no_such_setting": 1}, {"retrieval": "magic"}, {"backend": "llm"}):
        with pytest.raises(ValueError):
            resolve_config("bad", bad, pipeline.settings)
    with pytest.raises(ValueError):
        parse_config_specs(["a=x.json", "a=y.json"])
    with pytest.raises(ValueError):
        resolve_config("missing", "nope.toml", pipeline.settings)


def test_eval_tab_runs_and_shows_a_question(pipeline, dataset, tmp_path, no_reload):
    gr = pytest.importorskip("gradio")
    from eval.ui_tab import build_eval_tab

    datasets = dataset.parent
    with gr.Blocks() as demo:
        build_eval_tab(lambda: pipeline, datasets, out_root=tmp_path / "ui")
    fns = {f.fn.__name__: f.fn for f in demo.fns.values()}
    progress, *_ = fns["on_run"]("mini.jsonl", ["hybrid"])  # the run goes on in a server thread
    assert 'id="eval-progress-bar"' in progress and "/ 6" in progress
    deadline = time.monotonic() + 120
    while True:  # what a page's timer does: poll until the job has ended and its results come back
        progress, _timer, seen, dataset_pick, configs_pick, status, table, *rest = fns["on_poll"](None)
        if seen is not None or time.monotonic() > deadline:
            break
        assert 'id="eval-progress-bar"' in progress
        time.sleep(0.2)
    assert seen is not None, "the evaluation did not finish"
    images, pick_cfg, pick_id, out = rest[:4], rest[4], rest[5], rest[6]
    assert "6 questions" in status and "not measured" in status and status.startswith("✓")
    assert list(table["Configuration"]) == ["hybrid"] and "hit@5" in table.columns
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in images)
    assert configs_pick["value"] == ["hybrid"] and dataset_pick["value"] == "mini.jsonl"
    assert pick_id["choices"] == [q["id"] for q in MINI] and pick_cfg["value"] == "hybrid"
    assert fns["on_poll"](seen)[2] == seen  # shown once: later polls leave the page alone
    # A new page (a reload) gets the same finished results once, without re-running.
    again = fns["on_poll"](None)
    assert again[2] == seen and again[5] == status
    detail = fns["on_pick"](out, "hybrid", "vi-1")
    assert MINI[0]["question"] in detail and "5.000 kỹ sư CNTT" in detail


def test_edited_gold_question_is_recomputed_on_resume(pipeline, dataset, tmp_path, no_reload, ask_spy):
    out = tmp_path / "edited"
    run_eval(dataset, out, ["bm25"], pipeline.settings, pipeline=pipeline, plots=False)
    edited = [dict(q) for q in MINI]
    edited[1]["evidence"] = ["EMB-AI"]
    dataset.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in edited), encoding="utf-8")
    ask_spy.clear()
    run_eval(dataset, out, ["bm25"], pipeline.settings, pipeline=pipeline, plots=False)
    assert [q for q, _ in ask_spy] == [MINI[1]["question"]]
    rows = _lines(out / "results.jsonl")
    assert len(rows) == 6 and next(r for r in rows if r["id"] == "vi-2")["gold"]["evidence"] == ["EMB-AI"]


def test_run_eval_with_distractors_reports_both_settings(pipeline, dataset, tmp_path, no_reload):
    """--distractors: the same questions are answered a second time with the distractor folder indexed
    beside the corpus (its own index, kept between runs), and report.json/.md carry both settings."""
    from eval.distractors import DistractorSet, list_key
    from eval.gate import compare

    folder = tmp_path / "distractors"
    folder.mkdir()
    (folder / "osaka.txt").write_text(
        "Osaka là thành phố lớn thứ ba của Nhật Bản. Dân số Osaka năm 2020 là khoảng 2,75 triệu người.\n",
        encoding="utf-8")
    (folder / "ky su.txt").write_text(
        "Năm 2015 có khoảng 1.200 kỹ sư công nghệ thông tin Việt Nam làm việc tại Hàn Quốc.\n", encoding="utf-8")
    dset = DistractorSet(folder, "test-list", list_key(["osaka.txt", "ky su.txt"]), 2)
    out = tmp_path / "run"
    report = run_eval(dataset, out, ["hybrid"], pipeline.settings, pipeline=pipeline, plots=False,
                      distractors=dset, distractor_home=tmp_path / "dindex")
    rows = _lines(out / "with-distractors" / "results.jsonl")
    assert {r["id"] for r in rows} == {q["id"] for q in MINI}
    assert report["distractors"]["n_articles"] == 2 and report["distractors"]["list"] == "test-list"
    seeds, dist = report["results"]["hybrid"]["overall"], report["distractors"]["results"]["hybrid"]["overall"]
    assert seeds["n"] == dist["n"] == len(MINI)
    for metric in ("hit@5", "refusal_accuracy", "false_refusal_rate", "unanswerable_refused"):
        assert metric in seeds and metric in dist
    manifest = json.loads((tmp_path / "dindex" / "manifest.json").read_text(encoding="utf-8"))
    assert {"osaka", "ky-su"} <= set(manifest["docs"]) and len(manifest["docs"]) == 7  # 5 seeds + 2
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## With distractors" in md and "with distractors" in md
    # The gate compares both settings: a drop with distractors alone fails.
    worse = json.loads(json.dumps(report))
    worse["distractors"]["results"]["hybrid"]["overall"]["refusal_accuracy"] = dist["refusal_accuracy"] - 0.5
    table, failed = compare(worse, report, ["refusal_accuracy"], 0.02)
    assert failed and "hybrid +distractors" in table


def test_gold_for_the_run_with_distractors(pipeline, tmp_path, no_reload):
    """A question only a distractor answers is unanswerable with the seeds and answerable beside the
    distractors: each run is scored against its own gold, and a 'with_distractors' gold must say why."""
    from eval.distractors import DistractorSet, list_key
    from eval.runner import load_dataset

    question = {"id": "d-1", "lang": "vi", "variant": "diacritics", "category": "unanswerable", "answerable": False,
                "question": "Dân số Osaka năm 2020 là bao nhiêu?",
                "answer": "Không tìm thấy thông tin này trong tài liệu.", "evidence": [], "doc_ids": []}
    override = {"answerable": True, "answer": "Khoảng 2,75 triệu người.", "evidence": ["khoảng 2,75 triệu người"],
                "doc_ids": ["osaka"], "note": "The Osaka article gives the figure."}
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps({**question, "with_distractors": {k: v for k, v in override.items() if k != "note"}},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="with_distractors"):
        load_dataset(dataset)  # no note
    dataset.write_text(json.dumps({**question, "with_distractors": override}, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    item = load_dataset(dataset)[0]
    assert not item.answerable and item.for_distractors().answerable
    assert item.for_distractors().evidence == ("khoảng 2,75 triệu người",)

    folder = tmp_path / "distractors"
    folder.mkdir()
    (folder / "osaka.txt").write_text(
        "Osaka là thành phố lớn thứ ba của Nhật Bản. Dân số Osaka năm 2020 là khoảng 2,75 triệu người.\n",
        encoding="utf-8")
    dset = DistractorSet(folder, "test-list", list_key(["osaka.txt"]), 1)
    out = tmp_path / "run"
    run_eval(dataset, out, ["hybrid"], pipeline.settings, pipeline=pipeline, plots=False,
             distractors=dset, distractor_home=tmp_path / "dindex")
    seeds = _lines(out / "results.jsonl")[0]
    beside = _lines(out / "with-distractors" / "results.jsonl")[0]
    assert seeds["gold"]["answerable"] is False and seeds["refused"] and seeds["metrics"]["unanswerable_refused"]
    assert beside["gold"]["answerable"] is True and beside["gold"]["evidence"] == ["khoảng 2,75 triệu người"]
    assert not beside["refused"], beside["answer"]
    assert beside["metrics"]["citation_precision"] == 1.0 and beside["metrics"]["unanswerable_refused"] is None
