"""The retrieval chain, composed from LangChain runnables:

    {question, history, filters} -> retrieve (hybrid) -> answer (extractive or LLM) -> Answer

`Pipeline` owns the loaded parts (embedder, index, retriever, answerers) and is what the CLI, UI and
evaluation call. Heavy parts load once, in `Pipeline.from_settings`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableLambda

from rag.answer import NO_CITATION_NOTICE, ExtractiveAnswerer, LLMAnswerer
from rag.config import Settings
from rag.connect import is_chat_connection_query
from rag.embed import LoadedEmbedder, load_embedder
from rag.errors import RagError
from rag.grounding import (
    check_claims,
    is_refusal,
    load_prompt,
    parse_citations,
    remove_unsupported,
    render_prompt,
)
from rag.guard import scrub_answer
from rag.index import Index, IngestReport
from rag.lexicon import Lexicon, default_lexicon
from rag.llm import ChatModel, OpenAICompatibleClient
from rag.rerank import load_reranker
from rag.retrieve import MAX_QUESTION_CHARS, Filters, HybridRetriever, RetrievalResult
from rag.text import answer_language, detect_language, nfc, strip_diacritics
from rag.types import Answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One past exchange of a conversation."""

    question: str
    answer: str


# Follow-up cues, matched on the question without tones, lower case. A follow-up is joined to the
# question it follows, so the topic carries over to retrieval.
_FOLLOW_UP_START = {
    "en": re.compile(r"^(and|what about|how about|and what|also)\b"),
    "vi": re.compile(r"^(con|the con|vay|the|va|con ve)\b"),  # còn, thế còn, vậy, thế, và, còn về
}
_FOLLOW_UP_EN = re.compile(r"\b(they|them|their|there|it|its|that|this|those|these|he|him|his|she|her)\b")
_PERSONAL_EN = re.compile(r"\b(he|him|his|she|her)\b")  # a person from the previous turn, even in longer questions
# Vietnamese anaphora: "nó", "ông ấy", "bà ấy", "họ", "chương trình này", "ở đó", "thì sao"…
_VI_NOUNS = (r"chuong trinh|to chuc|co quan|du an|su kien|hiep dinh|thoa thuan|nghi quyet|ung dung|mang luoi|"
             r"dien dan|trung tam|van phong|quy|hoi nghi|doanh nghiep|cong ty|tinh|thanh pho|noi|nuoc|nguoi|"
             r"dai dien|dip|co so|ong|ba|vi|viec|dieu")
_FOLLOW_UP_VI = re.compile(
    rf"\b(thi sao|o do|noi do|luc do|khi do|(?:{_VI_NOUNS}) (?:nay|do|ay|tren)|"
    r"(?:ong|ba|anh|chi|co) (?:ay|ta)|ho|no)\b"
)
# With tones the cues are unambiguous: 'họ', 'nó', and 'đó' / 'này' / 'ấy' pointing back ('dịp đó',
# 'các đại diện đó'); without them 'ho', 'no', 'nay', 'do' are also 'hồ', 'nợ', 'nay' (now), 'do' (by).
_ACCENTED_CUES_VI = re.compile(r"(?<!\w)(họ|nó|đó|này|ấy)(?!\w)", re.IGNORECASE)
_MAX_FOLLOW_UP_WORDS = {"en": 10, "vi": 16, "vi_nodiac": 16}  # Vietnamese writes one syllable per word


def is_follow_up(question: str) -> bool:
    """Does a question lean on the previous turn ("Còn ở Osaka thì sao?", "Nó ra mắt khi nào?",
    "chuong trinh nay do ai tai tro", "What about its budget?")? Short questions only."""
    lang = detect_language(question)
    # Acronyms are not pronouns: 'IT engineers' has no 'it', 'HO' no 'họ'.
    tokens = re.findall(r"\w+", strip_diacritics(nfc(question)))
    folded = " ".join("acr" if len(w) > 1 and w.isupper() else w.lower() for w in tokens)
    n_words = len(question.split())
    if lang == "en":
        if n_words <= _MAX_FOLLOW_UP_WORDS["en"] and (
            _FOLLOW_UP_START["en"].search(folded) or _FOLLOW_UP_EN.search(folded)
        ):
            return True
        return n_words <= _MAX_FOLLOW_UP_WORDS["vi"] and bool(_PERSONAL_EN.search(folded))
    if n_words > _MAX_FOLLOW_UP_WORDS[lang]:
        return False
    if _FOLLOW_UP_START["vi"].search(folded):
        return True
    if lang == "vi" and _ACCENTED_CUES_VI.search(question):
        return True
    match = _FOLLOW_UP_VI.search(re.sub(r"\bho chi minh\b", "", folded))
    return match is not None and not (lang == "vi" and match.group(1) in ("ho", "no"))


def condense_offline(question: str, history: list[Turn]) -> str:
    """A standalone question for retrieval without an LLM: a follow-up ("Còn ở Osaka thì sao?",
    "Ông ấy là ai?", "What about its budget?") is joined to the question it follows, itself condensed
    first, so the topic carries over a chain of follow-ups; other questions pass unchanged."""
    if not history or not is_follow_up(question):
        return question
    previous = condense_offline(history[-1].question, history[:-1][-4:])
    return f"{previous} {question}"


@dataclass(frozen=True)
class StreamEvent:
    """What `Pipeline.stream` yields: text deltas while the LLM writes, then the final Answer."""

    kind: Literal["token", "reset", "final"]
    text: str = ""
    answer: Answer | None = None


FALLBACK_NOTICE = {
    "vi": "Không dùng được mô hình ngôn ngữ ({reason}); đây là câu trả lời trích dẫn nguyên văn.",
    "en": "The language model was unavailable ({reason}); this is the quoted (extractive) answer.",
}
UNSUPPORTED_FALLBACK_NOTICE = {
    "vi": "Các câu trong câu trả lời của mô hình ngôn ngữ không được nguồn trích dẫn xác nhận, nên hiển thị "
          "trích dẫn nguyên văn thay thế.",
    "en": "The language model's answer was not supported by the sources it cited, so the quoted evidence is "
          "shown instead.",
}
REMOVED_NOTICE = {
    "vi": "Đã lược bỏ {n} câu không được nguồn trích dẫn xác nhận: {quotes}",
    "en": "Removed {n} sentence(s) that the cited sources do not support: {quotes}",
}
_MARKER_RE = re.compile(r"\s*[\[［【〔][0-9０-９,;，、；\s\-–—~]+[\]］】〕]")


def removed_notice(removed: list[str], lang: str, limit: int = 160) -> str:
    """The notice that lists the sentences the claim check removed (each shortened to `limit` characters)."""
    quotes = " ".join(f"“{s if len(s) <= limit else s[: limit - 1] + '…'}”" for s in removed)
    return REMOVED_NOTICE[lang].format(n=len(removed), quotes=quotes)


def _header(hit) -> str:
    c = hit.chunk
    return " — ".join(x for x in (c.title, ", ".join(y for y in (c.source, c.date) if y)) if x)


PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


class Pipeline:
    """Loaded embedder + index + retriever + answerers, and the runnable chain over them.

    The preparation chain is LangChain runnables: condense (follow-up -> standalone question) |
    translate (English question -> Vietnamese query, with an LLM) | retrieve. Answering is either the
    extractive answerer or the LLM, streamed, with citation validation and extractive fallback.
    """

    def __init__(
        self,
        settings: Settings,
        loaded: LoadedEmbedder,
        index: Index,
        lexicon: Lexicon | None,
        llm: ChatModel | None = None,
        prompts_dir: Path = PROMPTS_DIR,
        *,
        reranker: Any = "load",
    ) -> None:
        self.settings = settings
        self.loaded = loaded
        self.embedder = loaded.embedder
        self.index = index
        self.lexicon = lexicon
        self.prompts_dir = prompts_dir
        # An index swap (rag.service) builds a new Pipeline around the parts already loaded, reranker included.
        self.reranker = load_reranker(settings) if reranker == "load" else reranker
        self.retriever = HybridRetriever(index, self.embedder, settings, lexicon, reranker=self.reranker)
        self.extractive = ExtractiveAnswerer(index, self.embedder, lexicon, min_evidence=settings.min_evidence)
        self.llm = llm
        self.llm_answerer = LLMAnswerer(llm, prompts_dir, lexicon) if llm is not None else None
        self.prepare: Runnable = (
            RunnableLambda(self._condense_step) | RunnableLambda(self._translate_step) | RunnableLambda(self._retrieve_step)
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sync_corpus: bool = False,
        progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
        loaded: LoadedEmbedder | None = None,
        allow_empty: bool = False,
    ) -> Pipeline:
        """Load the embedder (unless given) and open the index; with `sync_corpus`, (re)build it from
        RAG_CORPUS_DIR first."""
        loaded = loaded or load_embedder(settings)
        index = Index.open(settings, must_exist=not (sync_corpus or allow_empty))
        if sync_corpus:
            report = index.sync([Path(settings.corpus_dir)], loaded.embedder, progress=progress)
            log.info("Index in sync: %s", summarize(report))
        try:
            lexicon: Lexicon | None = default_lexicon()
        except Exception as exc:  # the lexicon is an accuracy aid; retrieval still works without it
            log.warning("Domain lexicon unavailable (%s); English questions will retrieve worse.", exc)
            lexicon = None
        llm = OpenAICompatibleClient.from_settings(settings) if settings.llm_base_url.strip() else None
        return cls(settings, loaded, index, lexicon, llm)

    # ------------------------------------------------------------------ chain steps
    def _condense_step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        question, history = inputs["question"], inputs.get("history") or []
        standalone = condense_offline(question, history)
        if history and inputs.get("use_llm") and self.llm is not None:
            standalone = self._llm_rewrite("condense_question", question, history) or standalone
        return {**inputs, "standalone": standalone}

    def _translate_step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        extra: tuple[str, ...] = ()
        standalone = inputs["standalone"]
        if inputs.get("use_llm") and self.llm is not None and detect_language(standalone) == "en":
            translated = self._llm_translate(standalone)
            extra = (translated,) if translated else ()
        return {**inputs, "extra_queries": extra}

    def _retrieve_step(self, inputs: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        result = self.retriever.retrieve(
            inputs["standalone"], k=inputs.get("k"), filters=inputs.get("filters"),
            extra_queries=inputs.get("extra_queries", ()),
        )
        return {**inputs, "retrieval": result, "retrieve_ms": (time.perf_counter() - t) * 1000}

    def _connection_answer(
        self, question: str, history: list[Turn], filters: Filters | None, k: int | None, t0: float
    ) -> Answer | None:
        """The connection finder's answer as an Answer (text = its sections as plain text, citations = its
        sources), when the question (with a follow-up, the question it follows) is a local business
        looking for a way in to Japan; None otherwise, or when the finder lists nothing."""
        from rag.connect import build_connection_answer, province_phrase, render_text, sector_phrase
        from rag.entities import OLD_NEW_SEP, detect_question_entities

        q = nfc(question or "").strip()
        if not q or len(q) > MAX_QUESTION_CHARS:
            return None
        standalone = condense_offline(q, history)
        if not is_chat_connection_query(standalone):
            return None
        lang = answer_language(detect_language(q))
        # This turn's own province and sector win over those carried over from the question it follows.
        ents = detect_question_entities(q)
        asked_jp = detect_question_entities(standalone).places_jp
        if asked_jp:
            from rag.connect import chunk_entities_of

            known = {jp for e in chunk_entities_of(self.index).values() for jp in e.places_jp}
            if not set(asked_jp) <= known:
                return None  # 'offices in Nagoya' when no document names Nagoya: the ordinary answer refuses
        province = ents.places_vn[0].split(OLD_NEW_SEP)[0] if ents.places_vn else province_phrase(q)
        sector = sector_phrase(q) or (ents.sectors[0] if ents.sectors else "")
        found = build_connection_answer(self, standalone, province=province or None, sector=sector or None,
                                        lang=lang, k=k or 10, filters=filters)
        if found.empty:
            return None  # nothing to list: the ordinary answer (or refusal) is more useful
        if asked_jp:
            # Some quoted sentence must name an organisation together with the asked Japanese place: 'offices
            # in Nagoya' is not answered by Osaka's offices plus a list of regions that happens to name Nagoya.
            quoted = [detect_question_entities(c.quote) for c in found.sources]
            if not any(set(asked_jp) & set(e.places_jp) and e.organizations for e in quoted):
                return None  # the ordinary answer refuses
        timings = {**found.timings_ms, "answer": round(found.timings_ms.get("total", 0.0)
                                                        - found.timings_ms.get("retrieve", 0.0), 1),
                   "total": round((time.perf_counter() - t0) * 1000, 1)}
        return Answer(question=question, language=lang, text=render_text(found, lang),
                      refused=False, backend="extractive", citations=found.sources, hits=found.hits,
                      timings_ms=timings)

    def _check_claims(self, text: str, lang: str, hits: list) -> tuple[str, list[str]]:
        """(the LLM answer without the sentences its cited passages do not support, those sentences).

        Each sentence is checked against the passages it cites, header included (the model sees
        title, outlet and date too): its numbers, dates and names must be there, and enough of its
        content words (see rag.grounding.check_claims). A refusal is left as it is."""
        if not text.strip() or is_refusal(text) or not set(parse_citations(text)) & set(range(1, len(hits) + 1)):
            return text, []  # a refusal, or nothing validly cited (finalize falls back with its own notice)
        passages = {i: f"{_header(h)}\n{h.chunk.text}" for i, h in enumerate(hits, 1)}

        def similarity(claims: list[str], sentences: list[str]):
            return self.embedder.embed_documents(claims) @ self.embedder.embed_documents(sentences).T

        checks = check_claims(text, passages, lexicon=self.lexicon, english=lang == "en", similarity=similarity)
        dropped = [c for c in checks if not c.supported]
        if not dropped:
            return text, []
        # The notice quotes what was removed: through the output guard first (rag.guard, against the
        # sources each sentence cited), so a secret or an injected canary the model echoed is not shown.
        secrets = [getattr(self.llm, "_api_key", "") or ""]
        removed = [scrub_answer(_MARKER_RE.sub("", c.text).strip(), [passages[n] for n in c.cited if n in passages],
                                secrets=secrets).text for c in dropped]
        # Logged scrubbed too (the raw sentence or its missing names may hold an echoed secret).
        log.info("Claim check removed %d of %d answer sentences: %s", len(removed), len(checks),
                 [(r, len(c.missing), c.term_support, c.similarity) for r, c in zip(removed, dropped, strict=True)])
        return remove_unsupported(text, checks), removed

    def _llm_rewrite(self, prompt: str, question: str, history: list[Turn]) -> str:
        lang = answer_language(detect_language(question))
        transcript = "\n".join(f"Q: {t.question}\nA: {t.answer[:400]}" for t in history[-3:])
        return self._llm_one_line(prompt, lang, "follow-up condensation", history=transcript, question=question)

    def _llm_translate(self, question: str) -> str:
        return self._llm_one_line(
            "translate_query", "", "query translation", question=question,
            source_lang="English", target_lang="Vietnamese",
        )

    def _llm_one_line(self, prompt: str, lang: str, purpose: str, **values: str) -> str:
        """The first line of the LLM's reply to a prompt file, or '' on any failure (the offline path is used)."""
        try:
            template = load_prompt(self.prompts_dir, prompt, lang)
            text = self.llm.complete(  # type: ignore[union-attr]
                [{"role": "user", "content": render_prompt(template, **values)}], max_tokens=120, temperature=0.0
            )
        except RagError as exc:
            log.warning("LLM %s failed (%s); continuing without it.", purpose, exc)
            return ""
        line = text.strip().splitlines()[0].strip() if text.strip() else ""
        return line if 0 < len(line) <= 500 else ""

    # ------------------------------------------------------------------ public API
    def warm_up(self) -> float:
        """Run one Vietnamese and one English retrieval so the first user does not pay for lazy loading
        (the entity index, torch's first pass; ~350 ms at 100k chunks). Returns seconds."""
        t = time.perf_counter()
        if self.index.chunks:
            for question in ("Hợp tác khoa học công nghệ Việt Nam – Nhật Bản tại Tokyo",
                             "Vietnam Japan cooperation in semiconductors"):
                self.retrieve(question)
        seconds = time.perf_counter() - t
        log.info("Warm-up retrieval took %.1f s", seconds)
        return seconds

    def retrieve(self, question: str, k: int | None = None, filters: Filters | None = None) -> RetrievalResult:
        """Hybrid retrieval only (no answer)."""
        return self.retriever.retrieve(question, k=k, filters=filters)

    @property
    def default_backend(self) -> str:
        return "llm" if self.llm is not None else "extractive"

    def stream(
        self,
        question: str,
        history: list[Turn] | None = None,
        filters: Filters | None = None,
        k: int | None = None,
        backend: str | None = None,
        connections: bool = True,
    ) -> Iterator[StreamEvent]:
        """Answer events: LLM tokens as they arrive ("reset" if they must be discarded: the answer fell
        back, or the claim check removed sentences), then "final".

        Any LLM failure, a cut stream, or an answer without a valid citation ends in the extractive
        answer with a notice: a partial generation is never presented as a complete answer. LLM
        sentences that their cited passages do not support are removed (and listed in the notice).
        A local business asking where to start with Japan ("Công ty chúng tôi ở tỉnh P, ngành S, muốn
        tìm đối tác Nhật — bắt đầu từ đâu?") gets the connection finder's structured, cited answer
        instead (unless `connections` is False).
        """
        t0 = time.perf_counter()
        if connections:
            connection = self._connection_answer(question, history or [], filters, k, t0)
            if connection is not None:
                yield StreamEvent("final", answer=connection)
                return
        use_llm = (backend or self.default_backend) == "llm" and self.llm_answerer is not None
        state = self.prepare.invoke(
            {"question": question, "history": history or [], "filters": filters, "k": k, "use_llm": use_llm}
        )
        result: RetrievalResult = state["retrieval"]
        lang = answer_language(detect_language(question))
        timings = {"retrieve": round(state["retrieve_ms"], 1)}
        answer: Answer | None = None
        notice = ""
        supporting = None
        if use_llm and self.llm_answerer is not None and result.hits:
            # The same anchors gate as the extractive answer: no passage naming the question's places,
            # organisations, years... and the relation asked about means no answer, and no LLM call.
            supporting = self.extractive.supporting_passages(
                state["standalone"], replace(result.plan, question=state["standalone"]), result.hits
            )
            if supporting == set():
                use_llm = False
        if use_llm and self.llm_answerer is not None and result.hits:
            t = time.perf_counter()
            timings["prepare"] = round((t - t0) * 1000, 1)  # pipeline overhead before the LLM is called
            parts: list[str] = []
            removed: list[str] = []
            try:
                for delta in self.llm_answerer.stream(state["standalone"], lang, result.hits):
                    if not parts:
                        timings["first_token"] = round((time.perf_counter() - t0) * 1000, 1)
                    parts.append(delta)
                    yield StreamEvent("token", delta)
                text, removed = self._check_claims("".join(parts), lang, result.hits)
                if removed:
                    # The streamed text held sentences the final answer drops: consumers discard it.
                    yield StreamEvent("reset")
                answer = self.llm_answerer.finalize(question, lang, result.hits, text)
                if answer is not None and not answer.refused and supporting and not (
                        {c.n for c in answer.citations} & supporting):
                    # Every citation is a passage lacking the question's anchors: topic words, not an answer.
                    log.info("LLM answer cites only passages without the question's anchors; falling back.")
                    if not removed:
                        yield StreamEvent("reset")  # the streamed tokens are not the answer
                    answer, removed = None, [text]
                if answer is None:
                    notice = (UNSUPPORTED_FALLBACK_NOTICE if removed else NO_CITATION_NOTICE)[lang]
                elif removed:
                    notice = " ".join(x for x in (removed_notice(removed, lang), answer.notice) if x)
            except RagError as exc:
                log.warning("LLM answer failed: %s", exc)
                notice = FALLBACK_NOTICE[lang].format(reason=exc.message(lang).rstrip("."))
            if answer is None and parts and not removed:
                yield StreamEvent("reset")
            timings["answer"] = round((time.perf_counter() - t) * 1000, 1)
        if answer is None:
            t = time.perf_counter()
            # Evidence terms come from the question as asked; the standalone rewrite only steered retrieval.
            answer = self.extractive.answer(replace(result.plan, question=question), result.hits)
            timings["answer"] = round(timings.get("answer", 0) + (time.perf_counter() - t) * 1000, 1)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 1)
        yield StreamEvent("final", answer=replace(
            answer, question=question, language=lang, timings_ms=timings, notice=notice or answer.notice
        ))

    def ask(
        self,
        question: str,
        history: list[Turn] | None = None,
        filters: Filters | None = None,
        k: int | None = None,
        backend: str | None = None,
        connections: bool = True,
    ) -> Answer:
        """Answer one question with citations (or a refusal). Raises BadInput for unusable questions."""
        final = None
        for event in self.stream(question, history, filters, k, backend, connections):
            if event.kind == "final":
                final = event.answer
        assert final is not None
        return final

    @property
    def notices(self) -> list[tuple[str, str]]:
        """(en, vi) notices the UI should show permanently, e.g. the fallback model warning."""
        out = []
        if self.loaded.is_fallback:
            out.append((self.loaded.warning_en, self.loaded.warning_vi))
        return out


def summarize(report: IngestReport) -> str:
    """One line for logs and the CLI."""
    return report.summary()
