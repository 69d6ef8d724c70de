"""Offline answer-quality evaluation: run a gold dataset through one or more configurations of the
pipeline, score every answer, and write results.jsonl, report.json, report.md and PNG plots.

    run_eval("eval/datasets/gold.jsonl", "/tmp/eval-run", ["hybrid", "bm25"], base_settings)

A configuration is a built-in name (`hybrid`, `bm25`, `dense`, `hybrid-nolexicon`), a dict of overrides,
or a JSON / TOML / YAML file holding one. Overrides are `retrieval` ("hybrid" | "bm25" | "dense"),
`weights` (per-language RRF weights merged over the defaults, or a flat {run: weight} for every
language), `lexicon` (false = no domain lexicon), `backend` ("extractive" | "llm"), `description`,
and any `Settings` field that does not change the index (top_k, min_evidence, candidates, rrf_k, ...).

The embedding model is loaded once and the index opened (or built) once per run; each configuration
gets its own retriever and answerer over that same model and index. For every question the output line
is the `rag ask --json` object plus `config`, `gold`, per-question `metrics` and `latency_ms`. Retrieval
metrics look at the top 10 passages (a separate k=10 retrieval of the same standalone question); a
passage is relevant when it contains one of the question's evidence phrases.

results.jsonl is appended and flushed question by question; with `resume`, (config, id) pairs already in
it are skipped, so an interrupted run continues where it stopped. Everything in the report is computed
from results.jsonl alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from eval import metrics as M
from rag.config import Settings
from rag.errors import RagError
from rag.retrieve import DEFAULT_WEIGHTS, weights_for

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFIGS_JSON = "configs.json"
DISTRACTOR_DIR = "with-distractors"  # OUT/with-distractors/results.jsonl: the same questions, distractors indexed
RETRIEVAL_DEPTH = 10

BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "hybrid": {"retrieval": "hybrid", "description": "Dense + BM25 + domain lexicon (the default pipeline)."},
    "bm25": {"retrieval": "bm25", "description": "Keyword search only (dense weights 0)."},
    "dense": {"retrieval": "dense", "description": "Embedding search only (BM25 weights 0)."},
    "hybrid-nolexicon": {
        "retrieval": "hybrid", "lexicon": False,
        "description": "Dense + BM25 without the domain lexicon (no English→Vietnamese term translation).",
    },
}
_DENSE_RUNS = ("dense", "dense_translated")
_BM25_RUNS = ("bm25", "bm25_plain", "bm25_translated")
_SPECIAL_KEYS = {"retrieval", "weights", "lexicon", "backend", "description", "distractors"}
# Settings that would need a different index: they cannot vary between configurations of one run.
_INDEX_KEYS = {"home", "corpus_dir", "embedding_model", "embedding_fallback", "chunk_words",
               "chunk_overlap_words", "collection", "chroma_host", "chroma_port"}

RETRIEVAL_METRICS = ("hit@1", "hit@3", "hit@5", "hit@10", "recall@5", "recall@10", "mrr", "ndcg@10")
ANSWER_METRICS = ("refusal_accuracy", "false_refusal_rate", "unanswerable_refused", "citation_precision",
                  "evidence_coverage")
JUDGE_METRICS = ("faithfulness", "answer_relevancy")
REPORT_METRICS = RETRIEVAL_METRICS + ANSWER_METRICS + JUDGE_METRICS
# report metric -> per-question key in results.jsonl
_QUESTION_KEY = {m: m for m in REPORT_METRICS} | {
    "refusal_accuracy": "refusal_correct", "false_refusal_rate": "false_refusal",
}
STAGES = ("embed", "dense", "bm25", "rerank", "retrieve", "prepare", "first_token", "answer", "total")

METRIC_HELP: dict[str, str] = {
    "hit@k": "Share of answerable questions where at least one of the first k passages found contains the "
             "expected evidence. hit@5 = 90% means 9 in 10 questions had a useful passage among the top 5.",
    "recall@k": "Share of the expected evidence (all phrases or documents the question needs) that appears in "
                "the first k passages.",
    "mrr": "Mean reciprocal rank: 1.0 when the first passage is useful, 0.5 when the second is, and so on; "
           "0 when none of the top 10 is.",
    "ndcg@10": "Like MRR but rewards every useful passage near the top, not only the first one (0 to 1).",
    "refusal_accuracy": "Share of all questions where the assistant correctly chose between answering and "
                        "saying “not in the documents” (answerable → answers; unanswerable → refuses).",
    "false_refusal_rate": "Share of answerable questions the assistant refused anyway (lower is better).",
    "unanswerable_refused": "Share of the questions the documents cannot answer that the assistant refused "
                            "(the rest got a confident, cited non-answer).",
    "citation_precision": "Of the sources an answer cites, the share that really contain the expected evidence.",
    "evidence_coverage": "Share of the expected evidence phrases that appear in the answer and its quotes "
                         "(a refused answerable question scores 0).",
    "faithfulness": "LLM judge: share of the answer's claims that its cited passages support.",
    "answer_relevancy": "LLM judge: share of the answer's claims that help answer the question.",
    "latency": "Time to answer one question in milliseconds; p50 is the typical case, p95 the slow case "
               "(95% of questions are faster).",
}
VARIANT_LABELS = {"diacritics": "Vietnamese (with diacritics)", "no_diacritics": "Vietnamese (no diacritics)",
                  "en": "English"}
LANG_LABELS = {"vi": "Vietnamese", "en": "English"}
_GROUP_ORDER = {"diacritics": 0, "no_diacritics": 1, "en": 2, "vi": 0}
NOT_MEASURED = "not measured (no LLM judge configured)"


# ============================================================================ dataset

@dataclass(frozen=True)
class GoldItem:
    """One gold question (eval/datasets/gold.jsonl)."""

    id: str
    question: str
    lang: str = "vi"
    variant: str = "diacritics"
    category: str = "general"
    answerable: bool = True
    answer: str = ""
    evidence: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    follows: str | None = None
    # Gold for the run with distractors indexed, where it differs: a distractor article may answer a
    # question the seeds cannot (en-41: an encyclopaedia page gives the number of Vietnamese students in
    # Japan). {"answerable", "answer", "evidence", "doc_ids", "note"}; None when the same gold holds.
    with_distractors: Mapping[str, Any] | None = field(default=None, compare=False)

    def for_distractors(self) -> GoldItem:
        """This question's gold in the run with distractors indexed."""
        o = self.with_distractors
        if not o:
            return self
        return replace(self, answerable=bool(o.get("answerable", self.answerable)),
                       answer=str(o.get("answer", self.answer)),
                       evidence=tuple(str(e) for e in o.get("evidence", self.evidence)),
                       doc_ids=tuple(str(d) for d in o.get("doc_ids", self.doc_ids)), with_distractors=None)

    def gold_json(self) -> dict[str, Any]:
        return {"lang": self.lang, "variant": self.variant, "category": self.category,
                "answerable": self.answerable, "answer": self.answer, "evidence": list(self.evidence),
                "doc_ids": list(self.doc_ids), "follows": self.follows}


_OVERRIDE_KEYS = {"answerable", "answer", "evidence", "doc_ids", "note"}


def load_dataset(path: str | Path) -> list[GoldItem]:
    """The gold questions of a JSONL file; raises ValueError naming the first bad line."""
    items: list[GoldItem] = []
    seen: set[str] = set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or obj.get("id") in (None, ""):
            raise ValueError(f"{path}:{n}: an object with 'id' and a string 'question' is required")
        qid = str(obj["id"])
        if qid in seen:
            raise ValueError(f"{path}:{n}: duplicate id {qid!r}")
        seen.add(qid)
        follows = obj.get("follows")
        override = obj.get("with_distractors")
        if override is not None and (not isinstance(override, dict) or not set(override) <= _OVERRIDE_KEYS
                                     or not str(override.get("note") or "").strip()):
            raise ValueError(f"{path}:{n}: 'with_distractors' must be an object of {sorted(_OVERRIDE_KEYS)} "
                             "with a 'note' saying which distractor answers the question")
        items.append(GoldItem(
            id=qid, question=obj["question"], lang=str(obj.get("lang") or "vi"),
            variant=str(obj.get("variant") or ("en" if obj.get("lang") == "en" else "diacritics")),
            category=str(obj.get("category") or "general"), answerable=bool(obj.get("answerable", True)),
            answer=str(obj.get("answer") or ""), evidence=tuple(str(e) for e in obj.get("evidence") or ()),
            doc_ids=tuple(str(d) for d in obj.get("doc_ids") or ()),
            follows=str(follows) if follows not in (None, "") else None, with_distractors=override,
        ))
    if not items:
        raise ValueError(f"{path}: no questions")
    return items


# ============================================================================ configurations

@dataclass
class EvalConfig:
    """A resolved configuration: its settings, RRF weights and whether the lexicon is used."""

    name: str
    overrides: dict[str, Any]
    settings: Settings
    weights: dict[str, dict[str, float]]
    use_lexicon: bool = True
    backend: str = "extractive"
    description: str = ""

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"overrides": self.overrides, "weights": self.weights}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a .json, .toml or .yaml/.yml file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data: Any = tomllib.loads(text)
    elif suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a configuration must be a mapping of overrides")
    return data


def parse_config_specs(specs: Iterable[str] | None) -> dict[str, str | dict[str, Any]]:
    """CLI `--config` values -> {name: built-in name or file path}: `hybrid`, `NAME=FILE`, or `FILE`."""
    out: dict[str, str | dict[str, Any]] = {}
    for spec in specs or ["hybrid"]:
        spec = spec.strip()
        if not spec:
            continue
        if "=" in spec:
            name, target = (s.strip() for s in spec.split("=", 1))
        elif spec in BUILTIN_CONFIGS:
            name, target = spec, spec
        else:
            name, target = Path(spec).stem, spec
        if not name:
            raise ValueError(f"configuration {spec!r} has no name")
        if name in out:
            raise ValueError(f"configuration name {name!r} given twice")
        out[name] = target
    if not out:
        out["hybrid"] = "hybrid"
    return out


def _weights(
    retrieval: str, extra: Mapping[str, Any] | None, base: Mapping[str, Mapping[str, float]] = DEFAULT_WEIGHTS
) -> dict[str, dict[str, float]]:
    weights = copy.deepcopy(dict(base))
    if retrieval not in ("hybrid", "bm25", "dense"):
        raise ValueError(f"retrieval must be hybrid, bm25 or dense (got {retrieval!r})")
    zero = _DENSE_RUNS if retrieval == "bm25" else _BM25_RUNS if retrieval == "dense" else ()
    for runs in weights.values():
        for run in zero:
            runs[run] = 0.0
    if extra:
        if all(isinstance(v, int | float) for v in extra.values()):  # flat: the same for every language
            extra = {lang: dict(extra) for lang in weights}
        for lang, runs in extra.items():
            if not isinstance(runs, Mapping):
                raise ValueError(f"weights[{lang!r}] must map run names to numbers")
            weights.setdefault(lang, {}).update({k: float(v) for k, v in runs.items()})
    return weights


def resolve_config(name: str, spec: str | Path | Mapping[str, Any] | None, base: Settings) -> EvalConfig:
    """A built-in name, a file of overrides or a dict of overrides -> EvalConfig over `base` settings."""
    if spec is None:
        spec = name
    if isinstance(spec, Mapping):
        overrides = dict(spec)
    elif str(spec) in BUILTIN_CONFIGS:
        overrides = dict(BUILTIN_CONFIGS[str(spec)])
    elif Path(spec).is_file():
        overrides = load_config_file(spec)
    else:
        raise ValueError(
            f"unknown configuration {spec!r}: use one of {', '.join(BUILTIN_CONFIGS)} or NAME=FILE (.json/.toml/.yaml)"
        )
    fields = set(type(base).model_fields)
    bad_index = sorted(set(overrides) & _INDEX_KEYS)
    if bad_index:
        raise ValueError(f"configuration {name!r}: {', '.join(bad_index)} would need another index; "
                         "run a separate evaluation for it")
    unknown = sorted(set(overrides) - fields - _SPECIAL_KEYS)
    if unknown:
        raise ValueError(f"configuration {name!r}: unknown setting(s) {', '.join(unknown)}")
    updates = {k: v for k, v in overrides.items() if k in fields}
    backend = str(overrides.get("backend", "extractive"))
    if backend == "extractive":
        updates["llm_base_url"] = ""
    elif backend == "llm":
        if not str(updates.get("llm_base_url", base.llm_base_url)).strip():
            raise ValueError(f"configuration {name!r}: backend 'llm' needs llm_base_url (RAG_LLM_BASE_URL)")
    else:
        raise ValueError(f"configuration {name!r}: backend must be 'extractive' or 'llm'")
    values = {k: getattr(base, k) for k in fields}
    values.update(updates)
    settings = type(base)(_env_file=None, **values)
    return EvalConfig(
        name=name, overrides=overrides, settings=settings,
        weights=_weights(str(overrides.get("retrieval", "hybrid")), overrides.get("weights")),
        use_lexicon=bool(overrides.get("lexicon", True)), backend=backend,
        description=str(overrides.get("description", "")),
    )


def resolve_configs(
    configs: Mapping[str, Any] | Sequence[str] | None, base: Settings
) -> list[EvalConfig]:
    """Configurations given as {name: spec} or a list of built-in names / NAME=FILE strings."""
    if configs is None or isinstance(configs, str | bytes):
        configs = [configs] if configs else ["hybrid"]
    specs = dict(configs) if isinstance(configs, Mapping) else parse_config_specs(list(configs))
    return [resolve_config(name, spec, base) for name, spec in specs.items()]


# ============================================================================ LLM judge

class ChatModel(Protocol):
    """What the judge needs from rag.llm.OpenAICompatibleClient."""

    def complete(self, messages: list[dict]) -> str: ...


_CLAIMS_SYSTEM = (
    "You split an answer into short, self-contained factual claims. Ignore citation markers like [1] and "
    "framing such as 'According to the documents'. Reply with a JSON array of strings and nothing else."
)
_VERDICT_SYSTEM = (
    "You are a strict grader. For each numbered claim decide: supported = the context states it or it "
    "follows directly from the context; relevant = it helps answer the question. Reply with a JSON array "
    'of objects {"claim": <number>, "supported": true|false, "relevant": true|false}, one per claim, '
    "and nothing else."
)


def _json_array(text: str) -> list[Any]:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise ValueError("no JSON array in the judge's reply")
    data = json.loads(text[start : end + 1])
    if not isinstance(data, list):
        raise ValueError("the judge's reply is not a JSON array")
    return data


def judge_answer(judge: ChatModel, question: str, answer: str, contexts: Sequence[str]) -> dict[str, Any]:
    """RAGAS-style faithfulness and answer relevancy over the answer's claims (two judge calls)."""
    claims = [str(c).strip() for c in _json_array(judge.complete([
        {"role": "system", "content": _CLAIMS_SYSTEM},
        {"role": "user", "content": f"Question: {question}\n\nAnswer:\n{answer}"},
    ])) if str(c).strip()]
    if not claims:
        return {"faithfulness": None, "answer_relevancy": None, "claims": 0}
    context = "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1)) or "(no context)"
    listing = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
    verdicts = _json_array(judge.complete([
        {"role": "system", "content": _VERDICT_SYSTEM},
        {"role": "user", "content": f"Question: {question}\n\nContext:\n{context}\n\nClaims:\n{listing}"},
    ]))
    by_claim: dict[int, dict[str, Any]] = {}
    for i, v in enumerate(verdicts, 1):
        if isinstance(v, dict):
            try:
                by_claim[int(v.get("claim", i))] = v
            except (TypeError, ValueError):
                by_claim[i] = v
    supported = sum(1 for i in range(1, len(claims) + 1) if by_claim.get(i, {}).get("supported") is True)
    relevant = sum(1 for i in range(1, len(claims) + 1) if by_claim.get(i, {}).get("relevant") is True)
    return {"faithfulness": supported / len(claims), "answer_relevancy": relevant / len(claims),
            "claims": len(claims)}


# ============================================================================ running

ProgressFn = Callable[[int, int, dict[str, Any]], None]


@dataclass
class _Shared:
    """The loaded parts every configuration reuses."""

    loaded: Any
    index: Any
    lexicon: Any
    settings: Settings
    reranker: Any = None
    llm: Any = None
    sentence_cache: Any = None  # the extractive answerer's per-chunk sentence vectors (same model for all)
    rerankers: dict[str, Any] = field(default_factory=dict)
    llms: dict[tuple[str, str], Any] = field(default_factory=dict)


def _shared_from_pipeline(pipeline: Any) -> _Shared:
    return _Shared(pipeline.loaded, pipeline.index, pipeline.lexicon, pipeline.settings,
                   getattr(pipeline, "reranker", None), getattr(pipeline, "llm", None),
                   getattr(getattr(pipeline, "extractive", None), "_sentence_vectors", None))


def _load_shared(settings: Settings, out_dir: Path, extra_paths: Sequence[Path] = (), reuse: _Shared | None = None
                 ) -> _Shared:
    """Load the embedder once and open (building or updating it from corpus_dir, plus any distractor
    folders in `extra_paths`) the index once; `reuse` lends an already loaded embedder and lexicon."""
    from rag.chain import summarize
    from rag.embed import load_embedder
    from rag.index import Index
    from rag.lexicon import default_lexicon
    from rag.rerank import load_reranker

    loaded = reuse.loaded if reuse is not None else load_embedder(settings)
    index = Index.open(settings, must_exist=False)
    report = index.sync([Path(settings.corpus_dir), *extra_paths], loaded.embedder)
    log.info("Evaluation index under %s: %s", settings.home, summarize(report))
    if reuse is not None:
        return _Shared(loaded, index, reuse.lexicon, settings, reuse.reranker)
    try:
        lexicon = default_lexicon()
    except Exception as exc:
        log.warning("Domain lexicon unavailable (%s)", exc)
        lexicon = None
    return _Shared(loaded, index, lexicon, settings, load_reranker(settings))


def _config_pipeline(shared: _Shared, cfg: EvalConfig) -> Any:
    """A Pipeline for one configuration over the shared embedder and index (no model is reloaded)."""
    from rag.chain import Pipeline
    from rag.rerank import load_reranker
    from rag.retrieve import HybridRetriever

    lexicon = shared.lexicon if cfg.use_lexicon else None
    llm = None
    if cfg.backend == "llm":
        key = (cfg.settings.llm_base_url, cfg.settings.llm_model)
        if shared.llm is not None and key == (shared.settings.llm_base_url, shared.settings.llm_model):
            llm = shared.llm
        else:
            if key not in shared.llms:
                from rag.llm import OpenAICompatibleClient

                shared.llms[key] = OpenAICompatibleClient.from_settings(cfg.settings)
            llm = shared.llms[key]
    # Build with reranking off so the constructor loads nothing, then plug in the shared reranker.
    pipeline = Pipeline(cfg.settings.model_copy(update={"reranker_model": ""}), shared.loaded, shared.index, lexicon,
                        llm)
    pipeline.settings = cfg.settings
    model = cfg.settings.reranker_model
    if model == shared.settings.reranker_model:
        reranker = shared.reranker
    else:
        if model not in shared.rerankers:
            shared.rerankers[model] = load_reranker(cfg.settings)
        reranker = shared.rerankers[model]
    pipeline.reranker = reranker
    pipeline.retriever = HybridRetriever(shared.index, shared.loaded.embedder, cfg.settings, lexicon,
                                         weights=_weights(str(cfg.overrides.get("retrieval", "hybrid")),
                                                          cfg.overrides.get("weights"),
                                                          weights_for(shared.loaded.embedder.name)),
                                         reranker=reranker)
    # Sentence vectors depend only on the model and the chunk: embed each chunk's sentences once per run.
    extractive = getattr(pipeline, "extractive", None)
    if extractive is not None and hasattr(extractive, "_sentence_vectors"):
        if shared.sentence_cache is None:
            shared.sentence_cache = extractive._sentence_vectors
        else:
            extractive._sentence_vectors = shared.sentence_cache
    return pipeline


def _retrieve_top(pipeline: Any, cfg: EvalConfig, question: str, history: list[Any]) -> Any:
    """The top-RETRIEVAL_DEPTH hits for the question as the answer path prepares it (follow-up
    condensation, query translation), through the pipeline's own preparation chain."""
    prepare = getattr(pipeline, "prepare", None)
    if prepare is None:
        return pipeline.retriever.retrieve(question, k=RETRIEVAL_DEPTH)
    use_llm = cfg.backend == "llm" and getattr(pipeline, "llm", None) is not None
    state = prepare.invoke({"question": question, "history": history, "filters": None, "k": RETRIEVAL_DEPTH,
                            "use_llm": use_llm})
    return state["retrieval"]


def _lang2(item: GoldItem) -> str:
    return "en" if item.lang == "en" else "vi"


def evaluate_question(
    pipeline: Any, cfg: EvalConfig, item: GoldItem, history: list[Any], judge: ChatModel | None = None
) -> dict[str, Any]:
    """One results.jsonl line: the `rag ask --json` object + config, gold, metrics, latency_ms."""
    from rag.schema import answer_json

    error = ""
    try:
        answer = pipeline.ask(item.question, history=history, backend=cfg.backend)
        row = answer_json(answer, item.id)
    except RagError as exc:
        error = exc.message(_lang2(item))
        row = {"id": item.id, "question": item.question, "answer": "", "refused": True, "citations": [],
               "retrieved": [], "timings_ms": {}, "backend": cfg.backend, "error": error}
    retrieval_ms: dict[str, float] = {}
    passages: list[str] = []
    chunk_ids: list[str] = []
    doc_ids: list[str] = []
    if not error:
        try:
            result = _retrieve_top(pipeline, cfg, item.question, history)
            passages = [h.chunk.text for h in result.hits]
            chunk_ids = [h.chunk.chunk_id for h in result.hits]
            doc_ids = [h.chunk.doc_id for h in result.hits]
            retrieval_ms = result.timings_ms
        except RagError as exc:
            error = exc.message(_lang2(item))
    metrics = score_question(item, row, passages)
    metrics.update({"faithfulness": None, "answer_relevancy": None})
    judge_error = ""
    if judge is not None and not row.get("refused") and row.get("answer"):
        try:
            verdict = judge_answer(judge, item.question, row["answer"],
                                   [c.get("text") or c.get("quote", "") for c in row.get("citations", [])])
            metrics["faithfulness"], metrics["answer_relevancy"] = verdict["faithfulness"], verdict["answer_relevancy"]
        except (RagError, ValueError, json.JSONDecodeError) as exc:
            judge_error = str(exc)[:300]
    latency = {s: round(float(v), 2) for s, v in retrieval_ms.items() if s in ("embed", "dense", "bm25", "rerank")}
    for stage in ("retrieve", "prepare", "first_token", "answer", "total"):
        if stage in row.get("timings_ms", {}):
            latency[stage] = round(float(row["timings_ms"][stage]), 2)
    row.update({
        "config": cfg.name,
        "gold": item.gold_json(),
        "retrieved_at_10": [{"chunk_id": c, "doc_id": d, "relevant": r}
                            for c, d, r in zip(chunk_ids, doc_ids, metrics.pop("_relevant"), strict=True)],
        "metrics": metrics,
        "latency_ms": latency,
        "error": error or None,
    })
    if judge_error:
        row["judge_error"] = judge_error
    return row


def score_question(item: GoldItem, row: Mapping[str, Any], passages: Sequence[str]) -> dict[str, Any]:
    """Per-question metrics from the answer object and the top-10 passage texts (uses eval.metrics)."""
    evidence = list(item.evidence)
    relevant = [bool(M.passage_is_relevant(p, evidence)) for p in passages] if evidence else [False] * len(passages)
    refused = bool(row.get("refused"))
    out: dict[str, Any] = {"_relevant": relevant}
    if item.answerable and evidence:
        for k in (1, 3, 5, 10):
            out[f"hit@{k}"] = float(M.hit_at_k(relevant, k))
        for k in (5, 10):
            out[f"recall@{k}"] = float(M.recall_at_k(passages, evidence, k))
        out["mrr"] = float(M.reciprocal_rank(relevant))
        out["ndcg@10"] = float(M.ndcg_at_k(relevant, 10))
    else:
        out.update({m: None for m in RETRIEVAL_METRICS})
    out["refusal_correct"] = bool(M.refusal_correct(refused, item.answerable))
    out["false_refusal"] = (refused if item.answerable else None)
    out["unanswerable_refused"] = (refused if not item.answerable else None)
    citations = list(row.get("citations") or [])
    if item.answerable and evidence and not refused and citations:
        out["citation_precision"] = M.citation_precision(
            [c.get("text") or c.get("quote", "") for c in citations], evidence)
    else:
        out["citation_precision"] = None
    if item.answerable and evidence:
        answered_text = "" if refused else "\n".join(
            [row.get("answer", "")] + [c.get("quote", "") for c in citations])
        out["evidence_coverage"] = float(M.evidence_coverage(answered_text, evidence))
    else:
        out["evidence_coverage"] = None
    return out


def _read_results(path: Path) -> list[dict[str, Any]]:
    """Lines of results.jsonl (a torn last line from a killed run is dropped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def run_eval(
    dataset_path: str | Path,
    out_dir: str | Path,
    configs: Mapping[str, Any] | Sequence[str] | None = None,
    base_settings: Settings | None = None,
    resume: bool = True,
    progress: ProgressFn | None = None,
    *,
    pipeline: Any = None,
    judge: ChatModel | None = None,
    plots: bool = True,
    distractors: Any = None,
    distractor_home: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate every configuration on the dataset; write the outputs under `out_dir`; return report.json.

    `pipeline`: an already loaded Pipeline whose embedder, index and lexicon are reused (otherwise the
    model is loaded here and the index built/updated under `base_settings.home` from its corpus_dir).
    `distractors` (an eval.distractors.DistractorSet): the gold set is answered a second time with its
    folder indexed beside corpus_dir (index under `distractor_home`, kept between runs), results in
    OUT/with-distractors/; report.json then carries both (`results` = seeds only, `distractors.results`).
    `progress(done, total, info)` is called after every question (skipped ones count as done).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = load_dataset(dataset_path)
    if base_settings is None:
        if pipeline is None:
            raise ValueError("give base_settings or a loaded pipeline")
        base_settings = pipeline.settings
    cfgs = resolve_configs(configs, base_settings)
    shared = _run_pass(out, items, cfgs, base_settings, resume, progress, pipeline, judge, ())
    model = _model_name(shared, base_settings)
    if distractors is not None:
        if distractor_home is None:
            raise ValueError("distractors need a distractor_home for their index")
        d_settings = base_settings.model_copy(update={"home": Path(distractor_home)})
        if shared is None and pipeline is not None:
            shared = _shared_from_pipeline(pipeline)
        d_shared = _run_pass(out / DISTRACTOR_DIR, [it.for_distractors() for it in items], cfgs, d_settings, resume, progress, None, judge,
                             (Path(distractors.folder),), distractors=True, reuse=shared)
        model = model or _model_name(d_shared, d_settings)
    elapsed = time.perf_counter() - t_start
    return write_report(out, items, cfgs, dataset_path, judge=judge, runtime_s=elapsed, embedding_model=model,
                        plots=plots, distractors=distractors)


def _run_pass(
    out: Path,
    items: Sequence[GoldItem],
    cfgs: Sequence[EvalConfig],
    settings: Settings,
    resume: bool,
    progress: ProgressFn | None,
    pipeline: Any,
    judge: ChatModel | None,
    extra_paths: Sequence[Path],
    *,
    distractors: bool = False,
    reuse: _Shared | None = None,
) -> _Shared | None:
    """Answer every (configuration, question) pair not yet in OUT/results.jsonl; the loaded parts, if loaded."""
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    previous = _read_results(results_path) if resume else []
    configs_path = out / CONFIGS_JSON
    old_fp = json.loads(configs_path.read_text(encoding="utf-8")) if resume and configs_path.exists() else {}
    # Lines of a configuration whose definition changed, or of a question whose text or gold data changed,
    # are stale: drop them rather than mix old and new results.
    stale = {c.name for c in cfgs if c.name in old_fp and old_fp[c.name].get("fingerprint") != c.fingerprint}
    by_id = {it.id: it for it in items}

    def current(r: Mapping[str, Any]) -> bool:
        if r.get("config") in stale:
            return False
        item = by_id.get(str(r.get("id")))
        return item is None or (r.get("question") == item.question and r.get("gold") == item.gold_json())

    kept = [r for r in previous if current(r)]
    if not resume or len(kept) != len(previous) or (results_path.exists() and not _ends_with_newline(results_path)):
        _rewrite(results_path, kept)
    stored = dict(old_fp)
    stored.update({c.name: {"fingerprint": c.fingerprint, "overrides": c.overrides, "backend": c.backend,
                            "description": c.description} for c in cfgs})
    configs_path.write_text(json.dumps(stored, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    done = {(r.get("config"), str(r.get("id"))) for r in kept}
    total = len(cfgs) * len(items)
    todo = sum(1 for c in cfgs for it in items if (c.name, it.id) not in done)
    count = total - todo
    shared = None
    if todo:
        shared = (_shared_from_pipeline(pipeline) if pipeline is not None
                  else _load_shared(settings, out, extra_paths, reuse))
    from rag.chain import Turn

    with results_path.open("a", encoding="utf-8") as fh:
        for cfg in cfgs:
            answers = {str(r["id"]): (r.get("question", ""), r.get("answer", "")) for r in kept
                       if r.get("config") == cfg.name}
            cfg_pipeline = None
            for item in items:
                if (cfg.name, item.id) in done:
                    continue
                if cfg_pipeline is None:
                    assert shared is not None
                    cfg_pipeline = _config_pipeline(shared, cfg)
                history = []
                if item.follows and item.follows in answers:
                    q, a = answers[item.follows]
                    history = [Turn(q, a)]
                row = evaluate_question(cfg_pipeline, cfg, item, history, judge)
                answers[item.id] = (item.question, row.get("answer", ""))
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                done.add((cfg.name, item.id))
                count += 1
                if progress is not None:
                    progress(count, total, {"config": cfg.name + (" +distractors" if distractors else ""),
                                            "id": item.id})
    return shared


def _ends_with_newline(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def _model_name(shared: _Shared | None, settings: Settings) -> str:
    if shared is not None:
        return str(shared.loaded.embedder.name)
    return settings.embedding_model


# ============================================================================ report

def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every report metric over the rows where it applies (None when it never applies)."""
    means = M.aggregate(rows, metrics=[_QUESTION_KEY[m] for m in REPORT_METRICS])["overall"]
    out: dict[str, Any] = {"n": len(rows),
                           "n_answerable": sum(1 for r in rows if r["gold"]["answerable"]),
                           "errors": sum(1 for r in rows if r.get("error"))}
    for metric in REPORT_METRICS:
        value = means.get(_QUESTION_KEY[metric])
        out[metric] = None if value is None else round(float(value), 6)
    return out


def latency_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 / p95 / mean (ms) per stage."""
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        vals = [float(r["latency_ms"][stage]) for r in rows if stage in r.get("latency_ms", {})]
        if vals:
            out[stage] = {"p50": round(float(M.percentile(vals, 50)), 2), "p95": round(float(M.percentile(vals, 95)), 2),
                          "mean": round(sum(vals) / len(vals), 2), "n": len(vals)}
    return out


def _group(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["gold"].get(key)), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (_GROUP_ORDER.get(kv[0], 9), kv[0]))
    return {g: summarize_rows(rs) for g, rs in ordered}


def question_quality(row: Mapping[str, Any]) -> float:
    """0 (bad) .. 1 (good) for ranking the worst questions: refusal decision, ranking and evidence."""
    m = row["metrics"]
    if row.get("error"):
        return 0.0
    if not row["gold"]["answerable"]:
        return 1.0 if m.get("refusal_correct") else 0.0
    parts = [1.0 if m.get("refusal_correct") else 0.0]
    parts += [float(m[k]) for k in ("mrr", "evidence_coverage", "citation_precision") if m.get(k) is not None]
    return sum(parts) / len(parts)


def _problem(row: Mapping[str, Any]) -> str:
    m, gold = row["metrics"], row["gold"]
    if row.get("error"):
        return f"error: {row['error']}"
    if not gold["answerable"]:
        return "ok" if m.get("refusal_correct") else "answered a question the documents cannot answer"
    notes = []
    if m.get("false_refusal"):
        notes.append("refused although the answer is in the documents")
    if m.get("hit@10") == 0.0:
        notes.append("no passage with the evidence in the top 10")
    elif m.get("hit@1") == 0.0 and m.get("mrr") is not None:
        notes.append(f"first useful passage at rank {round(1 / m['mrr']) if m['mrr'] else '>10'}")
    if m.get("evidence_coverage") is not None and not m.get("false_refusal") and m["evidence_coverage"] < 0.5:
        notes.append(f"answer covers {m['evidence_coverage']:.0%} of the evidence")
    if m.get("citation_precision") is not None and m["citation_precision"] < 1:
        notes.append(f"{m['citation_precision']:.0%} of citations relevant")
    return "; ".join(notes) or "ok"


def build_report(
    rows_with_lines: Sequence[tuple[int, Mapping[str, Any]]],
    items: Sequence[GoldItem],
    cfgs: Sequence[EvalConfig],
    dataset_path: str | Path,
    *,
    judge: ChatModel | None = None,
    runtime_s: float | None = None,
    embedding_model: str = "",
) -> dict[str, Any]:
    """report.json from (line number, results.jsonl row) pairs."""
    ids = {it.id for it in items}
    by_cfg: dict[str, list[tuple[int, Mapping[str, Any]]]] = {c.name: [] for c in cfgs}
    for n, r in rows_with_lines:
        if r.get("config") in by_cfg and str(r.get("id")) in ids:
            by_cfg[r["config"]].append((n, r))
    results: dict[str, Any] = {}
    for cfg in cfgs:
        rows = [r for _, r in by_cfg[cfg.name]]
        backends = sorted({str(r.get("backend")) for r in rows if r.get("backend")})
        results[cfg.name] = {
            "overall": summarize_rows(rows),
            "by_lang": _group(rows, "lang"),
            "by_variant": _group(rows, "variant"),
            "by_category": _group(rows, "category"),
            "latency_ms": latency_summary(rows),
            "backend": ", ".join(backends) or cfg.backend,
            "complete": len(rows) == len(items),
        }
    primary = cfgs[0].name if cfgs else ""
    worst_rows = sorted(by_cfg.get(primary, []), key=lambda nr: (question_quality(nr[1]), nr[0]))
    worst = [
        {"config": primary, "id": r["id"], "line": n, "question": r["question"], "variant": r["gold"]["variant"],
         "category": r["gold"]["category"], "answerable": r["gold"]["answerable"],
         "quality": round(question_quality(r), 4), "problem": _problem(r)}
        for n, r in worst_rows[:10] if question_quality(r) < 1.0
    ]
    variants: dict[str, int] = {}
    for it in items:
        variants[it.variant] = variants.get(it.variant, 0) + 1
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": str(dataset_path),
        "n_questions": len(items),
        "n_answerable": sum(1 for it in items if it.answerable),
        "n_by_variant": variants,
        "embedding_model": embedding_model,
        "retrieval_depth": RETRIEVAL_DEPTH,
        "runtime_s": None if runtime_s is None else round(runtime_s, 1),
        "judge": {"configured": judge is not None,
                  "model": str(getattr(judge, "name", "")) if judge is not None else "",
                  "note": "" if judge is not None else NOT_MEASURED},
        "metrics": list(REPORT_METRICS),
        "configs": {c.name: {"overrides": c.overrides, "backend": c.backend, "description": c.description,
                             "weights": c.weights, "lexicon": c.use_lexicon} for c in cfgs},
        "results": results,
        "worst": worst,
    }


def write_report(
    out: Path,
    items: Sequence[GoldItem],
    cfgs: Sequence[EvalConfig],
    dataset_path: str | Path,
    *,
    judge: ChatModel | None = None,
    runtime_s: float | None = None,
    embedding_model: str = "",
    plots: bool = True,
    distractors: Any = None,
) -> dict[str, Any]:
    """report.json, report.md and the plots, from results.jsonl (and with-distractors/results.jsonl)."""
    rows = _read_results(out / RESULTS)
    report = build_report(list(enumerate(rows, 1)), items, cfgs, dataset_path, judge=judge,
                          runtime_s=runtime_s, embedding_model=embedding_model)
    d_rows = _read_results(out / DISTRACTOR_DIR / RESULTS) if distractors is not None else []
    if d_rows:
        sub = build_report(list(enumerate(d_rows, 1)), [it.for_distractors() for it in items], cfgs, dataset_path,
                           judge=judge)
        report["distractors"] = {
            **distractors.describe(),
            "results_path": f"{DISTRACTOR_DIR}/{RESULTS}",
            "results": sub["results"],
            "worst": sub["worst"],
        }
    pngs = make_plots(report, rows, out) if plots else []
    report["plots"] = pngs
    (out / REPORT_JSON).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    return report


def settings_view(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{'seeds only': results, 'with distractors': results} — whichever the report holds."""
    out: dict[str, dict[str, Any]] = {"seeds only": dict(report.get("results", {}))}
    if report.get("distractors"):
        out["with distractors"] = dict(report["distractors"].get("results", {}))
    return out


# ============================================================================ markdown

METRIC_LABELS = {
    "hit@1": "hit@1", "hit@3": "hit@3", "hit@5": "hit@5", "hit@10": "hit@10", "recall@5": "recall@5",
    "recall@10": "recall@10", "mrr": "MRR", "ndcg@10": "nDCG@10", "refusal_accuracy": "Refusal accuracy",
    "false_refusal_rate": "False refusals", "unanswerable_refused": "Unanswerable refused",
    "citation_precision": "Citation precision",
    "evidence_coverage": "Evidence coverage", "faithfulness": "Faithfulness", "answer_relevancy": "Answer relevancy",
}
_SCORES = {"mrr", "ndcg@10"}  # shown as 0.00-1.00; the other metrics are shares, shown as percentages
MAIN_COLUMNS = ("hit@1", "hit@5", "recall@5", "mrr", "ndcg@10", "refusal_accuracy", "false_refusal_rate",
                "unanswerable_refused", "citation_precision", "evidence_coverage", "faithfulness", "answer_relevancy")
BREAKDOWN_COLUMNS = ("hit@5", "mrr", "refusal_accuracy", "false_refusal_rate", "unanswerable_refused",
                     "citation_precision", "evidence_coverage")


def fmt_metric(metric: str, value: Any, judged: bool = True) -> str:
    if value is None:
        return "not measured" if metric in JUDGE_METRICS and not judged else "—"
    return f"{value:.2f}" if metric in _SCORES else f"{100 * value:.0f}%"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: plain-words explanation, main table, breakdowns, latency, worst questions."""
    judged = bool(report["judge"]["configured"])
    results = report["results"]
    n, n_ans = report["n_questions"], report["n_answerable"]
    variants = ", ".join(f"{VARIANT_LABELS.get(v, v)} {c}" for v, c in report["n_by_variant"].items())
    lines = [
        "# Answer-quality evaluation",
        "",
        f"- **Dataset:** `{report['dataset']}` — {n} questions ({n_ans} answerable from the documents, "
        f"{n - n_ans} not answerable); {variants}.",
        f"- **Configurations:** {', '.join(results)}.",
        f"- **Embedding model:** `{report['embedding_model']}` · generated {report['generated_at']}"
        + (f" · run time {report['runtime_s']} s" if report.get("runtime_s") is not None else ""),
        "- **LLM judge:** " + (f"`{report['judge']['model'] or 'configured'}`" if judged else NOT_MEASURED) + ".",
        "",
        "## What the numbers mean",
        "",
        "Each question in the dataset comes with the phrases from the documents that answer it (its *evidence*); "
        "a passage counts as *useful* when it contains one of them. Retrieval numbers look at the first "
        f"{report['retrieval_depth']} passages found and only at answerable questions. Higher is better unless "
        "noted.",
        "",
    ]
    for key, text in METRIC_HELP.items():
        lines.append(f"- **{key}** — {text}")
    lines += ["", "## Main results", ""]
    header = ["Configuration", "Questions", *(METRIC_LABELS[m] for m in MAIN_COLUMNS), "Latency p50 / p95"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in results.items():
        o = res["overall"]
        total = res["latency_ms"].get("total")
        lat = f"{total['p50']:.0f} / {total['p95']:.0f} ms" if total else "—"
        cells = [f"**{name}**", str(o["n"]), *(fmt_metric(m, o[m], judged) for m in MAIN_COLUMNS), lat]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""]
    for name in results:
        cfg = report["configs"].get(name, {})
        desc = cfg.get("description") or ", ".join(f"{k}={v}" for k, v in cfg.get("overrides", {}).items())
        lines.append(f"- **{name}** ({results[name]['backend']}): {_md_escape(desc)}")
    dist = report.get("distractors")
    if dist:
        lines += ["", "## With distractors", "",
                  f"The same questions answered with {dist.get('n_articles', '?')} distractor articles "
                  f"(`{_md_escape(dist.get('list', ''))}`: Vietnamese Wikipedia, hard negatives about Japan, Japanese "
                  "prefectures, JICA/ODA, Vietnamese provinces, trade, investment and science cooperation, plus random "
                  "ones) indexed beside the corpus; records in "
                  f"[{dist.get('results_path', '')}]({dist.get('results_path', '')}).", ""]
        head = ["Configuration", "Setting", "Questions", *(METRIC_LABELS[m] for m in MAIN_COLUMNS)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, res in results.items():
            for setting, entry in (("seeds only", res), ("with distractors", dist["results"].get(name))):
                if entry is None:
                    continue
                o = entry["overall"]
                lines.append("| " + " | ".join([f"**{name}**", setting, str(o["n"]),
                                                 *(fmt_metric(m, o.get(m), judged) for m in MAIN_COLUMNS)]) + " |")
        head = ["Configuration", "Setting", "Group", "n", *(METRIC_LABELS[m] for m in BREAKDOWN_COLUMNS)]
        lines += ["", "By writing variant, both settings:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, res in results.items():
            for setting, entry in (("seeds only", res), ("with distractors", dist["results"].get(name))):
                for group, st in (entry or {}).get("by_variant", {}).items():
                    lines.append("| " + " | ".join([name, setting, _md_escape(VARIANT_LABELS.get(group, group)),
                                                     str(st["n"]), *(fmt_metric(m, st.get(m)) for m in BREAKDOWN_COLUMNS)])
                                 + " |")
        for name in results:
            entry = dist["results"].get(name)
            if entry:
                lines += ["", f"By category with distractors ({name}):", "",
                          "| Category | n | " + " | ".join(METRIC_LABELS[m] for m in BREAKDOWN_COLUMNS) + " |",
                          "|" + "---|" * (len(BREAKDOWN_COLUMNS) + 2)]
                for group, st in entry.get("by_category", {}).items():
                    lines.append(f"| {_md_escape(group)} | {st['n']} | "
                                 + " | ".join(fmt_metric(m, st.get(m)) for m in BREAKDOWN_COLUMNS) + " |")
        worst_d = dist.get("worst", [])
        if worst_d:
            lines += ["", f"Weakest with distractors ({worst_d[0]['config']}):", "",
                      "| Question id | Question | What went wrong |", "|---|---|---|"]
            for w in worst_d:
                q = _md_escape(w["question"] if len(w["question"]) <= 90 else w["question"][:87] + "…")
                lines.append(f"| `{w['id']}` | {q} | {_md_escape(w['problem'])} |")
    incomplete = [name for name, res in results.items() if not res["complete"]]
    if incomplete:
        lines += ["", f"⚠️ Not every question was evaluated for: {', '.join(incomplete)} (interrupted run?)."]
    plots = report.get("plots", [])
    if "config_comparison.png" in plots:
        lines += ["", "![Configurations compared](config_comparison.png)"]
    for key, title, png in (("by_lang", "By language", ""),
                            ("by_variant", "By writing variant (with / without diacritics, English)",
                             "metrics_by_variant.png"),
                            ("by_category", "By question category", "metrics_by_category.png")):
        lines += ["", f"## {title}", ""]
        if png in plots:
            lines += [f"![{title}]({png})", ""]
        head = ["Configuration", "Group", "n", *(METRIC_LABELS[m] for m in BREAKDOWN_COLUMNS)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        labels = {"by_variant": VARIANT_LABELS, "by_lang": LANG_LABELS}.get(key, {})
        for name, res in results.items():
            for group, s in res[key].items():
                label = labels.get(group, group)
                cells = [name, _md_escape(label), str(s["n"]), *(fmt_metric(m, s[m]) for m in BREAKDOWN_COLUMNS)]
                lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Speed (milliseconds per question)", ""]
    if "latency.png" in plots:
        lines += ["![Latency](latency.png)", ""]
    stages = [s for s in STAGES if any(s in res["latency_ms"] for res in results.values())]
    lines += ["| Configuration | " + " | ".join(f"{s} p50 / p95" for s in stages) + " |",
              "|" + "---|" * (len(stages) + 1)]
    for name, res in results.items():
        cells = [f"{res['latency_ms'][s]['p50']:.0f} / {res['latency_ms'][s]['p95']:.0f}"
                 if s in res["latency_ms"] else "—" for s in stages]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Note: the first configuration also pays one-time costs (embedding each quoted passage's "
              "sentences the first time it is used; later configurations reuse them), so compare p50 rather than "
              "p95 across configurations.", "",
              "Stages: *embed* = turning the question into a vector, *dense* / *bm25* = the two searches, "
              "*rerank* = optional re-ordering, *retrieve* = the whole search, *prepare* / *first_token* = time "
              "before the LLM is called / until its first word (LLM backend only), *answer* = writing or quoting "
              "the answer, *total* = the whole question. Embed / dense / bm25 / rerank come from a separate "
              "top-10 search of the same question; the others from the answered run."]
    worst = report.get("worst", [])
    primary = next(iter(results), "")
    lines += ["", f"## The {len(worst)} weakest questions ({primary})", ""]
    if not worst:
        lines.append("Every question was handled well.")
    else:
        lines += ["Click a line link to see the full record (answer, sources, scores) in results.jsonl.", "",
                  "| # | Question id | Variant | Question | What went wrong | Record |", "|---|---|---|---|---|---|"]
        for i, w in enumerate(worst, 1):
            q = _md_escape(w["question"] if len(w["question"]) <= 90 else w["question"][:87] + "…")
            lines.append(f"| {i} | `{w['id']}` | {VARIANT_LABELS.get(w['variant'], w['variant'])} | {q} | "
                         f"{_md_escape(w['problem'])} | [line {w['line']}]({RESULTS}#L{w['line']}) |")
    lines.append("")
    return "\n".join(lines)


# ============================================================================ plots

PLOT_METRICS = ("hit@1", "hit@5", "mrr", "ndcg@10", "refusal_accuracy", "evidence_coverage", "citation_precision")
_VARIANT_COLORS = {"diacritics": "#1f77b4", "no_diacritics": "#ff7f0e", "en": "#2ca02c"}


def _bar_labels(ax: Any, bars: Any, values: Sequence[float | None], metric_is_score: Sequence[bool],
                fontsize: float = 7, rotation: float = 0) -> list[Any]:
    """Value labels above the bars ("n/a" at the base for missing values); returns the text artists."""
    texts = []
    for bar, value, score in zip(bars, values, metric_is_score, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            texts.append(ax.annotate("n/a", (bar.get_x() + bar.get_width() / 2, 0), xytext=(0, 2),
                                     textcoords="offset points", ha="center", va="bottom",
                                     fontsize=fontsize - 0.5, color="#999999", rotation=rotation))
            continue
        text = f"{value:.2f}" if score else f"{100 * value:.0f}%"
        texts.append(ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                                 textcoords="offset points", ha="center", va="bottom", fontsize=fontsize,
                                 rotation=rotation))
    return texts


def overlapping(texts: Sequence[Any]) -> bool:
    """Whether any two of the (drawn, visible, non-empty) text artists overlap on the canvas."""
    boxes = [t.get_window_extent() for t in texts if t.get_visible() and t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _grouped_bars(ax: Any, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]],
                  scores: Sequence[bool], fontsize: float = 7) -> None:
    """Bars for each group (x) and series (color); None values are left out. Value labels and group names
    are turned (90°; 45° or 90°) only when they would overlap side by side at the figure's size."""
    import numpy as np

    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    labels: list[Any] = []
    for i, (label, values, color) in enumerate(series):
        heights = [0.0 if v is None else float(v) for v in values]
        bars = ax.bar(x + (i - (n - 1) / 2) * width, heights, width * 0.92, label=label, color=color)
        labels += _bar_labels(ax, bars, values, scores, fontsize)
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    top = ax.get_ylim()[1] if ax.get_shared_y_axes().get_siblings(ax)[1:] else 0.0  # panels share a y axis
    ax.set_ylim(0, max(top, 1.12))
    if overlapping(labels):
        for t in labels:
            t.set_rotation(90)
        ax.set_ylim(0, max(top, 1.2))
    for angle in (45, 90):  # bounding boxes of turned text are conservative, so 45° may not be enough
        if not overlapping(ax.get_xticklabels()):
            break
        for t in ax.get_xticklabels():
            t.set_rotation(angle)
            t.set_horizontalalignment("right" if angle < 90 else "center")
            t.set_rotation_mode("anchor" if angle < 90 else "default")
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.yaxis.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def make_plots(report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], out: Path) -> list[str]:
    """config_comparison.png, metrics_by_variant.png, metrics_by_category.png, latency.png under `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    names = list(results)
    if not names:
        return []
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    dataset = Path(report["dataset"]).name
    written: list[str] = []
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 11, "figure.titlesize": 12})

    def save(fig: Any, name: str) -> None:
        fig.savefig(out / name, dpi=130, bbox_inches="tight", facecolor="white")
        plt.close(fig)
        written.append(name)

    # 1. configuration comparison
    metrics = [m for m in PLOT_METRICS if any(results[c]["overall"].get(m) is not None for c in names)]
    fig, ax = plt.subplots(figsize=(min(13.0, max(8.0, 0.45 * len(metrics) * len(names) + 2)), 4.8))
    _grouped_bars(ax, [METRIC_LABELS[m] for m in metrics],
                  [(c, [results[c]["overall"].get(m) for m in metrics], colors[c]) for c in names],
                  [m in _SCORES for m in metrics], fontsize=6.5 if len(names) > 2 else 7.5)
    ax.set_title(f"Configurations compared — {dataset}, {report['n_questions']} questions")
    ax.set_ylabel("Share of questions (MRR, nDCG: score 0–1)")
    ax.set_xlabel("Metric")
    ax.legend(title="Configuration", ncols=min(4, len(names)), loc="upper center", bbox_to_anchor=(0.5, -0.14),
              frameon=False)
    save(fig, "config_comparison.png")

    # 2. by variant: one panel per key metric, configurations as bars
    panel_metrics = ("hit@5", "mrr", "refusal_accuracy", "evidence_coverage")
    variants = [v for v in ("diacritics", "no_diacritics", "en")
                if any(v in results[c]["by_variant"] for c in names)]
    variants += sorted({v for c in names for v in results[c]["by_variant"]} - set(variants))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2), sharey=True)
    for ax, metric in zip(axes.flat, panel_metrics, strict=True):
        series = [(c, [results[c]["by_variant"].get(v, {}).get(metric) for v in variants], colors[c]) for c in names]
        _grouped_bars(ax, [VARIANT_LABELS.get(v, v).replace(" (", "\n(") for v in variants], series,
                      [metric in _SCORES] * len(variants),
                      fontsize=6.5 if len(names) > 2 else 7.5)
        ax.set_title(METRIC_LABELS[metric])
        ax.set_ylabel("MRR (0–1)" if metric in _SCORES else "Share of questions")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="Configuration", loc="lower center", ncols=min(4, len(names)), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    counts = ", ".join(f"{VARIANT_LABELS.get(v, v)}: {report['n_by_variant'].get(v, 0)}" for v in variants)
    fig.suptitle(f"Quality by question language and writing variant\nquestions — {counts}")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save(fig, "metrics_by_variant.png")

    # 3. by category (first configuration)
    primary = names[0]
    by_cat = results[primary]["by_category"]
    cats = list(by_cat)
    cat_metrics = ("hit@5", "refusal_accuracy", "evidence_coverage")
    palette = ("#4c72b0", "#dd8452", "#55a868")
    fig, ax = plt.subplots(figsize=(max(8.0, 1.25 * len(cats) + 2), 4.8))
    _grouped_bars(ax, [f"{c}\n(n={by_cat[c]['n']})" for c in cats],
                  [(METRIC_LABELS[m], [by_cat[c].get(m) for c in cats], col) for m, col in zip(cat_metrics, palette, strict=True)],
                  [False] * len(cats))
    ax.set_title(f"Quality by question category — configuration “{primary}”")
    ax.set_ylabel("Share of questions")
    ax.set_xlabel("Category (hit@5 and evidence coverage only count answerable questions)")
    turned = any(t.get_rotation() for t in ax.get_xticklabels())
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 if turned else -0.16), ncols=3, frameon=False)
    save(fig, "metrics_by_category.png")

    # 4. latency: per-stage boxes (first configuration) + total per configuration
    by_cfg = {c: [r for r in rows if r.get("config") == c] for c in names}
    stages = [s for s in STAGES if any(s in r.get("latency_ms", {}) for r in by_cfg[primary])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    data = [[r["latency_ms"][s] for r in by_cfg[primary] if s in r.get("latency_ms", {})] for s in stages]
    if stages:
        ax1.boxplot(data, tick_labels=stages, showfliers=True, widths=0.55,
                    medianprops={"color": "#c44e52", "linewidth": 1.6},
                    flierprops={"markersize": 3, "markerfacecolor": "#888888", "markeredgecolor": "none"})
        for i, vals in enumerate(data, 1):
            if vals:
                med = float(M.percentile(vals, 50))
                ax1.annotate(f"{med:.0f}", (i + 0.3, med), fontsize=7, va="center", color="#c44e52")
    ax1.set_title(f"Time per stage — “{primary}” (median in red)")
    ax1.set_ylabel("Milliseconds (log scale)")
    ax1.set_xlabel("Stage")
    ax1.set_yscale("log")
    ax1.yaxis.grid(True, color="#dddddd", linewidth=0.6, which="both")
    totals = [[r["latency_ms"]["total"] for r in by_cfg[c] if "total" in r.get("latency_ms", {})] for c in names]
    if any(totals):
        bp = ax2.boxplot([t or [0.0] for t in totals], tick_labels=names, widths=0.55, patch_artist=True,
                         medianprops={"color": "black", "linewidth": 1.4},
                         flierprops={"markersize": 3, "markerfacecolor": "#888888", "markeredgecolor": "none"})
        for patch, c in zip(bp["boxes"], names, strict=True):
            patch.set_facecolor(colors[c])
            patch.set_alpha(0.55)
        for i, vals in enumerate(totals, 1):
            if vals:
                p50, p95 = float(M.percentile(vals, 50)), float(M.percentile(vals, 95))
                ax2.annotate(f"p50 {p50:.0f}\np95 {p95:.0f}", (i, max(vals)), xytext=(0, 4), textcoords="offset points",
                             ha="center", va="bottom", fontsize=7)
        ax2.set_yscale("log")
        low = min(min(t) for t in totals if t)
        ax2.set_ylim(max(low / 2, 0.1), max(max(t) for t in totals if t) * 4)
    ax2.set_title("Total time per question, by configuration")
    ax2.set_ylabel("Milliseconds (log scale)")
    ax2.set_xlabel("Configuration")
    if len(names) > 3:
        plt.setp(ax2.get_xticklabels(), rotation=15, ha="right")
    ax2.yaxis.grid(True, color="#dddddd", linewidth=0.6, which="both")
    for ax in (ax1, ax2):
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    save(fig, "latency.png")
    return written
