"""Question-shaped training pairs at scale, from real sources, split against every evaluation task.

The SCL data of ``training.builders`` is dominated by single-word WordNet and FOLDOC queries, while
users type titles and questions and expect long answers. This module builds (query, positive)
pairs whose queries look like what a user asks and whose positives are real, long passages:

- ``sections``: a heading or title -> its section's text, from the HTML manuals of many pinned
  Debian ``-doc`` packages (``DOC_PACKAGES``), read through the evaluation suite's fetcher and its
  HTML section splitter (``benchmarks.mteb_suite.faq.html_sections``);
- ``code``: a docstring's first sentence -> the function's or class's source with the docstring
  removed, from this Python's standard library and installed packages (``ast``); code search is a
  real use of ``compsearch index ./repo``;
- ``manopt``: a man-page option's first sentence -> the option's flags and the rest of its
  paragraph, from the troff sources of the suite's pinned man-page packages.

Never read (``excluded_file``): every file of the ``FaqRetrieval`` dev task and any other FAQ file
(a path containing "faq"), Python's ``faq/`` pages and ``perl-doc`` (reserved). Man pages on the
test side of ``ManPageRetrieval`` (its ``unit_split`` rule and the test units of a built task) are
skipped, also where a manual ships the same page as HTML. The other evaluation tasks read
different text (package descriptions, dictionaries, the Python HTML docs, Brown, gensim).

Every record is ``{query, positive, source, unit, package, split}``; ``split`` ("train" or "val")
is a pure function of the unit (sha256 with ``SEED``). Rows are deduplicated by positive and by
(query, positive), and capped per source with a fixed seed. ``python -m training.qdata build --out
DIR`` writes ``qdata.jsonl`` and ``manifest.json`` (counts per source, every package's version,
sha256 of the output); ``--mine`` also writes ``qdata-scl.jsonl``: train rows with one BM25 hard
negative from the same source (``training.builders.mine_bm25``), the shape the SCL loader reads.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

QDATA_VERSION = 1
SEED = 4243
VAL_FRACTION = 0.02
MAX_PER_SOURCE = 20000
MIN_POSITIVE = 120

# Debian bookworm packages with HTML manuals, pinned (many sections each).
DOC_PACKAGES: dict[str, str] = {
    "debian-reference-en": "2.100",
    "debian-handbook": "11.20220922",
    "developers-reference": "12.18",
    "maint-guide": "1.2.53",
    "debian-policy": "4.6.2.0",
    "postgresql-doc-15": "15.20-0+deb12u1",
    "apache2-doc": "2.4.71-1~deb12u1",
    "cmake-doc": "3.25.1-1",
    "python-django-doc": "3:3.2.25-0+deb12u7",
    "sphinx-doc": "5.3.0-4",
    "python-sqlalchemy-doc": "1.4.46+ds1-1",
    "python-flask-doc": "2.2.2-3",
    "clang-14-doc": "1:14.0.6-12",
    "llvm-14-doc": "1:14.0.6-12",
    "r-doc-html": "4.2.2.20221110-2",
    "octave-doc": "7.3.0-2",
    "bash-doc": "5.2.15-2",
    "gimp-help-en": "2.10.34-2",
    "git-doc": "1:2.39.5-0+deb12u3",
    "zsh-doc": "5.9-4",
    "ffmpeg-doc": "7:5.1.9-0+deb12u1",
    "sqlite3-doc": "3.40.1-2+deb12u2",
}
# More pinned packages with man pages for option pairs (besides the suite's MAN_PACKAGES, train pages only).
MANOPT_PACKAGES: dict[str, str] = {
    "curl": "7.88.1-10+deb12u15",
    "rsync": "3.5.0+ds1-0+deb12u1",
    "openssh-client": "1:9.2p1-2+deb12u10",
    "tmux": "3.3a-3",
    "systemd": "252.39-1~deb12u2",
    "gpg": "2.2.40-1.1+deb12u2",
    "wget": "1.21.3-1+deb12u1",
    "git": "1:2.39.5-0+deb12u3",
    "ffmpeg": "7:5.1.9-0+deb12u1",
    "e2fsprogs": "1.47.0-2+b2",
    "openssl": "3.0.22-1~deb12u2",
    "lvm2": "2.03.16-2",
}
# Installed distributions whose Python sources give docstring -> code pairs (plus the stdlib).
PY_DISTRIBUTIONS = (
    "transformers",
    "datasets",
    "mteb",
    "sentence-transformers",
    "peft",
    "scikit-learn",
    "scipy",
    "pandas",
    "numpy",
    "networkx",
    "sympy",
    "rich",
    "click",
    "jinja2",
    "requests",
    "urllib3",
    "pip",
    "setuptools",
    "pydantic",
    "fsspec",
    "huggingface-hub",
    "tqdm",
    "pyarrow",
    "aiohttp",
)

KINDS = ("sections", "code", "manopt")
_GENERIC = frozenset(
    x.strip()
    for x in """name, synopsis, description, options, examples, example, see also,
notes, note, bugs, author, authors, copyright, history, files, environment, return value, return values, exit status,
introduction, overview, contents, table of contents, index, summary, parameters, arguments, usage, details,
reference, references, conventions, license, footnotes, errors, warnings, caveats, availability, attributes,
methods, functions, changes, next topic, previous topic, this page, quick search, navigation, related topics,
search, table of contents, see also, further reading, module contents, indices and tables, other formats,
show source, about this document, legal notice""".split(",")
)


# ---------------------------------------------------------------------------- exclusions


def excluded_file(package: str, rel: str) -> bool:
    """True for files training must never read: the dev task's, any FAQ, reserved sources."""
    from benchmarks.mteb_suite import builders as B
    from benchmarks.mteb_suite import faq as F

    if package in ("perl-doc", "debian-faq"):
        return True
    if f"{package}:{rel}" in F.training_exclusions()["files"] or "faq" in rel.lower():
        return True
    return any(p.search(rel) or p.search(f"{package}/{rel}") for p in B.RESERVED_PATTERNS)


def man_guard(tasks_dir: Path | None, cache: Path | None = None):
    """A ``training.builders.SplitGuard`` for man pages: ManPageRetrieval's rule and cached test units.

    ``guard.test_stems`` holds the page names (no section) of the task's test pages, computed from
    the pinned man packages (fetched when ``cache`` is given) and the built task's ``units.json``:
    a manual's HTML copy of such a page is skipped too.
    """
    from benchmarks.mteb_suite import builders as B
    from benchmarks.mteb_suite import parse as P
    from benchmarks.mteb_suite import sources as S

    from .builders import SplitGuard, _default_fraction

    guard = SplitGuard(
        rules={"man": [_default_fraction(B.build_man_retrieval)]},
        tasks={"man": ["ManPageRetrieval"]},
    )
    cached = Path(tasks_dir) / "ManPageRetrieval" / "units.json" if tasks_dir else None
    guard.forbidden["man"] = (
        set(json.loads(cached.read_text()).get("test", []))
        if cached and cached.is_file()
        else set()
    )
    units = set(guard.forbidden["man"])
    if cache is not None:
        for name in S.MAN_PACKAGES:
            src = S.deb_package(name, cache)
            units.update(f"{n}.{sec}" for _p, n, sec in P.man_page_files(src.path))
    guard.test_stems = {u.rsplit(".", 1)[0] for u in units if not guard.allowed("man", u)}
    return guard


def _man_stem_allowed(guard, stem: str) -> bool:
    return stem not in getattr(guard, "test_stems", ())


def split_of(unit: str, seed: int = SEED) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}\0{unit}".encode()).digest()[:8], "big") / 2**64
    return "val" if h < VAL_FRACTION else "train"


# ---------------------------------------------------------------------------- (a) headings -> sections


def clean_heading(h: str) -> str:
    h = " ".join(h.replace("\xa0", " ").split())
    h = re.sub(
        r"^(?:(?:Chapter|Section|Appendix|Part)\s+)?(?:[A-Z]\.|[IVX]+\.)?[A-Z]?\d*(?:\.\d+)*[.:)]?\s+",
        "",
        h,
    )
    return h.strip(" -–—:¶#◆")


def usable_heading(h: str) -> bool:
    words = h.split()
    return (
        2 <= len(words) <= 30 and h.lower() not in _GENERIC and bool(re.search(r"[a-zA-Z]{3}", h))
    )


# Translations: a path component that is a language code other than English (html/fr-FR/, manual/ja/).
_LANG_DIR = re.compile(
    r"(^|/)(?!en(?:[-_](?:US|GB))?/)(?:ar|bg|ca|cs|da|de|el|es|fa|fi|fr|he|hr|hu|id|it|ja|ko|nb|nl|"
    r"pl|pt|ro|ru|sk|sl|sr|sv|tr|uk|vi|zh)(?:[-_][A-Za-z]{2,4})?/"
)
_ENGLISH = re.compile(r"\b(the|and|of|to|is|in|for|that|with)\b")


def is_english(text: str) -> bool:
    words = text.split()
    return len(words) >= 10 and len(_ENGLISH.findall(text)) >= 0.06 * len(words)


def html_files(root: Path) -> Iterable[Path]:
    for p in sorted(root.rglob("*")):
        name = p.name.lower()
        if (
            p.is_file()
            and not p.is_symlink()
            and (name.endswith((".html", ".htm", ".html.en", ".xhtml")))
        ):
            rel = str(p.relative_to(root))
            if (
                re.search(r"\.html\.(?!en$)[a-z]{2}", name)
                or _LANG_DIR.search(rel)
                or re.search(r"(^|/)_(modules|sources)/", rel)
            ):
                continue
            yield p


def section_pairs(package: str, root: Path, guard=None, max_positive: int = 3000) -> list[dict]:
    """(heading -> section text) rows of one package's HTML files; ambiguous headings dropped."""
    from benchmarks.mteb_suite.builders import clip
    from benchmarks.mteb_suite.faq import html_sections

    rows = []
    for p in html_files(root):
        rel = str(p.relative_to(root))
        stem = p.name.split(".")[0]
        if excluded_file(package, rel) or (
            guard is not None and not _man_stem_allowed(guard, stem)
        ):
            continue
        try:
            secs = html_sections(p.read_text(encoding="utf-8", errors="replace"))
        except Exception as e:  # noqa: BLE001 - a malformed page is skipped, not fatal
            log.warning("%s: %s", rel, e)
            continue
        for _lvl, heading, _anchor, text in secs:
            q = clean_heading(heading)
            text = re.sub(r"^(Table of )?Contents\n", "", text)
            if usable_heading(q) and len(text) >= MIN_POSITIVE and is_english(text):
                rows.append(
                    {
                        "query": q,
                        "positive": clip(text, max_positive),
                        "source": f"sections:{package}",
                        "unit": f"{package}:{rel}",
                        "package": package,
                    }
                )
    counts = Counter(r["query"].lower() for r in rows)
    return [r for r in rows if counts[r["query"].lower()] <= 3]


# ---------------------------------------------------------------------------- (b) docstring -> code


def first_sentence(doc: str) -> str:
    para = " ".join(re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0].split())
    para = re.split(
        r"\s(?:Args|Arguments|Returns?|Parameters|Raises|Yields|Examples?|Note):", para
    )[0]
    m = re.match(r"(.+?[.!?])(\s|$)", para)
    return (m.group(1) if m else para).strip()


def _usable_summary(s: str) -> bool:
    w = s.split()
    return (
        4 <= len(w) <= 40
        and not re.match(r"^(see|deprecated|todo|alias|same as|copyright)\b", s, re.I)
        and not s.startswith((">>>", ":", "..", "-", "=", "*"))
        and not s.endswith((":", ",", "("))
        and re.search(r"[a-z]{3}", s) is not None
    )


def code_pairs_from_source(
    text: str, unit: str, source: str, package: str, max_positive: int = 3000, min_lines: int = 3
) -> list[dict]:
    """Docstring first sentence -> the def/class source with its docstring removed."""
    from benchmarks.mteb_suite.builders import clip

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    rows = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_") and node.name != "__init__" or not node.body:
            continue
        doc = ast.get_docstring(node)
        first = node.body[0]
        if not doc or not isinstance(first, ast.Expr):
            continue
        query = first_sentence(doc)
        if not _usable_summary(query):
            continue
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        end = node.end_lineno or node.lineno
        keep = lines[start : first.lineno - 1] + lines[(first.end_lineno or first.lineno) : end]
        code = "\n".join(ln for ln in keep).rstrip()
        if sum(1 for ln in keep if ln.strip()) < min_lines:
            continue
        rows.append(
            {
                "query": query,
                "positive": clip(code, max_positive),
                "source": source,
                "unit": f"{unit}:{node.lineno}",
                "file_unit": unit,
                "package": package,
            }
        )
    return rows


def python_roots() -> list[tuple[str, str, Path, list[Path]]]:
    """(name, version, root, files) for the stdlib and each installed PY_DISTRIBUTIONS."""
    import importlib.metadata as md
    import sysconfig

    std = Path(sysconfig.get_paths()["stdlib"])
    skip = re.compile(
        r"(^|/)(test|tests|idlelib|lib2to3|site-packages|turtledemo|ensurepip|_vendor|vendored)(/|$)"
    )
    files = [p for p in sorted(std.rglob("*.py")) if not skip.search(str(p.relative_to(std)))]
    out = [("python-stdlib", sys.version.split()[0], std, files)]
    for name in PY_DISTRIBUTIONS:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        base = Path(dist.locate_file(""))
        fs = [
            base / f
            for f in (dist.files or [])
            if str(f).endswith(".py") and not skip.search(str(f))
        ]
        out.append((name, dist.version, base, sorted(p for p in fs if p.is_file())))
    return out


# ---------------------------------------------------------------------------- (c) man-page options


_TROFF = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\\(em|\\\(en"), "-"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((oq|cq|aq)"), "'"),
    (re.compile(r"\\&|\\:|\\c|\\/|\\,"), ""),
    (re.compile(r"\\e"), "\\"),
    (re.compile(r"\\[|^]"), ""),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\\*\(?\w+"), ""),
]


def troff_text(line: str) -> str:
    """One troff line as plain text (font macros unwrapped, escapes resolved)."""
    m = re.match(r"^\.(B|I|SM|SB|BR|RB|BI|IB|IR|RI)\s+(.*)$", line)
    if m:
        parts = [p.strip('"') for p in re.findall(r'"[^"]*"|\S+', m.group(2))]
        line = (" " if m.group(1) in ("B", "I", "SM", "SB") else "").join(
            parts
        )  # alternating fonts: no spaces
    for rx, rep in _TROFF:
        line = rx.sub(lambda _m, r=rep: r, line)
    return line.strip()


def man_options(troff: str) -> list[tuple[str, str]]:
    """(flags, description) of every option entry whose tag starts with '-'.

    Two layouts: ``.TP``/``.IP`` with the tag on the next line (man-pages, help2man) and the
    tag line followed by an ``.RS`` ... ``.RE`` block (asciidoctor, e.g. util-linux).
    """
    lines = troff.splitlines()
    stop = re.compile(r"^\.(TP|IP|PP|P|LP|SH|SS|RE|RS|TQ|HP)\b")
    out = []
    i = 0
    while i < len(lines):
        ip_tag = re.match(r'^\.IP\s+"?([^"]+)"?', lines[i])
        if re.match(r"^\.(TP|IP)\b", lines[i]) and i + 1 < len(lines):
            tag_line, j = (ip_tag.group(1), i + 1) if ip_tag else (lines[i + 1], i + 2)
            end = stop
        elif (
            not lines[i].startswith(".")
            and i + 1 < len(lines)
            and lines[i + 1].startswith(".RS")
            and troff_text(lines[i]).startswith("-")
        ):
            tag_line, j, end = lines[i], i + 2, re.compile(r"^\.(RE|SH|SS)\b")
        else:
            i += 1
            continue
        body = []
        while j < len(lines) and not end.match(lines[j]):
            ln = lines[j]
            if not ln.startswith(('.\\"', "'\\\"")) and not re.match(
                r"^\.(br|sp|in|ne|ti|nf|fi|PD|RS|RE)\b", ln
            ):
                body.append(troff_text(ln))
            j += 1
        tag, desc = troff_text(tag_line), " ".join(" ".join(body).split())
        if tag.startswith("-") and desc:
            out.append((tag, desc))
        i = j
    return out


def manopt_pairs(package: str, root: Path, guard=None, min_rest: int = 60) -> list[dict]:
    """Option's first sentence -> flags + the rest of its paragraph (pages on the man test side skipped).

    Pages of the suite's MAN_PACKAGES must be on ManPageRetrieval's train side; pages of other
    packages only must not share a name with one of its test pages.
    """
    from benchmarks.mteb_suite import parse as P
    from benchmarks.mteb_suite import sources as S

    rows = []
    for path, name, section in P.man_page_files(root):
        unit = f"{name}.{section}"
        if guard is not None and not (
            guard.allowed("man", unit)
            if package in S.MAN_PACKAGES
            else _man_stem_allowed(guard, name)
        ):
            continue
        try:
            troff = P.read_text_file(path)
        except OSError:
            continue
        for flags, desc in man_options(troff):
            q = first_sentence(desc)
            rest = desc[len(q) :].strip()
            if len(q.split()) >= 4 and len(rest) >= min_rest:
                rows.append(
                    {
                        "query": q,
                        "positive": f"{flags}\n{rest}",
                        "source": f"manopt:{package}",
                        "unit": f"man:{unit}",
                        "package": package,
                    }
                )
    return rows


# ---------------------------------------------------------------------------- split, dedupe, cap


def finalize(
    rows: list[dict], max_per_source: int | None = MAX_PER_SOURCE, seed: int = SEED
) -> list[dict]:
    """Deduplicate (by positive, then by query+positive), cap per source, add the unit's split."""
    by: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for r in rows:
        key = " ".join(r["positive"].split())
        if key in seen or r["query"].strip().lower() == key.lower():
            continue
        seen.add(key)
        by[r["source"]].append(r)
    rng = random.Random(seed)
    out = []
    for source in sorted(by):
        group = by[source]
        if max_per_source and len(group) > max_per_source:
            group = rng.sample(group, max_per_source)
        for r in group:
            out.append({**r, "split": split_of(r.get("file_unit", r["unit"]), seed)})
    return out


def faq_windows(tasks_dir: Path | None, cache: Path | None, width: int = 80) -> set[str]:
    """Every ``width``-character window of the FaqRetrieval answers (whitespace collapsed)."""
    from benchmarks.mteb_suite import builders as B
    from benchmarks.mteb_suite import faq as F

    corpus = Path(tasks_dir) / F.TASK_NAME / "corpus.jsonl" if tasks_dir else None
    if corpus is not None and corpus.is_file():
        texts = [r["text"] for r in B.jsonl_read(corpus)]
    else:
        texts = [B.clip(e.answer) for e in F.keep_entries(F.faq_sources(cache)[0])]
    out = set()
    for t in texts:
        t = " ".join(t.split())
        out.update(t[i : i + width] for i in range(max(1, len(t) - width + 1)))
    return out


def decontaminate(rows: list[dict], windows: set[str], width: int = 80) -> tuple[list[dict], int]:
    """Drop rows whose positive shares a ``width``-character window with a dev-task answer."""
    keep = []
    for r in rows:
        t = " ".join(r["positive"].split())
        if not any(
            t[i : i + width] in windows for i in range(0, max(1, len(t) - width + 1), width // 2)
        ):
            keep.append(r)
    return keep, len(rows) - len(keep)


def check_rows(rows: Iterable[dict], guard=None) -> dict:
    """Raise if a row comes from an excluded file or a ManPageRetrieval test page."""
    from benchmarks.mteb_suite import sources as S

    bad = []
    n = 0
    for r in rows:
        n += 1
        unit = r["unit"]
        if r["source"].startswith("sections:"):
            pkg, rel = unit.split(":", 1)
            if excluded_file(pkg, rel):
                bad.append(unit)
        if guard is not None and unit.startswith("man:"):
            page = unit[4:]
            ok = (
                guard.allowed("man", page)
                if r.get("package") in S.MAN_PACKAGES
                else _man_stem_allowed(guard, page.rsplit(".", 1)[0])
            )
            if not ok:
                bad.append(unit)
        if re.search(r"(^|/)faq/|perl-doc", unit, re.I):
            bad.append(unit)
    if bad:
        raise AssertionError(
            f"{len(bad)} rows from excluded files or evaluation units, e.g. {bad[:3]}"
        )
    return {"checked_rows": n, "leaks": 0}


# ---------------------------------------------------------------------------- build


def _sha256_files(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _write_jsonl(path: Path, rows: list[dict]) -> dict:
    from .builders import _write_jsonl as write

    return write(path, rows)


def build(
    out: str | Path,
    cache: str | Path | None = None,
    kinds: Iterable[str] = KINDS,
    max_per_source: int | None = MAX_PER_SOURCE,
    mine: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Fetch (or reuse) every source, build the pairs, write qdata.jsonl + manifest.json."""
    from benchmarks.mteb_suite import sources as S

    t0 = time.time()
    kinds = list(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    cache_path = Path(cache).expanduser() if cache else S.cache_dir()
    needs_man = bool({"sections", "manopt"} & set(kinds))
    guard = man_guard(cache_path / "tasks", cache_path if needs_man else None)
    rows: list[dict] = []
    sources: list[dict] = []
    step = progress or (lambda what, i, n: None)
    jobs: list[tuple[str, str]] = []
    if "sections" in kinds:
        jobs += [("sections", p) for p in DOC_PACKAGES]
    if "manopt" in kinds:
        jobs += [("manopt", p) for p in [*S.MAN_PACKAGES, *MANOPT_PACKAGES]]
    py = python_roots() if "code" in kinds else []
    jobs += [("code", name) for name, *_ in py]
    pyinfo = {name: (ver, root, files) for name, ver, root, files in py}
    for i, (kind, name) in enumerate(jobs):
        step(f"{kind}: {name}", i, len(jobs))
        if kind == "code":
            ver, root, files = pyinfo[name]
            got = []
            for f in files:
                rel = str(f.relative_to(root))
                got += code_pairs_from_source(
                    f.read_text(encoding="utf-8", errors="replace"),
                    f"{name}:{rel}",
                    f"code:{name}",
                    name,
                )
            sources.append(
                {
                    "kind": kind,
                    "registry": "python" if name == "python-stdlib" else "pypi (installed)",
                    "name": name,
                    "version": ver,
                    "files": len(files),
                    "sha256": _sha256_files(files),
                }
            )
        else:
            pin = (
                DOC_PACKAGES.get(name)
                if kind == "sections"
                else S.DEB_PINS.get(name, MANOPT_PACKAGES.get(name))
            )
            src = S.deb_package(name, cache_path, pin=pin)
            got = (
                section_pairs(name, src.path, guard)
                if kind == "sections"
                else manopt_pairs(name, src.path, guard)
            )
            sources.append({"kind": kind, **src.record()})
        rows.extend(got)
    step("dedupe, decontaminate, cap, split", len(jobs), len(jobs))
    rows, dropped = decontaminate(rows, faq_windows(cache_path / "tasks", cache_path))
    rows = finalize(rows, max_per_source)
    check = check_rows(rows, guard)
    out = Path(out).expanduser()
    files = {"qdata.jsonl": _write_jsonl(out / "qdata.jsonl", rows)}
    mining = {}
    if mine:
        from .builders import mine_bm25

        step("BM25 hard negatives", len(jobs), len(jobs))
        # negatives come from the same source (one manual, one code base); option rows of one man page
        # would have none (same-unit candidates are skipped), so all man option rows are one pool
        train = [
            {
                **{k: v for k, v in r.items() if k != "file_unit"},
                "_source": r["source"],
                "source": "manopt" if r["source"].startswith("manopt:") else r["source"],
            }
            for r in rows
            if r["split"] == "train"
        ]
        triples, stats = mine_bm25(train, seed=SEED)
        triples = [
            {**{k: v for k, v in t.items() if k != "_source"}, "source": t["_source"]}
            for t in triples
        ]
        files["qdata-scl.jsonl"] = _write_jsonl(out / "qdata-scl.jsonl", triples)
        mining = dict(stats)
    by_kind = Counter(r["source"].split(":")[0] for r in rows)
    manifest = {
        "builder": "training.qdata",
        "builder_version": QDATA_VERSION,
        "seed": SEED,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": sources,
        "params": {
            "kinds": kinds,
            "max_per_source": max_per_source,
            "val_fraction": VAL_FRACTION,
            "min_positive_chars": MIN_POSITIVE,
            "max_positive_chars": 3000,
        },
        "counts": {
            "by_kind": dict(sorted(by_kind.items())),
            "by_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        },
        "split": {
            "excluded": "dev task FAQ files, any *faq* path, Python faq/, perl-doc; ManPageRetrieval test pages",
            "man_guard": guard.summary(),
            "check": check,
            "dropped_sharing_text_with_faq_answers": dropped,
        },
        "mining": mining,
        "files": files,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.qdata", description=__doc__.split("\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build qdata.jsonl + manifest.json")
    b.add_argument("--out", required=True)
    b.add_argument(
        "--cache", default=None, help="the offline suite's cache (default: its own default)"
    )
    b.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}"
    )
    b.add_argument("--max-per-source", type=int, default=MAX_PER_SOURCE)
    b.add_argument(
        "--mine", action="store_true", help="also write qdata-scl.jsonl with BM25 hard negatives"
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    kinds = [k for k in a.kinds.split(",") if k]
    if set(kinds) - set(KINDS):
        print(
            f"error: unknown kinds {sorted(set(kinds) - set(KINDS))}; known: {', '.join(KINDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        with Progress(
            TextColumn("{task.description:40s}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as bar:
            task = bar.add_task("starting", total=None)

            def progress(what, i, n):
                bar.update(task, description=what, completed=i, total=n)

            m = build(a.out, a.cache, kinds, a.max_per_source, a.mine, progress)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "counts": m["counts"],
                "files": {k: v["records"] for k, v in m["files"].items()},
                "seconds": m["seconds"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
