"""``FaqRetrieval``: real user questions against their own answers, from FAQs in Debian packages.

The other retrieval tasks pair a *title-shaped* query (a synopsis, a NAME line, a section title)
with a document. Users of ``compsearch search`` type questions. This task measures that shape:
every entry of eight real FAQs shipped in Debian bookworm packages (the Debian FAQ, curl, git,
zsh, fetchmail, xterm, FFmpeg, SQLite) becomes one query (the question as a user would type it,
numbering stripped) whose relevant document is its own answer (cleaned text, clipped like every
other task); the corpus is the answers of all eight FAQs.

It is a *dev* task (model selection): every entry is a test unit, there is no train side, and
its metadata lists the packages and files that training data must never read
(``training_exclusions``). Units are ``<package>:<question number or anchor>``.

Only entries whose heading is a real question are kept (ends with ``?`` or starts with an
interrogative such as how/what/why/can), with answers of at least ``MIN_ANSWER_CHARS``.

Reserved for held-out evaluation and never read here: Python's ``faq/`` pages and ``perl-doc``
(``check_reserved`` runs on the written task, and ``faq_sources`` refuses them).
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from . import builders as B
from . import sources as S

TASK_NAME = "FaqRetrieval"
MIN_ANSWER_CHARS = 80

# package -> (pinned bookworm version, [(path inside the package, format)])
FAQ_SOURCES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "debian-faq": ("11.1", [("usr/share/doc/debian/FAQ/debian-faq.en.txt.gz", "debian-text")]),
    "libcurl4-doc": ("7.88.1-10+deb12u15", [("usr/share/doc/libcurl4/FAQ.gz", "curl-text")]),
    "git-doc": ("1:2.39.5-0+deb12u3", [("usr/share/doc/git-doc/gitfaq.txt", "asciidoc")]),
    "zsh-doc": (
        "5.9-4",
        [(f"usr/share/doc/zsh-common/html/FAQ0{i}.html", "html") for i in range(1, 7)],
    ),
    "fetchmail": ("6.4.37-1", [("usr/share/doc/fetchmail/fetchmail-FAQ.html", "html")]),
    "xterm": ("379-1", [("usr/share/doc/xterm/xterm.faq.html", "html")]),
    "ffmpeg-doc": ("7:5.1.9-0+deb12u1", [("usr/share/doc/ffmpeg/manual/faq.html", "html")]),
    "sqlite3-doc": ("3.40.1-2+deb12u2", [("usr/share/doc/sqlite3/faq.html", "sqlite-html")]),
}

_INTERROGATIVES = frozenset(
    "how what why can which where when who whom whose is are does do did should will would could may "
    "might shall am was were has have".split()
)


@dataclass
class FaqEntry:
    package: str
    number: str  # question number or anchor, unique within the package
    question: str
    answer: str
    file: str = ""

    @property
    def unit(self) -> str:
        return f"{self.package}:{self.number}"


# --------------------------------------------------------------------------- the question filter


def clean_question(heading: str) -> str:
    """The heading as a user would type it: numbering and link marks stripped, whitespace collapsed."""
    q = " ".join(heading.replace("\xa0", " ").replace("¶", " ").split())
    q = re.sub(r"^(?:\(\d+\)|[A-Z]?\d+(?:\.\d+)*[.:)]?)\s+", "", q)  # 1.5.  3.1:  (4)  F1.  2.10
    return q.strip()


def is_question(text: str) -> bool:
    """A real question: ends with '?' (or '?)'), or starts with an interrogative word."""
    t = text.strip()
    if not t or len(t) < 8:
        return False
    if t.endswith("?") or t.endswith("?)") or re.search(r"\?\s*\(", t):
        return True
    first = re.split(r"[\s,]", t, 1)[0].lower().strip("'\"`(")
    return first in _INTERROGATIVES


# --------------------------------------------------------------------------- text formats


def _paragraphs(lines: Iterable[str]) -> str:
    """Lines to text: paragraphs kept (blank lines), whitespace inside a paragraph collapsed."""
    out, cur = [], []
    for line in lines:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return "\n".join(" ".join(p.split()) for p in out)


def parse_debian_faq(text: str) -> list[tuple[str, str, str]]:
    """(number, heading, answer) from the Debian FAQ's text rendering.

    Headings start in column 0 (``1.5. What is ...``, possibly wrapped onto more column-0 lines);
    answers are indented; ``Chapter N.`` lines end a chapter. The table of contents is indented,
    so it is never taken for a heading.
    """
    lines = text.replace("\xa0", " ").splitlines()
    head = re.compile(r"^(\d+(?:\.\d+)+)\.?\s+(\S.*)$")
    out: list[tuple[str, str, str]] = []
    i, cur = 0, None
    body: list[str] = []

    def flush():
        if cur is not None:
            out.append((cur[0], cur[1], _paragraphs(body)))

    while i < len(lines):
        line = lines[i]
        m = head.match(line)
        if m:
            flush()
            title = [m.group(2)]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i][0].isspace():
                title.append(lines[i].strip())
                i += 1
            cur, body = (m.group(1), " ".join(title)), []
            continue
        if (
            line
            and not line[0].isspace()
            and (re.match(r"^(Chapter|Appendix) ", line) or line.startswith("---"))
        ):
            flush()
            cur, body = None, []
        elif cur is not None:
            body.append(line)
        i += 1
    flush()
    return out


def parse_curl_faq(text: str) -> list[tuple[str, str, str]]:
    """(number, heading, answer) from curl's plain-text FAQ.

    Body headings are ``  N.M heading`` lines with a blank line before and after (the table of
    contents lists them without blank lines in between); ``N. Chapter`` lines in column 0 end a
    chapter.
    """
    lines = text.splitlines()
    head = re.compile(r"^ {1,3}(\d+\.\d+)\s+(\S.*)$")
    chapter = re.compile(r"^\d+\.\s+\S")
    out: list[tuple[str, str, str]] = []
    cur, body = None, []

    def blank(j):
        return j < 0 or j >= len(lines) or not lines[j].strip()

    for i, line in enumerate(lines):
        m = head.match(line)
        if m and blank(i - 1) and blank(i + 1):
            if cur is not None:
                out.append((cur[0], cur[1], _paragraphs(body)))
            cur, body = (m.group(1), m.group(2).strip()), []
        elif chapter.match(line):
            if cur is not None:
                out.append((cur[0], cur[1], _paragraphs(body)))
            cur, body = None, []
        elif cur is not None:
            body.append(line)
    if cur is not None:
        out.append((cur[0], cur[1], _paragraphs(body)))
    return out


def parse_asciidoc_faq(text: str) -> list[tuple[str, str, str]]:
    """(anchor, question, answer) from an AsciiDoc FAQ (git's gitfaq.txt).

    An entry is ``[[anchor]]``, then a ``Question::`` line, then the indented answer up to the next
    anchor or section title (a line underlined with ``-`` or ``=``).
    """
    lines = text.splitlines()
    out: list[tuple[str, str, str]] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^\[\[([\w.-]+)\]\]\s*$", lines[i])
        if not m or i + 1 >= len(lines) or not lines[i + 1].rstrip().endswith("::"):
            i += 1
            continue
        anchor, question = m.group(1), lines[i + 1].rstrip()[:-2].strip()
        j, body, in_block = i + 2, [], False
        while j < len(lines):
            ln = lines[j]
            if re.match(r"^\s*(-{4,}|\.{4,})\s*$", ln):  # a delimited (code) block opens or closes
                in_block = not in_block
                j += 1
                continue
            if not in_block:
                if re.match(r"^\[\[[\w.-]+\]\]\s*$", ln):
                    break
                nxt = lines[j + 1] if j + 1 < len(lines) else ""
                if (
                    ln.strip()
                    and not ln[0].isspace()
                    and re.match(r"^[-=]{3,}\s*$", nxt)
                    and abs(len(ln.rstrip()) - len(nxt.rstrip())) <= 2
                ):
                    break  # a section title and its underline
            if ln.strip() != "+":  # AsciiDoc list continuation
                body.append(ln)
            j += 1
        out.append((anchor, question.replace("`", ""), _paragraphs(body)))
        i = j
    return out


_HEADING_MARKS = re.compile(r"(\s*[¶#]|\s+TOC)+\s*$")  # texinfo/sphinx anchor links after a heading


class _HtmlSections(HTMLParser):
    """Flat list of (level, heading, anchor, own text) for every h1-h6 of a page."""

    BLOCK = frozenset(
        "p div br li dt dd pre blockquote tr table ul ol dl h1 h2 h3 h4 h5 h6 hr section".split()
    )
    SKIP = frozenset("script style head title nav".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list] = [[0, "", "", []]]  # text before the first heading
        self.heading: list[str] | None = None
        self.level = 0
        self.anchor = ""
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading, self.level, self.anchor = [], int(tag[1]), a.get("id") or ""
        elif self.heading is not None and tag == "a" and not self.anchor:
            self.anchor = a.get("name") or a.get("id") or ""
        elif tag == "pre":
            self.pre += 1
        if tag in self.BLOCK and self.heading is None:
            self.sections[-1][3].append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            self.sections.append(
                [self.level, " ".join("".join(self.heading).split()), self.anchor, []]
            )
            self.heading = None
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCK and self.heading is None:
            self.sections[-1][3].append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if self.heading is not None:
            self.heading.append(data)
        elif self.pre:
            self.sections[-1][3].append(data)
        else:
            self.sections[-1][3].append(re.sub(r"\s+", " ", data))


def html_sections(html_text: str, stop=None) -> list[tuple[int, str, str, str]]:
    """(level, heading, anchor, text) for every heading of an HTML page.

    A section's text runs to the next heading of the same or a higher level, so sub-headings
    (``Details``, ``Solution``) and their text stay inside the question they belong to. ``stop``
    (heading -> bool) also ends it at a deeper heading it accepts: a nested question keeps its own
    answer out of its parent's, so the parent is not a second relevant-looking document.
    """
    p = _HtmlSections()
    p.feed(html_text)
    p.close()
    flat = [
        (
            lvl,
            _HEADING_MARKS.sub("", h).strip(),
            a,
            "\n".join(ln.strip() for ln in "".join(parts).split("\n") if ln.strip()),
        )
        for lvl, h, a, parts in p.sections[1:]
    ]
    out = []
    for i, (lvl, h, a, own) in enumerate(flat):
        texts = [own]
        for lvl2, h2, _a2, own2 in flat[i + 1 :]:
            if lvl2 <= lvl or (stop is not None and stop(h2)):
                break
            texts.extend([h2, own2])
        out.append((lvl, h, a, "\n".join(t for t in texts if t).replace("¶", "").strip()))
    return out


def parse_html_faq(html_text: str, prefix: str = "") -> list[tuple[str, str, str]]:
    """(number, heading, answer) for the headings of an HTML FAQ (numbers from the heading, else anchors)."""
    out = []
    for _lvl, heading, anchor, text in html_sections(
        html_text, stop=lambda h: is_question(clean_question(h))
    ):
        heading = heading.replace("¶", "").strip()
        m = re.match(r"^\(?([A-Z]?\d+(?:\.\d+)*)[.:)]?\s", heading)
        number = (
            m.group(1) if m else (anchor or re.sub(r"\W+", "-", heading.lower()).strip("-")[:40])
        )
        out.append((prefix + number, heading, text))
    return out


def parse_sqlite_faq(html_text: str) -> list[tuple[str, str, str]]:
    """SQLite's faq.html marks questions as ``<a name="qN"></a><p><b>(N) question</b></p>``."""
    marked = re.sub(
        r'<a name="(q\d+)"></a>\s*<p><b>(.*?)</b></p>',
        r'<h3 id="\1">\2</h3>',
        html_text,
        flags=re.S,
    )
    return [(n, h, t) for n, h, t in parse_html_faq(marked) if re.match(r"^\(\d+\)", h)]


_PARSERS = {
    "debian-text": parse_debian_faq,
    "curl-text": parse_curl_faq,
    "asciidoc": parse_asciidoc_faq,
    "html": parse_html_faq,
    "sqlite-html": parse_sqlite_faq,
}


def _read(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def entries_from_text(package: str, fmt: str, text: str, file: str = "") -> list[FaqEntry]:
    """Every parsed entry (unfiltered) of one FAQ file."""
    if fmt not in _PARSERS:
        raise ValueError(f"unknown FAQ format {fmt!r}; known: {', '.join(_PARSERS)}")
    return [
        FaqEntry(package, number, heading, answer, file)
        for number, heading, answer in _PARSERS[fmt](text)
    ]


def keep_entries(entries: Sequence[FaqEntry], min_answer: int = MIN_ANSWER_CHARS) -> list[FaqEntry]:
    """Real questions with real answers; numbering stripped; unique unit per package."""
    out, seen = [], Counter()
    for e in entries:
        q = clean_question(e.question)
        if not is_question(q) or len(e.answer) < min_answer:
            continue
        seen[e.unit] += 1
        number = e.number if seen[e.unit] == 1 else f"{e.number}~{seen[e.unit]}"
        out.append(FaqEntry(e.package, number, q, e.answer, e.file))
    return out


# --------------------------------------------------------------------------- sources and task


def _refuse_reserved(package: str, path: str) -> None:
    if package in S.RESERVED_DEB_PACKAGES or any(
        p.search(f"{package}/{path}") for p in B.RESERVED_PATTERNS
    ):
        raise B.ReservedSourceError(f"{package}: {path} is reserved for held-out evaluation")


def faq_sources(
    cache: Path | None = None, packages: Sequence[str] | None = None
) -> tuple[list[FaqEntry], list]:
    """Fetch the pinned FAQ packages and parse their FAQ files: (all entries, Source records)."""
    entries: list[FaqEntry] = []
    srcs = []
    for name in packages or FAQ_SOURCES:
        pin, files = FAQ_SOURCES[name]
        for rel, _fmt in files:
            _refuse_reserved(name, rel)
        src = S.deb_package(name, cache, pin=pin)
        srcs.append(src)
        for rel, fmt in files:
            path = src.path / rel
            if not path.is_file():
                raise S.SourceError(f"{name} {src.version} has no {rel}")
            entries.extend(entries_from_text(name, fmt, _read(path), rel))
    return entries, srcs


def training_exclusions() -> dict:
    """What training data must never read: these packages' FAQ files (and every unit of the task)."""
    return {
        "packages": sorted(FAQ_SOURCES),
        "files": sorted(
            f"{pkg}:{rel}" for pkg, (_v, files) in FAQ_SOURCES.items() for rel, _f in files
        ),
    }


def build_faq_retrieval(
    entries: Sequence[FaqEntry], sources: Sequence, min_answer: int = MIN_ANSWER_CHARS
) -> B.TaskData:
    for e in entries:
        _refuse_reserved(e.package, e.file)
    kept = keep_entries(entries, min_answer)
    units = {"train": [], "test": sorted({e.unit for e in kept})}
    corpus, queries, qrels = B.make_retrieval((e.unit, e.question, e.answer, "") for e in kept)
    per_package = dict(sorted(Counter(e.package for e in kept).items()))
    return B.TaskData(
        name=TASK_NAME,
        type="Retrieval",
        main_score="ndcg_at_10",
        description="FAQs in Debian bookworm packages (debian-faq, curl, git, zsh, fetchmail, xterm, FFmpeg, "
        "SQLite): a question, as a user would type it, retrieves its own answer among the answers "
        "of all eight FAQs. Dev task: every entry is a test unit; training data must exclude these "
        "files.",
        sources=B._sources(sources),
        params={
            "test_fraction": 1.0,
            "min_answer_chars": min_answer,
            "max_doc_chars": B.MAX_DOC_CHARS,
            "queries_per_package": per_package,
            "parsed_entries": len(entries),
        },
        unit_kind="FAQ entry (package:number)",
        units=units,
        files={"corpus": corpus, "queries": queries, "qrels": qrels},
        extra={"dev_task": True, "training_exclusions": training_exclusions()},
    )
