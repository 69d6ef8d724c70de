"""`rag --help` and every command's help read cleanly in an 80-column terminal; error sentences come in the
user's language (the question's, English when there is none). Real subprocesses, no model loaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = [
    [], ["ingest"], ["retrieve"], ["ask"], ["connect"], ["serve"], ["eval"], ["documents"], ["documents", "list"],
    ["documents", "delete"], ["documents", "reingest"], ["feedback"], ["feedback", "export"],
]


def rag(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "RAG_HOME": os.devnull + "-no-index"}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rag")
def test_help_fits_80_columns_without_type_tags_or_cut_text(command):
    result = rag(*command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert not re.search(r"<(str|int|float|bool|path|list\[\w+\]|[a-z ]+ range)>", text), text
    # Short helps in command lists are whole sentences, not cut with "..."
    assert not [line for line in lines if line.rstrip().endswith("...") and not line.startswith("Usage:")], text
    # Every "[default: …]" / "[env var: …]" opens and closes on one line
    assert not [line for line in lines if re.search(r"\[(default|env var):[^\]]*$", line)], text


def test_eval_help_names_its_defaults_in_full():
    text = rag("eval", "--help").stdout
    flat = " ".join(text.split())
    for default in ("eval/datasets/gold.jsonl", "eval/runs/latest", "hit@5,refusal_accuracy", "0.02"):
        assert default in flat


def test_missing_question_error_is_english():
    result = rag("retrieve")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Give a QUESTION or --batch FILE."


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Có bao nhiêu kỹ sư CNTT Việt Nam tại Nhật Bản?", "--backend phải là 'extractive' hoặc 'llm'."),
        ("How many Vietnamese engineers work in Japan?", "--backend must be 'extractive' or 'llm'."),
    ],
)
def test_bad_backend_error_follows_the_question_language(question, expected):
    result = rag("ask", question, "--backend", "gpt")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == expected


def test_unreadable_batch_file_error_is_english(tmp_path):
    result = rag("ask", "--batch", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Cannot read") and "missing.jsonl" in last
