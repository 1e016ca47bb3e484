"""``build``: fetch every source, parse it, build every task, cache the result.

One command rebuilds the suite: ``python -m benchmarks.mteb_suite build`` (``--force`` rebuilds
tasks already cached; ``--refresh-lists`` re-runs ``apt-get update``). Sources and tasks are cached
under ``$COMPSEARCH_BENCH_CACHE`` (default ``~/.cache/compsearch/benchmarks``): ``raw/`` holds the
extracted packages, ``tasks/<TaskName>/`` the task data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import builders as B
from . import faq as FAQ
from . import parse as P
from . import sources as S

log = logging.getLogger(__name__)


class _Inputs:
    """Parsed sources, fetched and parsed at most once per build."""

    def __init__(self, cache: Path, refresh_lists: bool = False) -> None:
        self.cache = cache
        self.refresh_lists = refresh_lists
        self._memo: dict[str, tuple] = {}

    def get(self, group: str) -> tuple:
        if group not in self._memo:
            t = time.time()
            self._memo[group] = getattr(self, f"_{group}")()
            log.info("source group %s ready in %.1fs", group, time.time() - t)
        return self._memo[group]

    def _debian(self):
        lists = S.apt_lists(self.cache, refresh=self.refresh_lists)
        pkgs = P.read_debian_packages(lists.extra["packages_file"], lists.extra["translation_file"])
        return pkgs, [lists]

    def _man(self):
        srcs = [S.deb_package(name, self.cache) for name in S.MAN_PACKAGES]
        pages, seen = [], set()
        for src in srcs:
            for page in self._rendered(src):
                if page.unit in seen:  # the same page from a later package: keep the first
                    continue
                seen.add(page.unit)
                pages.append(page)
        return pages, srcs

    def _rendered(self, src: S.Source) -> list[P.ManPage]:
        """A package's pages rendered once (man -l | col -bx), remembered next to its extracted tree."""
        memo = src.path.parent / f"man_pages.{src.version}.jsonl"
        if memo.is_file():
            return [P.ManPage(**r) for r in B.jsonl_read(memo)]
        jobs = [
            (path, f"{name}.{section}", section)
            for path, name, section in P.man_page_files(src.path)
        ]

        def render(job):
            path, unit, section = job
            return P.parse_man_page(P.render_man(path), unit, src.name, section)

        with ThreadPoolExecutor(max_workers=2) as ex:
            pages = [p for p in ex.map(render, jobs) if p is not None]
        B._jsonl_write(memo, (vars(p) for p in pages))
        return pages

    def _pydocs(self):
        src = S.deb_package("python3.11-doc", self.cache)
        html_root = src.path / "usr" / "share" / "doc" / "python3.11" / "html"
        if not (html_root / "library").is_dir():
            raise S.SourceError(f"python3.11-doc has no html/library under {html_root}")
        sections = []
        for path, rel in P.python_doc_pages(html_root):
            sections.extend(
                P.sphinx_sections(path.read_text(encoding="utf-8", errors="replace"), rel)
            )
        return sections, [src]

    def _foldoc(self):
        src = S.deb_package("dict-foldoc", self.cache)
        d = src.path / "usr" / "share" / "dictd"
        return P.read_dictd(d / "foldoc.index", d / "foldoc.dict.dz"), [src]

    def _wordnet(self):
        src = S.deb_package("wordnet-base", self.cache)
        return P.read_wordnet_nouns(src.path / "usr" / "share" / "wordnet" / "data.noun"), [src]

    def _brown(self):
        src = S.brown_corpus(self.cache)
        return P.read_brown(src.path), [src]

    def _faq(self):
        return FAQ.faq_sources(self.cache)

    def _gensim(self):
        src = S.gensim_test_data(self.cache)
        lee = P.read_lee(src.path / "lee.cor", src.path / "similarities0-1.txt")
        ws = P.read_word_pairs(src.path / "wordsim353.tsv")
        sl = P.read_word_pairs(src.path / "simlex999.txt")
        return (lee, ws, sl), [src]


def _lee(inp: _Inputs) -> B.TaskData:
    (lee, _, _), srcs = inp.get("gensim")
    return B.build_lee_sts(lee[0], lee[1], srcs)


def _wordsim(inp: _Inputs) -> B.TaskData:
    (_, ws, _), srcs = inp.get("gensim")
    return B.build_word_sts(
        "WordSim353STS",
        ws,
        srcs,
        "WordSim-353 (gensim test data): similarity of 353 English word pairs, 0-10. Evaluation only.",
    )


def _simlex(inp: _Inputs) -> B.TaskData:
    (_, _, sl), srcs = inp.get("gensim")
    return B.build_word_sts(
        "SimLex999STS",
        sl,
        srcs,
        "SimLex-999 (gensim test data): similarity (not relatedness) of 999 English word pairs, "
        "0-10. Evaluation only.",
    )


# name -> (type, builder). The order is the order of the report.
TASKS: dict[str, tuple[str, Callable[[_Inputs], B.TaskData]]] = {
    "DebianPackageRetrieval": ("Retrieval", lambda i: B.build_debian_retrieval(*i.get("debian"))),
    "ManPageRetrieval": ("Retrieval", lambda i: B.build_man_retrieval(*i.get("man"))),
    "PythonDocsRetrieval": ("Retrieval", lambda i: B.build_python_docs_retrieval(*i.get("pydocs"))),
    "FoldocRetrieval": ("Retrieval", lambda i: B.build_foldoc_retrieval(*i.get("foldoc"))),
    "WordNetNounRetrieval": ("Retrieval", lambda i: B.build_wordnet_retrieval(*i.get("wordnet"))),
    FAQ.TASK_NAME: ("Retrieval", lambda i: FAQ.build_faq_retrieval(*i.get("faq"))),
    "LeeDocSTS": ("STS", _lee),
    "WordSim353STS": ("STS", _wordsim),
    "SimLex999STS": ("STS", _simlex),
    "DebianSectionClassification": (
        "Classification",
        lambda i: B.build_debian_section_classification(*i.get("debian")),
    ),
    "BrownGenreClassification": (
        "Classification",
        lambda i: B.build_brown_classification(*i.get("brown")),
    ),
    "BrownGenreClustering": ("Clustering", lambda i: B.build_brown_clustering(*i.get("brown"))),
    "WordNetLexnameClustering": (
        "Clustering",
        lambda i: B.build_wordnet_clustering(*i.get("wordnet")),
    ),
}


def tasks_dir(cache: Path | None = None) -> Path:
    return (cache or S.cache_dir()) / "tasks"


def is_built(task_dir: Path) -> bool:
    meta = task_dir / "metadata.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("builder_version") == B.BUILDER_VERSION
    except ValueError:
        return False


def build_suite(
    names: list[str] | None = None,
    cache: Path | None = None,
    force: bool = False,
    refresh_lists: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Build (or reuse) the named tasks; returns {task name: metadata}."""
    cache = Path(cache) if cache else S.cache_dir()
    names = names or list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(
            f"unknown offline task(s): {', '.join(unknown)}; known: {', '.join(TASKS)}"
        )
    inp = _Inputs(cache, refresh_lists=refresh_lists)
    out = {}
    for name in names:
        d = tasks_dir(cache) / name
        if not force and is_built(d):
            meta = B.verify_task_dir(d)
            echo(f"{name:30s} cached   {_fmt_stats(meta)}")
            out[name] = meta
            continue
        t = time.time()
        task = TASKS[name][1](inp)
        B.write_task(task, tasks_dir(cache))
        meta = B.verify_task_dir(d)
        echo(f"{name:30s} built    {_fmt_stats(meta)}  ({time.time() - t:.0f}s)")
        out[name] = meta
    return out


def _fmt_stats(meta: dict) -> str:
    st = meta.get("stats", {})
    keys = [k for k in ("queries", "corpus", "train", "test", "labels") if k in st]
    vers = ", ".join(f"{s['name']} {s['version']}" for s in meta.get("sources", [])[:3])
    more = len(meta.get("sources", [])) - 3
    return (
        " ".join(f"{k}={st[k]}" for k in keys) + f"  [{vers}{f' +{more} more' if more > 0 else ''}]"
    )
