"""Offline builders of real training data (data.md's sources), split against the evaluation tasks.

``python -m training data`` writes into ``$COMPSEARCH_TRAIN_DATA`` (default
``~/.cache/compsearch/training-data``):

- ``ctkd.jsonl``   {text, source, unit}: passages of >= ~1000 characters for the stage-1 objectives
  (Python docs sections, man page descriptions, Debian long descriptions, FOLDOC definitions, Brown
  passages, and the English Wikipedia sample shipped in gensim's test data);
- ``ucl.jsonl``    {text, source, unit}: sentences (split from those passages, plus WordNet glosses);
- ``scl.jsonl``    {query, positive, negative, source, unit, negative_rank}: (query, document) pairs in
  the same shapes as the evaluation tasks (synopsis -> description, whatis -> man page, title ->
  section, term -> masked definition, lemma -> gloss), each with one BM25-mined hard negative;
- ``heldout.jsonl`` {text, source, unit}: texts of a small slice of *training-side* units kept out of
  training, for the diagnostics;
- ``manifest.json``: builder version, seed, every source with its exact version and sha256, counts
  per file and source, and the split check.

Splits: sources are fetched and parsed with the offline evaluation suite's own code
(``benchmarks.mteb_suite``), and a unit (Debian source package, man page, documentation page,
FOLDOC entry, synset, Brown sample) is usable only if it is on the *train* side of **every**
evaluation task built from that source -- computed by running the suite's task builders and by its
pure ``unit_split`` rule, and also against the test units of tasks already built in the suite's cache.
Reserved sources (Python's ``faq/`` pages, ``perl-doc``) are never read. The Lee STS documents and
the word-similarity lists are evaluation-only and are not used.

Hard negatives: BM25 (``bm25s``, English stopwords, Snowball stemmer) over the positives of the same
source, skipping the positive itself and any document of the same unit, one drawn from the top
``pool`` candidates; or mined by a compsearch encoder (``mine_with_encoder``).
"""

from __future__ import annotations

import bz2
import hashlib
import inspect
import json
import logging
import random
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .errors import TrainingError

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
SEED = 4242
HELDOUT_FRACTION = 0.02  # of training-side units, kept out of training for the diagnostics
GROUPS = ("debian", "man", "pydocs", "foldoc", "wordnet", "brown")
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _suite():
    """The offline evaluation suite's modules (fetching, parsing, task builders, splits)."""
    from benchmarks.mteb_suite import build as BD
    from benchmarks.mteb_suite import builders as B
    from benchmarks.mteb_suite import parse as P
    from benchmarks.mteb_suite import sources as S

    return BD, B, P, S


def _hash01(unit: str, salt: str) -> float:
    h = hashlib.sha256(f"{salt}\0{unit}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def is_heldout(unit: str) -> bool:
    return _hash01(unit, f"heldout-{SEED}") < HELDOUT_FRACTION


# ---------------------------------------------------------------------------- the split guard


def _default_fraction(fn) -> float:
    return float(inspect.signature(fn).parameters["test_fraction"].default)


@dataclass
class SplitGuard:
    """Which units of each source the evaluation tasks test on (never to be trained on)."""

    forbidden: dict[str, set] = field(default_factory=dict)  # group -> explicit test units
    rules: dict[str, list] = field(default_factory=dict)  # group -> unit_split fractions
    tasks: dict[str, list] = field(default_factory=dict)  # group -> task names checked

    def allowed(self, group: str, unit: str) -> bool:
        from benchmarks.mteb_suite.builders import RESERVED_PATTERNS, unit_split

        if any(p.search(unit) for p in RESERVED_PATTERNS):
            return False
        if unit in self.forbidden.get(group, ()):
            return False
        return all(unit_split(unit, f) == "train" for f in self.rules.get(group, ()))

    def summary(self) -> dict:
        return {
            g: {
                "tasks": self.tasks.get(g, []),
                "test_units": len(self.forbidden.get(g, ())),
                "rule_fractions": self.rules.get(g, []),
            }
            for g in sorted(set(self.forbidden) | set(self.rules))
        }


# Which evaluation tasks read each source group: (task name, builder name, split rule applies)
_TASKS = {
    "debian": [
        ("DebianPackageRetrieval", "build_debian_retrieval", True),
        ("DebianSectionClassification", "build_debian_section_classification", True),
    ],
    "man": [("ManPageRetrieval", "build_man_retrieval", True)],
    "pydocs": [("PythonDocsRetrieval", "build_python_docs_retrieval", True)],
    "foldoc": [("FoldocRetrieval", "build_foldoc_retrieval", True)],
    "wordnet": [
        ("WordNetNounRetrieval", "build_wordnet_retrieval", True),
        ("WordNetLexnameClustering", "build_wordnet_clustering", True),
    ],
    "brown": [
        ("BrownGenreClassification", "build_brown_classification", False),  # stratified split
        ("BrownGenreClustering", "build_brown_clustering", False),
    ],
}


def split_guard(inputs: dict, tasks_dir: Path | None = None) -> SplitGuard:
    """Run the suite's task builders on the parsed inputs and collect their test units."""
    _, B, _, _ = _suite()
    guard = SplitGuard()
    for group, (items, sources) in inputs.items():
        for task, fn_name, rule in _TASKS.get(group, []):
            fn = getattr(B, fn_name)
            built = fn(items, sources)
            guard.forbidden.setdefault(group, set()).update(built.units.get("test", []))
            if rule:
                guard.rules.setdefault(group, []).append(_default_fraction(fn))
            guard.tasks.setdefault(group, []).append(task)
            cached = Path(tasks_dir) / task / "units.json" if tasks_dir else None
            if cached is not None and cached.is_file():
                guard.forbidden[group].update(json.loads(cached.read_text()).get("test", []))
    return guard


# ---------------------------------------------------------------------------- text helpers


_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str, min_words: int = 6, max_words: int = 60) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        for s in _SENT.split(para):
            s = s.strip()
            if min_words <= len(s.split()) <= max_words and re.search(r"[a-z]", s):
                out.append(s)
    return out


def merge_paragraphs(paragraphs: Iterable[str], min_chars: int, max_chars: int) -> list[str]:
    """Consecutive paragraphs joined until ``min_chars``; each passage cut at ``max_chars``."""
    from benchmarks.mteb_suite.builders import clip

    out, cur = [], ""
    for p in paragraphs:
        p = " ".join(p.split())
        if not p:
            continue
        cur = f"{cur}\n\n{p}" if cur else p
        if len(cur) >= min_chars:
            out.append(clip(cur, max_chars))
            cur = ""
    return out


# ---------------------------------------------------------------------------- Wikipedia sample


def fetch_wiki_sample(cache: Path) -> tuple[Path, dict]:
    """gensim's shortened English Wikipedia dump (test data of the pinned gensim wheel, via pip)."""
    _, _, _, S = _suite()
    version = S.PYPI_PINS["gensim"]
    folder = Path(cache) / "raw" / "pypi" / f"gensim-{version}-enwiki"
    target = folder / WIKI_FILE
    record = folder / "source.json"
    if target.is_file() and record.is_file():
        return target, json.loads(record.read_text())
    import sys
    import zipfile

    dl = folder / "download"
    dl.mkdir(parents=True, exist_ok=True)
    S._run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(dl),
            f"gensim=={version}",
        ],
        what=f"pip download gensim=={version}",
    )
    wheel = sorted(dl.glob("gensim-*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("test_data/" + WIKI_FILE))
        target.write_bytes(z.read(name))
    src = {
        "registry": "pypi",
        "name": "gensim",
        "version": version,
        "pinned": version,
        "file": wheel.name,
        "sha256": S.sha256_file(wheel),
        "extra": {"member": WIKI_FILE, "member_sha256": S.sha256_file(target)},
    }
    record.write_text(json.dumps(src, indent=1))
    for p in dl.iterdir():
        p.unlink()
    dl.rmdir()
    return target, src


def clean_wikitext(text: str) -> list[str]:
    """Plain-text paragraphs of an article's wikitext (templates, tables, refs, files, markup removed)."""
    t = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    t = re.sub(r"<gallery[^>]*>.*?</gallery>", "", t, flags=re.S | re.I)
    t = re.sub(r"<ref[^>/]*/>", "", t)
    t = re.sub(r"<ref[^>]*>.*?</ref>", "", t, flags=re.S)
    for _ in range(5):  # nested templates and tables, innermost first
        t2 = re.sub(r"\{\{[^{}]*\}\}", "", t)
        t2 = re.sub(r"\{\|[^{}]*?\|\}", "", t2, flags=re.S)
        if t2 == t:
            break
        t = t2
    for _ in range(3):  # [[File:...[[link]]...]] images and categories
        t = re.sub(
            r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*(?:\[\[[^\[\]]*\]\][^\[\]]*)*\]\]",
            "",
            t,
        )
    t = re.sub(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]", r"\1", t)  # [[target|label]] -> label
    t = re.sub(r"\[(?:https?|ftp)://\S+\s+([^\]]*)\]", r"\1", t)  # [url label] -> label
    t = re.sub(r"\[(?:https?|ftp)://\S+\]", "", t)
    t = re.sub(r"'{2,}", "", t)
    t = re.sub(r"<[^>]+>", "", t)
    t = (
        t.replace("&nbsp;", " ")
        .replace("&ndash;", "-")
        .replace("&mdash;", "-")
        .replace("&amp;", "&")
    )
    paras = []
    for block in re.split(r"\n\s*\n", t):
        lines = [
            ln
            for ln in block.splitlines()
            if ln.strip()
            and not ln.lstrip().startswith(
                ("=", "*", "#", ":", ";", "|", "!", "{", "}", "File:", "Image:")
            )
        ]
        p = " ".join(" ".join(lines).split())
        if len(p) >= 100 and p.count(" ") >= 15:
            paras.append(p)
    return paras


def wiki_pages(path: Path) -> Iterable[tuple[str, str]]:
    """(title, wikitext) of the articles (namespace 0, not redirects) in a MediaWiki XML dump."""
    with bz2.open(path, "rb") as f:
        title, ns, redirect = None, None, False
        for _, el in ET.iterparse(f, events=("end",)):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "title":
                title = el.text
            elif tag == "ns":
                ns = el.text
            elif tag == "redirect":
                redirect = True
            elif tag == "text" and ns == "0" and not redirect and el.text and title:
                yield title, el.text
            elif tag == "page":
                title, ns, redirect = None, None, False
                el.clear()


# ---------------------------------------------------------------------------- items from sources


def _rec(text: str, source: str, unit: str, **kw) -> dict:
    return {"text": text, "source": source, "unit": unit, **kw}


def passages_from(
    inputs: dict,
    guard: SplitGuard,
    min_chars: int = 1000,
    max_chars: int = 2500,
    wiki: Path | None = None,
) -> list[dict]:
    """CTKD passages (allowed units only), deduplicated."""
    _, B, P, _ = _suite()
    out: list[dict] = []
    if "pydocs" in inputs:
        for s in inputs["pydocs"][0]:
            if len(s.body) >= min_chars and guard.allowed("pydocs", s.page):
                out.append(_rec(B.clip(s.body, max_chars), "pydocs", s.page))
    if "man" in inputs:
        for p in inputs["man"][0]:
            if len(p.description) >= min_chars and guard.allowed("man", p.unit):
                out.append(_rec(B.clip(p.description, max_chars), "man", p.unit))
    if "debian" in inputs:
        for p in inputs["debian"][0]:
            if len(p.long) >= min_chars and guard.allowed("debian", p.source):
                out.append(_rec(B.clip(p.long, max_chars), "debian", p.source))
    if "foldoc" in inputs:
        for e in inputs["foldoc"][0]:
            d = P.foldoc_definition(e)
            unit = f"foldoc:{e.offset}"
            if len(d) >= min_chars and guard.allowed("foldoc", unit):
                out.append(_rec(B.clip(d, max_chars), "foldoc", unit))
    if "brown" in inputs:
        for s in inputs["brown"][0]:
            if guard.allowed("brown", s.sample):
                out.extend(
                    _rec(t, "brown", s.sample)
                    for t in merge_paragraphs(s.paragraphs, min_chars, max_chars)
                )
    if wiki is not None:
        for title, text in wiki_pages(wiki):
            out.extend(
                _rec(t, "wiki", f"wiki:{title}")
                for t in merge_paragraphs(clean_wikitext(text), min_chars, max_chars)
            )
    return _dedupe(out, "text")


def sentences_from(
    passages: list[dict],
    inputs: dict,
    guard: SplitGuard,
    max_sentences: int = 200_000,
    seed: int = SEED,
) -> list[dict]:
    out = [_rec(s, p["source"], p["unit"]) for p in passages for s in sentences(p["text"])]
    if "wordnet" in inputs:
        for s in inputs["wordnet"][0]:
            if len(s.definition.split()) >= 6 and guard.allowed("wordnet", s.offset):
                out.append(_rec(s.definition, "wordnet", s.offset))
    out = _dedupe(out, "text")
    if len(out) > max_sentences:
        out = random.Random(seed).sample(out, max_sentences)
    return out


def pairs_from(
    inputs: dict, guard: SplitGuard, max_per_source: int | None = 20000, seed: int = SEED
) -> list[dict]:
    """(query, positive) pairs shaped like the evaluation tasks, from allowed units only."""
    _, B, _, _ = _suite()
    by: dict[str, list[dict]] = defaultdict(list)

    def add(source, unit, query, doc):
        if query and doc and query.strip() and doc.strip() and guard.allowed(source, unit):
            by[source].append(
                {
                    "query": query.strip(),
                    "positive": B.clip(doc.strip()),
                    "source": source,
                    "unit": unit,
                }
            )

    if "debian" in inputs:
        for p in inputs["debian"][0]:
            if B._debian_usable(p):
                add("debian", p.source, p.short, p.long)
    if "man" in inputs:
        for p in inputs["man"][0]:
            if len(p.description) >= 40:
                add("man", p.unit, B.man_query(p.name_line), p.description)
    if "pydocs" in inputs:
        for s in inputs["pydocs"][0]:
            if len(s.body) >= 100:
                page, title = B._unnumber(s.page_title), B._unnumber(s.title)
                add(
                    "pydocs",
                    s.page,
                    page if s.title == s.page_title else f"{page}: {title}",
                    s.body,
                )
    if "foldoc" in inputs:
        for unit, term, masked in B.foldoc_items(inputs["foldoc"][0]):
            add("foldoc", unit, term, masked)
    if "wordnet" in inputs:
        for s in inputs["wordnet"][0]:
            if len(s.definition) >= 10:
                add("wordnet", s.offset, s.lemmas[0], s.definition)
    rng = random.Random(seed)
    out = []
    for source in sorted(by):
        rows = _dedupe(by[source], "positive")
        if max_per_source and len(rows) > max_per_source:
            rows = rng.sample(rows, max_per_source)
        out.extend(rows)
    return out


def _dedupe(rows: list[dict], key: str) -> list[dict]:
    """First row per distinct ``key`` value."""
    seen, out = set(), []
    for r in rows:
        k = r[key]
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


# ---------------------------------------------------------------------------- hard negatives


def _pick(
    candidates: Sequence[int],
    pair_index: int,
    pairs: list[dict],
    docs: list[str],
    doc_units: list[str],
    pool: int,
    rng: random.Random,
) -> tuple[int, int] | None:
    """A random one of the first ``pool`` candidates that is neither the positive nor from its unit."""
    pos, unit = pairs[pair_index]["positive"], pairs[pair_index].get("unit")
    ok = [
        (rank, c)
        for rank, c in enumerate(candidates)
        if c >= 0 and docs[c] != pos and (unit is None or doc_units[c] != unit)
    ][:pool]
    if not ok:
        return None
    rank, c = rng.choice(ok)
    return c, rank


def mine_bm25(
    pairs: list[dict],
    *,
    k: int = 30,
    pool: int = 5,
    seed: int = SEED,
    extra_docs: Sequence[dict] = (),
) -> tuple[list[dict], Counter]:
    """Add ``negative`` (and ``negative_rank``) to each pair, mined by BM25 within its source."""
    import bm25s
    import Stemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    stemmer = Stemmer.Stemmer("english")
    rng = random.Random(seed)
    stats: Counter = Counter()
    out: list[dict] = []
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by[p.get("source", "")].append(i)
    for source, idx in sorted(by.items()):
        group = [pairs[i] for i in idx]
        docs, units = [], []
        seen = set()
        for p in group + [d for d in extra_docs if d.get("source", "") == source]:
            text = p.get("positive") or p.get("text")
            if text and text not in seen:
                seen.add(text)
                docs.append(text)
                units.append(p.get("unit"))
        if len(docs) < 2:
            stats["no_candidates"] += len(group)
            continue
        retriever = bm25s.BM25()
        retriever.index(
            bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False),
            show_progress=False,
        )
        q_tokens = bm25s.tokenize(
            [p["query"] for p in group],
            stopwords="en",
            stemmer=stemmer,
            show_progress=False,
            return_ids=False,
        )
        kk = min(k, len(docs))
        ranked: list[list[int]] = []
        for start in range(0, len(q_tokens), 512):
            chunk = [
                q if q else ["the"] for q in q_tokens[start : start + 512]
            ]  # all-stopword queries
            res, scores = retriever.retrieve(chunk, k=kk, show_progress=False, n_threads=0)
            for row, srow in zip(res, scores):
                ranked.append([int(c) if s > 0 else -1 for c, s in zip(row, srow)])
        for j, p in enumerate(group):
            got = _pick(ranked[j], j, group, docs, units, pool, rng)
            if got is None:  # no lexical neighbour: a random document of the same source
                cands = [
                    c
                    for c in range(len(docs))
                    if docs[c] != p["positive"] and units[c] != p.get("unit")
                ]
                if not cands:
                    stats["no_candidates"] += 1
                    continue
                got = (rng.choice(cands), -1)
                stats["random"] += 1
            else:
                stats["bm25"] += 1
            out.append(
                {**p, "negative": docs[got[0]], "negative_rank": got[1], "negative_by": "bm25"}
            )
    return out, stats


def mine_with_encoder(
    pairs: list[dict],
    encoder,
    *,
    k: int = 30,
    pool: int = 5,
    seed: int = SEED,
    batch_size: int = 32,
    max_ratio: float | None = 0.95,
) -> tuple[list[dict], Counter]:
    """Hard negatives ranked by a compsearch encoder (query embedding vs document embeddings).

    A candidate that the encoder scores above ``max_ratio`` times the positive's own score is taken
    for a false negative (another passage that answers the query, e.g. a near-copy in another unit)
    and skipped (counted in ``false_negatives``); None keeps every candidate. 0.95 is the positive-aware
    threshold NV-Retriever (Moreira et al., 2024) found best."""
    import numpy as np

    rng = random.Random(seed)
    stats: Counter = Counter()
    out = []
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by[p.get("source", "")].append(i)
    for source, idx in sorted(by.items()):
        group = [pairs[i] for i in idx]
        docs = list(dict.fromkeys(p["positive"] for p in group))
        units = {}
        for p in group:
            units.setdefault(p["positive"], p.get("unit"))
        doc_units = [units[d] for d in docs]
        if len(docs) < 2:
            stats["no_candidates"] += len(group)
            continue
        d = encoder.encode(docs, kind="document", batch_size=batch_size)
        q = encoder.encode([p["query"] for p in group], kind="query", batch_size=batch_size)
        kk = min(k, len(docs))
        row_of = {text: n for n, text in enumerate(docs)}
        for start in range(0, len(group), 1024):
            scores = q[start : start + 1024] @ d.T
            top = np.argsort(-scores, axis=1)[:, :kk]
            for j, row in enumerate(top, start):
                pos = row_of[group[j]["positive"]]
                cands = [c for c in row if c != pos]
                if max_ratio is not None:
                    s_row, s_pos = scores[j - start], scores[j - start, pos]
                    limit = s_pos - (1 - max_ratio) * abs(s_pos)  # max_ratio * s_pos when s_pos > 0
                    kept = [c for c in cands if s_row[c] <= limit]
                    stats["false_negatives"] += len(cands) - len(kept)
                    cands = kept
                got = _pick(cands, j, group, docs, doc_units, pool, rng)
                if got is None:
                    stats["no_candidates"] += 1
                    continue
                stats["model"] += 1
                out.append(
                    {
                        **group[j],
                        "negative": docs[got[0]],
                        "negative_rank": got[1],
                        "negative_by": f"encoder:{getattr(encoder, 'fingerprint', '')[:12]}",
                    }
                )
    return out, stats


def mine_file(
    pairs_path: str,
    out_path: str,
    *,
    encoder: str | None = None,
    corpus: str | None = None,
    seed: int = SEED,
    max_ratio: float | None = 0.95,
) -> dict:
    """``python -m training mine``: read pairs JSONL, add hard negatives, write JSONL."""
    from collections import Counter as C

    from .data import iter_records, normalize_spec

    pairs = [r for r in iter_records(normalize_spec(pairs_path), "error", C())]
    for r in pairs:
        r.pop("_where", None)
    extra = []
    if corpus:
        extra = [r for r in iter_records(normalize_spec(corpus), "error", C())]
    if encoder:
        from compsearch import Encoder

        rows, stats = mine_with_encoder(
            pairs, Encoder.load(encoder), seed=seed, max_ratio=max_ratio
        )
    else:
        rows, stats = mine_bm25(pairs, seed=seed, extra_docs=extra)
    _write_jsonl(Path(out_path), rows)
    return {"pairs": len(pairs), "written": len(rows), **stats}


# ---------------------------------------------------------------------------- writing


def _write_jsonl(path: Path, rows: Iterable[dict]) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n, by = 0, Counter()
    h = hashlib.sha256()
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            line = json.dumps(r, ensure_ascii=False) + "\n"
            f.write(line)
            h.update(line.encode())
            n += 1
            by[r.get("source", "")] += 1
    tmp.replace(path)
    return {"records": n, "sha256": h.hexdigest(), "by_source": dict(sorted(by.items()))}


def check_outputs(files: dict[str, list[dict]], guard: SplitGuard) -> dict:
    """Raise if any training record comes from an evaluation test unit or a reserved source."""
    bad = []
    for name, rows in files.items():
        for r in rows:
            src, unit = r.get("source", ""), r.get("unit", "")
            group = src.split(":")[-1]
            if group in guard.forbidden or group in guard.rules:
                if not guard.allowed(group, unit):
                    bad.append((name, src, unit))
            if re.search(r"(^|/)faq/|perl-doc", unit):
                bad.append((name, src, unit))
            if name != "heldout.jsonl" and is_heldout(unit):
                bad.append((name, src, unit))
    if bad:
        raise AssertionError(
            f"{len(bad)} training records from evaluation/held-out units, e.g. {bad[:3]}"
        )
    return {"checked_records": sum(len(v) for v in files.values()), "leaks": 0}


def build_from_inputs(
    inputs: dict,
    out: Path,
    *,
    sources: list[dict],
    tasks_dir: Path | None = None,
    wiki: Path | None = None,
    max_pairs_per_source: int | None = 20000,
    seed: int = SEED,
    min_passage_chars: int = 1000,
) -> dict:
    """Build every file from parsed inputs ({group: (items, sources)}); returns the manifest."""
    t0 = time.time()
    guard = split_guard(inputs, tasks_dir)
    passages = passages_from(inputs, guard, min_chars=min_passage_chars, wiki=wiki)
    sents = sentences_from(passages, inputs, guard, seed=seed)
    pairs = pairs_from(inputs, guard, max_per_source=max_pairs_per_source, seed=seed)

    def split(rows):
        keep, held = [], []
        for r in rows:
            (held if is_heldout(r["unit"]) else keep).append(r)
        return keep, held

    passages, held_p = split(passages)
    sents, _ = split(sents)
    pairs, held_q = split(pairs)
    triples, mining = mine_bm25(pairs, seed=seed)
    heldout = held_p + [_rec(p["positive"], p["source"], p["unit"]) for p in held_q]
    heldout = random.Random(seed).sample(heldout, min(len(heldout), 2000))
    files = {
        "ctkd.jsonl": passages,
        "ucl.jsonl": sents,
        "scl.jsonl": triples,
        "heldout.jsonl": heldout,
    }
    check = check_outputs(files, guard)
    out = Path(out)
    written = {name: _write_jsonl(out / name, rows) for name, rows in files.items()}
    import benchmarks.mteb_suite.builders as B

    manifest = {
        "builder": "training.builders",
        "builder_version": BUILDER_VERSION,
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "suite_builder_version": B.BUILDER_VERSION,
        "sources": sources,
        "params": {
            "min_passage_chars": min_passage_chars,
            "max_pairs_per_source": max_pairs_per_source,
            "heldout_fraction": HELDOUT_FRACTION,
            "negatives": "bm25 top-30, one of the first 5 valid",
        },
        "split": {"guard": guard.summary(), "check": check},
        "mining": dict(mining),
        "files": written,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build_all(
    out: str | None = None,
    cache: str | None = None,
    groups: Sequence[str] | None = None,
    max_pairs_per_source: int | None = 20000,
    wiki: bool = True,
) -> dict:
    """Fetch (or reuse) the sources through the evaluation suite and build everything."""
    from .config import default_data_dir

    groups = list(groups or GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise TrainingError(f"unknown source groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
    BD, _, _, S = _suite()
    cache_path = Path(cache).expanduser() if cache else S.cache_dir()
    inp = BD._Inputs(
        cache_path
    )  # the suite's parsed-source memo (fetches pinned packages on first use)
    inputs, sources = {}, []
    for g in groups:
        items, srcs = inp.get(g)
        inputs[g] = (items, srcs)
        sources.extend({"group": g, **s.record()} for s in srcs)
    wiki_path = None
    if wiki:
        wiki_path, rec = fetch_wiki_sample(cache_path)
        sources.append({"group": "wiki", **rec})
    return build_from_inputs(
        inputs,
        Path(out or default_data_dir()).expanduser(),
        sources=sources,
        tasks_dir=cache_path / "tasks",
        wiki=wiki_path,
        max_pairs_per_source=max_pairs_per_source,
    )
