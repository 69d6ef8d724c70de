"""Chat feedback: a Gradio `chatbot.like` listener that stores 👍/👎 with the answer's citations.

Part of the UI (Gradio is imported here and in rag/ui.py only); the storage is rag.feedback.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.feedback import FeedbackStore
from rag.text import detect_language


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
    # Shown text is rendered Markdown (rag.render escapes with backslashes): compare without them.
    return re.sub(r"[\s\\]+", "", html.unescape(text))


def feedback_handler(
    service: Any, settings: Any = None, lookup: Callable[[str], Any] | None = None
) -> Callable[..., None]:
    """A `chatbot.like(fn, inputs=chatbot)` listener that stores 👍/👎 in RAG_HOME/feedback.sqlite3.

    The liked message's question is the user message before it. The structured answer (citations,
    backend, language) comes from `lookup(shown_text)` when given (e.g. a dict of the Answers the chat
    produced); otherwise, for the offline extractive backend, by asking the service again with the same
    history (deterministic and cheap). When neither yields the answer that was shown (e.g. an LLM answer),
    the shown text is stored without citations. A string `liked` (Gradio feedback options) is stored as 👎
    with the option as comment.
    """
    store = FeedbackStore.from_settings(settings or service.settings)

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
        backend = str(getattr(service, "default_backend", "") or "")
        answer = lookup(shown) if lookup is not None else None
        if answer is None and question.strip() and backend in ("", "extractive"):
            try:
                from rag.chain import Turn

                answer = service.ask(question, history=[Turn(q, a) for q, a in turns])
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
