"""Distractor corpora for evaluation: Vietnamese Wikipedia articles indexed beside corpus/ so the gold set is
answered at a realistic scale, with hard negatives (Japan, Japanese prefectures and cities, JICA/JETRO/ODA,
Vietnamese provinces, trade, investment, science cooperation) among random articles.

    ids = read_list("eval/distractors/ci.txt")
    folder = materialise(ids, "../shared/corpora/viwiki.tar.xz", cache / "distractors" / list_key(ids))

The committed lists (eval/distractors/*.txt) hold article file names of the public viwiki archive
(`viwiki/<title>.txt`, see ../shared/corpora/README.md), one a line; `select_articles` is how they were
made (deterministic: keyword scores, then a seeded random draw), kept so the lists can be re-derived.
The archive stays outside the repository; articles are copied into a cache folder, never into corpus/.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tarfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOURCE = Path("../shared/corpora/viwiki.tar.xz")
LIST_DIR = Path(__file__).parent / "distractors"

# Hard-negative groups: (name, title patterns, text patterns with a minimum count). Matching is on NFC,
# lower-cased text. The groups follow the ways a wrong answer tempts: same topic, other country; same
# organisation kind, other city; same kind of figure, other year.
_JP_PLACES = (
    "nhật bản", "tokyo", "osaka", "kyoto", "hokkaid", "okinawa", "fukuoka", "nagoya", "kobe", "yokohama",
    "hiroshima", "nagasaki", "sendai", "sapporo", "aichi", "hyōgo", "hyogo", "chiba", "saitama", "kanagawa",
    "shizuoka", "niigata", "nara", "fukushima", "kyūshū", "honshu", "honshū", "shikoku",
)
GROUPS: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, int], ...]], ...] = (
    ("japan", _JP_PLACES, (("nhật bản", 8),)),
    ("jica-oda", ("jica", "jetro", "oda"), (("jica", 1), ("jetro", 1), ("oda", 2), ("viện trợ phát triển", 1))),
    ("vn-province", ("tỉnh", "thành phố"), (("là một tỉnh", 1), ("thành phố trực thuộc trung ương", 1),
                                            ("tỉnh lỵ", 2))),
    ("trade-investment", ("thương mại", "kinh tế", "đầu tư", "xuất khẩu"),
     (("đầu tư", 6), ("thương mại", 6), ("xuất khẩu", 5), ("fdi", 2))),
    ("science-cooperation", ("khoa học", "công nghệ", "đại học", "viện"),
     (("hợp tác", 3), ("khoa học", 8), ("công nghệ", 6), ("nghiên cứu", 6))),
    ("vietnam-relations", ("quan hệ", "việt nam", "đại sứ"), (("quan hệ ngoại giao", 2), ("đại sứ", 3))),
)


# Articles every list holds whatever their length: the nearest wrong answers to gold questions (the relation
# article, the cities and ministries the seeds mention). The long ones only in the full list.
PINNED_SMALL = (
    "quan hệ nhật bản – việt nam.txt", "tokyo.txt", "khoa học và công nghệ ở nhật bản.txt", "phú thọ.txt",
    "đại học kyoto.txt", "sân bay hòa lạc.txt", "bộ ngoại giao (nhật bản).txt", "bộ ngoại giao (việt nam).txt",
    "sakai, osaka.txt",
)
PINNED_LARGE = ("đà nẵng.txt", "nhật bản.txt", "giải nobel vật lý.txt")


@dataclass(frozen=True)
class Article:
    """One archive article: its file name (the id kept in the lists), title and text."""

    name: str
    text: str

    @property
    def title(self) -> str:
        return self.name.removesuffix(".txt")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def read_list(path: str | Path) -> list[str]:
    """Article file names from a list file (blank lines and '#' comments ignored), NFC-normalised."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = _nfc(line.strip())
        if line and not line.startswith("#"):
            out.append(line)
    return out


def list_key(ids: Sequence[str]) -> str:
    """A short stable key for a list of article ids (order-independent)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:12]


def iter_archive(source: str | Path) -> Iterable[Article]:
    """Articles of the viwiki archive (.tar.xz) or of an already extracted folder of .txt files."""
    source = Path(source)
    if source.is_dir():
        for path in sorted(source.rglob("*.txt")):
            yield Article(_nfc(path.name), _nfc(path.read_text(encoding="utf-8", errors="replace")))
        return
    with tarfile.open(source, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".txt"):
                fh = tar.extractfile(member)
                if fh is not None:
                    yield Article(_nfc(Path(member.name).name), _nfc(fh.read().decode("utf-8", errors="replace")))


def materialise(ids: Sequence[str], source: str | Path, dest: str | Path) -> Path:
    """Copy the listed articles from the archive (or folder) into `dest`; idempotent, complete or an error.

    Raises FileNotFoundError when the archive is missing and KeyError naming articles it lacks.
    """
    dest = Path(dest)
    marker = dest / ".complete"
    if marker.exists() and marker.read_text(encoding="utf-8") == list_key(ids):
        return dest
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"distractor source {source} not found (see ../shared/corpora/README.md)")
    wanted = set(ids)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    found: set[str] = set()
    for art in iter_archive(source):
        if art.name in wanted and art.name not in found:
            (tmp / art.name).write_text(art.text, encoding="utf-8")
            found.add(art.name)
    missing = sorted(wanted - found)
    if missing:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KeyError(f"{len(missing)} listed article(s) not in {source}: {', '.join(missing[:5])}")
    (tmp / ".complete").write_text(list_key(ids), encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


@dataclass(frozen=True)
class DistractorSet:
    """A folder of distractor documents ready to index, and where it came from."""

    folder: Path
    label: str  # the list file or folder named on the command line
    key: str  # list_key of the article ids
    n_articles: int

    def describe(self) -> dict[str, object]:
        """The report.json description of this set."""
        return {"list": self.label, "key": self.key, "n_articles": self.n_articles}

    def index_home(self, cache_dir: str | Path, settings: object) -> Path:
        """Where the corpus + distractors index lives between runs: keyed by list, corpus, model and chunking."""
        parts = [self.key, str(Path(str(getattr(settings, "corpus_dir", "corpus"))).resolve())]
        parts += [str(getattr(settings, k, "")) for k in ("embedding_model", "embedding_fallback", "chunk_words",
                                                          "chunk_overlap_words")]
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
        return Path(cache_dir) / f"index-{self.key}-{digest}"


def resolve(spec: str | Path, source: str | Path, cache_dir: str | Path) -> DistractorSet:
    """A folder of documents (used as is), a list file of article ids (copied from `source` into the cache)
    or a .json file {"list": ..., "source": ...} -> DistractorSet. Raises ValueError with the reason."""
    path = Path(spec)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not names:
            raise ValueError(f"distractor folder {path} holds no documents")
        return DistractorSet(path, str(spec), list_key(names), len(names))
    if not path.is_file():
        raise ValueError(f"distractors {spec}: no such folder or list file")
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "list" not in data:
            raise ValueError(f"{path}: expected {{\"list\": LIST_FILE, \"source\": ARCHIVE}}")
        return resolve(data["list"], data.get("source") or source, cache_dir)
    ids = read_list(path)
    if not ids:
        raise ValueError(f"distractor list {path} is empty")
    key = list_key(ids)
    try:
        folder = materialise(ids, source, Path(cache_dir) / f"docs-{key}")
    except (FileNotFoundError, KeyError) as exc:
        raise ValueError(str(exc).strip("'\"")) from exc
    return DistractorSet(folder, str(spec), key, len(ids))


def _count(text: str, needle: str) -> int:
    if len(needle) <= 4:  # short tokens (oda, fdi, viện) must be whole words
        return len(re.findall(rf"(?<!\w){re.escape(needle)}(?!\w)", text))
    return text.count(needle)


def group_of(article: Article) -> str:
    """The first hard-negative group an article belongs to ('' for none)."""
    title, text = article.title.lower(), article.text.lower()
    for name, title_pats, text_pats in GROUPS:
        if any(_count(title, p) for p in title_pats) and any(_count(text, p) >= 1 for p, _ in text_pats):
            return name
        if any(_count(text, p) >= n for p, n in text_pats):
            return name
    return ""


def select_articles(
    source: str | Path, quotas: dict[str, int], n_random: int, *, max_chars: int = 30_000, seed: int = 11
) -> list[tuple[str, str]]:
    """(article id, group) pairs: up to quotas[group] hard negatives per group, then `n_random` others.

    Articles longer than `max_chars` are skipped (a few giant pages would dominate the chunk count);
    within a group the draw is seeded-random, so the list is reproducible from the archive alone.
    """
    by_group: dict[str, list[str]] = {}
    for art in iter_archive(source):
        if len(art.text) > max_chars or len(art.text) < 400:
            continue
        by_group.setdefault(group_of(art), []).append(art.name)
    rng = random.Random(seed)
    out: list[tuple[str, str]] = [(a, "pinned") for a in (*PINNED_SMALL, *PINNED_LARGE)]
    taken = {a for a, _g in out}
    for name, _t, _p in GROUPS:
        pool = sorted(a for a in by_group.get(name, []) if a not in taken)
        rng.shuffle(pool)
        out += [(a, name) for a in pool[: quotas.get(name, 0)]]
    pool = sorted(a for a in by_group.get("", []) if a not in taken)
    rng.shuffle(pool)
    out += [(a, "random") for a in pool[:n_random]]
    return out


def write_list(path: str | Path, chosen: Sequence[tuple[str, str]], header: str) -> None:
    """A list file: a comment header, then one article id per line, grouped."""
    lines = [f"# {h}" for h in header.splitlines()]
    lines += [a for a, _g in chosen]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:  # pragma: no cover - run once to (re)derive the committed lists
    import argparse

    ap = argparse.ArgumentParser(description="Derive the distractor lists from the viwiki archive.")
    ap.add_argument("--source", default=str(DEFAULT_SOURCE))
    ap.add_argument("--out", default=str(LIST_DIR))
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    full_q = {"japan": 260, "jica-oda": 25, "vn-province": 120, "trade-investment": 120,
              "science-cooperation": 110, "vietnam-relations": 60}
    full = select_articles(args.source, {k: round(v * args.scale) for k, v in full_q.items()}, round(150 * args.scale))
    # The CI list: a seeded subset of the full one, hard negatives first (they are what the gate is about).
    rng = random.Random(7)
    ci: list[tuple[str, str]] = [(a, "pinned") for a in PINNED_SMALL]
    ci_q = {"japan": 20, "jica-oda": 5, "vn-province": 8, "trade-investment": 6, "science-cooperation": 6,
            "vietnam-relations": 3, "random": 3}
    for group, n in ci_q.items():
        members = [x for x in full if x[1] == group]
        rng.shuffle(members)
        ci += members[:n]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {g: sum(1 for _a, x in full if x == g) for g in ["pinned", *full_q, "random"]}
    write_list(out / "full.txt", full, "Distractors (full): viwiki article file names, made by eval/distractors.py\n"
               + json.dumps(counts))
    write_list(out / "ci.txt", ci, "Distractors (CI subset of full.txt), made by eval/distractors.py\n"
               + json.dumps({g: sum(1 for _a, x in ci if x == g) for g in ["pinned", *ci_q]}))


if __name__ == "__main__":  # pragma: no cover
    main()
