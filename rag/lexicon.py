"""Offline query translation and synonym expansion with the hand-reviewed EN<->VI domain lexicon.

Shortcut taken: dictionary lookup with greedy longest match, not machine translation. It is enough
for retrieval (BM25 terms and a Vietnamese dense query), where word order does not matter much.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from rag.text import nfc, strip_diacritics

_MAX_NGRAM = 6
_TOKEN = re.compile(r"[\w&]+", re.UNICODE)  # hyphens/slashes split: 'semiconductor-related', 'EMB-AI'



def _tone_key(words: list[str]) -> tuple[tuple[str, frozenset[str]], ...]:
    """Each word without diacritics plus the set of its diacritic marks, lower-case: tones compared
    wherever a writer placed them ('hoà' == 'hòa'), and 'nhân' != 'nhận', 'cực' != 'cục'."""
    out = []
    for w in words:
        w = w.replace("&", "").lower()
        marks = frozenset(ch for ch in unicodedata.normalize("NFD", w) if unicodedata.combining(ch))
        out.append((strip_diacritics(w), marks | ({"đ"} if "đ" in w else set())))
    return tuple(out)


def _key_tokens(text: str) -> tuple[str, ...]:
    """Lookup key: lower-case, no diacritics, '&' folded ('KH&CN' == 'khcn'), split into words."""
    return tuple(strip_diacritics(t.replace("&", "")).lower() for t in _TOKEN.findall(nfc(text)))


@dataclass(frozen=True)
class Expansion:
    """Terms found in a query and what they expand to."""

    matched: tuple[str, ...]  # the query phrases that matched a lexicon entry
    vietnamese: tuple[str, ...]  # Vietnamese renderings/synonyms to add to the search
    english: tuple[str, ...]  # English renderings (for Vietnamese queries)
    leftover: tuple[str, ...]  # query words no entry covered (names, numbers, unknown words)
    leftover_runs: tuple[str, ...] = ()  # the same words as contiguous runs of the original text


class Lexicon:
    """Bidirectional phrase table; each English term groups its Vietnamese variants (synonyms)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.groups: list[tuple[set[str], set[str]]] = []  # (english forms, vietnamese forms)
        by_en: dict[str, int] = {}
        for en, vi in pairs:
            en, vi = nfc(en).strip(), nfc(vi).strip()
            if not en or not vi:
                continue
            gid = by_en.setdefault(en.lower(), len(self.groups))
            if gid == len(self.groups):
                self.groups.append((set(), set()))
            self.groups[gid][0].add(en)
            self.groups[gid][1].add(vi)
        self._index: dict[tuple[str, ...], set[int]] = {}
        # Each group's Vietnamese forms as tone keys, computed once: `expand` checks them on every query.
        self._tone_keys = [frozenset(_tone_key(_TOKEN.findall(v)) for v in vis) for _ens, vis in self.groups]
        for gid, (ens, vis) in enumerate(self.groups):
            for form in ens | vis:
                key = _key_tokens(form)
                if key and len(key) <= _MAX_NGRAM:
                    self._index.setdefault(key, set()).add(gid)

    def __len__(self) -> int:
        return len(self.groups)

    def expand(self, text: str) -> Expansion:
        """Greedy longest-match of lexicon phrases in `text` (either language, with or without tones)."""
        words = _TOKEN.findall(re.sub(r"['’]s\b", "", nfc(text)))  # "Japan's" -> "Japan"
        keys = [strip_diacritics(w.replace("&", "")).lower() for w in words]
        matched: list[str] = []
        vi_out: list[str] = []
        en_out: list[str] = []
        leftover: list[str] = []
        runs: list[list[str]] = [[]]
        i = 0
        while i < len(keys):
            for n in range(min(_MAX_NGRAM, len(keys) - i), 0, -1):
                gids = self._index.get(tuple(keys[i : i + n]))
                if not gids:  # 'Basic Sciences' -> 'basic science'
                    gids = self._inflected(tuple(keys[i : i + n]))
                if gids and any(w != strip_diacritics(w) for w in words[i : i + n]):
                    # Written with tones, a phrase must match an entry's tones too: 'Nhân' (as in 'nhân
                    # dịp') is not 'nhận' (receive), 'tích cực' holds no 'Cục' (department).
                    toned = _tone_key(words[i : i + n])
                    gids = {g for g in gids if toned in self._tone_keys[g]}
                if gids:
                    matched.append(" ".join(words[i : i + n]))
                    for gid in sorted(gids):
                        ens, vis = self.groups[gid]
                        vi_out.extend(sorted(vis, key=len))
                        en_out.extend(sorted(ens, key=len))
                    i += n
                    runs.append([])
                    break
            else:
                leftover.append(words[i])
                runs[-1].append(words[i])
                i += 1
        return Expansion(
            tuple(matched),
            tuple(dict.fromkeys(vi_out)),
            tuple(dict.fromkeys(en_out)),
            tuple(leftover),
            tuple(" ".join(r) for r in runs if r),
        )


    def _inflected(self, phrase: tuple[str, ...]) -> set[int] | None:
        """The entry of an English word's base form ('operating' -> 'operate', 'agreed' -> 'agree',
        'companies' -> 'company'), so the lexicon need not list every inflection. No Vietnamese syllable
        ends in -s, -ed or -ing, so unaccented Vietnamese is never stemmed by mistake."""
        key = phrase[-1]
        if not key.isascii() or not key.isalpha() or len(key) < 4:
            return None
        stems: list[str] = []
        if key.endswith("ies"):
            stems.append(key[:-3] + "y")
        elif key.endswith("es"):
            stems += [key[:-2], key[:-1]]
        elif key.endswith("s") and not key.endswith("ss"):
            stems.append(key[:-1])
        elif key.endswith("ied"):
            stems.append(key[:-3] + "y")
        elif key.endswith("ed"):
            stems += [key[:-2], key[:-1], key[:-3] if key[-3:-2] == key[-4:-3] else key[:-2]]
        elif key.endswith("ing"):
            stems += [key[:-3], key[:-3] + "e", key[:-4] if key[-4:-3] == key[-5:-4] else key[:-3]]
        for stem in stems:
            gids = self._index.get((*phrase[:-1], stem))
            if gids and len(stem) >= 3:
                return gids
        return None


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The lexicon shipped in rag/data/lexicon_en_vi.tsv."""
    from rag.gazetteer import load_lexicon

    # Question words ("how many" -> "bao nhiêu") carry no topic: they would only add noise to searches.
    return Lexicon((row.en, row.vi) for row in load_lexicon() if row.kind != "question")
