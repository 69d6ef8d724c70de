"""Time the pipeline adds before the LLM's first token (issue: generative answers).

Runs N gold questions through `Pipeline.stream` against a local OpenAI-compatible server that answers
instantly (tests/scripted_llm.py), so what is measured is our own work before the first token:
condensation/translation calls, hybrid retrieval and prompt building. Prints median and p95.

    python bench/ttft_overhead.py [--n 20] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.chain import Pipeline  # noqa: E402
from rag.config import BUNDLED_MODEL, Settings  # noqa: E402
from rag.llm import OpenAICompatibleClient  # noqa: E402
from rag.text import detect_language  # noqa: E402
from tests.scripted_llm import ScriptedLLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="ttft-"))
    settings = Settings(_env_file=None, home=home, embedding_model=BUNDLED_MODEL, corpus_dir=REPO / "corpus")
    base = Pipeline.from_settings(settings, sync_corpus=True)
    gold = [json.loads(line) for line in (REPO / "eval/datasets/gold.jsonl").read_text(encoding="utf-8").splitlines()]
    by_variant: dict[str, list[str]] = {}
    for g in gold:
        if g["answerable"] and not g.get("follows"):
            by_variant.setdefault(g["variant"], []).append(g["question"])
    # Round-robin over vi / en / vi-without-diacritics so every kind of question is in the sample.
    questions = [q for group in zip(*by_variant.values(), strict=False) for q in group][: args.n]
    prepare, first = [], []
    with ScriptedLLM() as server:
        llm = OpenAICompatibleClient(server.base_url, server.model, read_timeout=30)
        pipeline = Pipeline(settings, base.loaded, base.index, base.lexicon, llm)
        server.enqueue_reply("Trả lời [1].")
        pipeline.ask(questions[0], backend="llm")  # warm-up (sentence vectors, caches) is not what users wait for each time
        for q in questions:
            if detect_language(q) == "en":
                server.enqueue_reply("Bản dịch câu hỏi.")  # the query-translation call English questions make
            server.enqueue_reply("Trả lời [1].", chunks=["Trả ", "lời ", "[1]."])
            answer = pipeline.ask(q, backend="llm")
            assert answer.backend == "llm", answer.notice
            prepare.append(answer.timings_ms.get("prepare", float("nan")))
            first.append(answer.timings_ms.get("first_token", float("nan")))

    def p95(xs: list[float]) -> float:
        return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]
    print(f"questions: {len(prepare)} (vi, en, vi without diacritics), embedder {base.embedder.name}")
    print(f"pipeline overhead before the LLM request: median {statistics.median(prepare):.0f} ms, p95 {p95(prepare):.0f} ms")
    print(f"time to first token (instant local server): median {statistics.median(first):.0f} ms, p95 {p95(first):.0f} ms")


if __name__ == "__main__":
    main()
