"""Readers for the raw formats of the suite's sources.

Each reader takes files (or text) and returns plain records; no task logic lives here, so the
readers can be tested on tiny fixtures. Formats:

- Debian package lists: RFC-822-style paragraphs (``Packages`` and ``Translation-en``), possibly
  lz4/gzip/xz compressed; long descriptions use Debian's continuation-line conventions.
- Man pages: rendered with ``man -l FILE | col -bx`` at ``MANWIDTH=2000`` (one paragraph per line),
  then split into sections by their all-caps headings.
- Python documentation: Sphinx HTML pages, split into ``<section>`` elements.
- FOLDOC: a dictd database (``.index`` + ``.dict[.dz]``).
- WordNet 3.0: ``data.noun``.
- Brown corpus: tagged files (``word/tag`` tokens, paragraphs separated by blank lines) + ``cats.txt``.
- gensim test data: the Lee corpus (50 documents, one per line), its 50x50 similarity matrix, and
  word-pair similarity lists (wordsim353, simlex999).
"""

from __future__ import annotations

import bz2
import gzip
import html
import lzma
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# --------------------------------------------------------------------------- generic


def read_text_file(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """Read a possibly compressed text file (by suffix: .lz4, .gz/.dz, .xz, .bz2)."""
    path = Path(path)
    suffix = path.suffix
    if suffix == ".lz4":
        import lz4.frame

        with lz4.frame.open(path, "rb") as f:
            data = f.read()
    elif suffix in (".gz", ".dz"):
        with gzip.open(path, "rb") as f:
            data = f.read()
    elif suffix == ".xz":
        data = lzma.decompress(path.read_bytes())
    elif suffix == ".bz2":
        data = bz2.decompress(path.read_bytes())
    else:
        data = path.read_bytes()
    return data.decode(encoding, errors="replace")


def normalize_ws(text: str) -> str:
    """Collapse runs of spaces inside lines, keep paragraph breaks (max one blank line)."""
    lines = [re.sub(r"[ \t\u00a0]+", " ", ln).strip() for ln in text.splitlines()]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return out.strip()


# --------------------------------------------------------------------------- Debian


def control_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """Parse Debian control-file paragraphs; continuation lines are kept with their leading space."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if not line:
                continue
            if line[0] in " \t":
                if key is not None:
                    fields[key] += "\n" + line
                continue
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        if fields:
            yield fields


def debian_long_description(lines: list[str]) -> str:
    """Turn the continuation lines of a Description field into plain text.

    ``" ."`` is a paragraph break; lines starting with two spaces are verbatim (kept on their own
    line); other lines of a paragraph are joined with spaces.
    """
    paras: list[list[str]] = [[]]
    for raw in lines:
        if not raw.strip():
            continue
        body = raw[1:] if raw.startswith(" ") else raw
        if body.strip() == ".":
            paras.append([])
        elif body.startswith(" "):
            paras[-1].append("\n" + body.strip())
        else:
            paras[-1].append(body.strip())
    out = []
    for p in paras:
        if p:
            out.append(" ".join(p).replace(" \n", "\n").strip())
    return "\n\n".join(out)


@dataclass
class DebPackage:
    name: str
    source: str  # source package (the split unit)
    version: str
    section: str
    short: str  # the synopsis line
    long: str  # the extended description


def read_debian_packages(
    packages_path: str | os.PathLike, translation_path: str | os.PathLike
) -> list[DebPackage]:
    """Join a Packages list with its Translation-en on (Package, Description-md5)."""
    descs: dict[tuple[str, str], tuple[str, str]] = {}
    for f in control_paragraphs(read_text_file(translation_path)):
        d = f.get("Description-en")
        if not d or "Package" not in f:
            continue
        first, *rest = d.split("\n")
        descs[(f["Package"], f.get("Description-md5", ""))] = (
            first.strip(),
            debian_long_description(rest),
        )
    out = []
    seen = set()
    for f in control_paragraphs(read_text_file(packages_path)):
        name = f.get("Package")
        if not name or name in seen:
            continue
        key = (name, f.get("Description-md5", ""))
        if key not in descs:
            continue
        seen.add(name)
        short, long = descs[key]
        source = f.get("Source", name).split(" ")[0].strip() or name
        section = f.get("Section", "").split("/")[-1]
        out.append(
            DebPackage(
                name=name,
                source=source,
                version=f.get("Version", ""),
                section=section,
                short=short,
                long=long,
            )
        )
    return out


# --------------------------------------------------------------------------- man pages

_MAN_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/&()'_-]*$")


@dataclass
class ManPage:
    unit: str  # "name.section", the split unit
    package: str
    section: str
    name_line: str
    description: str


def man_page_files(root: str | os.PathLike) -> list[tuple[Path, str, str]]:
    """English man page files under ``root/usr/share/man/man*/``: (path, page name, section).

    Symlinks and ``.so`` redirect stubs are skipped (they repeat another page).
    """
    out = []
    base = Path(root) / "usr" / "share" / "man"
    for d in sorted(base.glob("man*")):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_symlink() or not p.is_file():
                continue
            fname = p.name[:-3] if p.name.endswith(".gz") else p.name
            if "." not in fname:
                continue
            name, section = fname.rsplit(".", 1)
            try:
                head = read_text_file(p)[:200].lstrip()
            except OSError:
                continue
            if head.startswith(".so ") or not head:
                continue
            out.append((p, name, section))
    return out


def render_man(path: str | os.PathLike, timeout: float = 60) -> str:
    """Render a man page to plain text: ``MANWIDTH=2000 man -l FILE | col -bx``."""
    env = dict(
        os.environ, MANWIDTH="2000", LANG="C.UTF-8", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat"
    )
    env.pop("MAN_KEEP_FORMATTING", None)
    man = subprocess.run(
        ["man", "-l", str(path)], capture_output=True, env=env, timeout=timeout, check=False
    )
    col = subprocess.run(
        ["col", "-bx"], input=man.stdout, capture_output=True, timeout=timeout, check=False
    )
    return col.stdout.decode("utf-8", errors="replace")


def man_sections(text: str) -> dict[str, str]:
    """Split rendered man text into {HEADING: body}; body paragraphs separated by blank lines."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and _MAN_HEADING.match(line.strip()):
            current = line.strip()
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append(line)
    return {k: normalize_ws("\n".join(v)) for k, v in sections.items()}


def parse_man_page(text: str, unit: str, package: str, section: str) -> ManPage | None:
    """NAME line and DESCRIPTION body of a rendered page (None when either is missing)."""
    secs = man_sections(text)
    name = " ".join(secs.get("NAME", "").split())
    desc = secs.get("DESCRIPTION", "")
    if not name or not desc:
        return None
    return ManPage(unit=unit, package=package, section=section, name_line=name, description=desc)


# --------------------------------------------------------------------------- Sphinx HTML

_VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "base", "source"}
_BLOCK = {
    "p",
    "div",
    "pre",
    "li",
    "dt",
    "dd",
    "tr",
    "table",
    "ul",
    "ol",
    "dl",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "figure",
    "caption",
}


@dataclass
class DocSection:
    page: str  # page path relative to the html root, e.g. "library/json.html" (the split unit)
    page_title: str
    title: str
    level: int
    body: str
    anchor: str = ""


class _SphinxSections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int | None, bool]] = []  # (tag, section index, skips text)
        self.sections: list[dict] = []
        self.open: list[int] = []  # indices of open sections, innermost last
        self.in_heading: int | None = None
        self.skip = 0  # inside headerlink / script / style
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            if tag == "br":
                self._text("\n")
            return
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        sec_idx = None
        if tag == "section" or (tag == "div" and "section" in cls):
            sec_idx = len(self.sections)
            self.sections.append({"title": "", "level": 0, "body": [], "anchor": a.get("id", "")})
            self.open.append(sec_idx)
        skips = tag in ("script", "style") or (tag == "a" and "headerlink" in cls)
        self.stack.append((tag, sec_idx, skips))
        if skips:
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if re.fullmatch(r"h[1-6]", tag) and self.open and self.in_heading is None:
            s = self.sections[self.open[-1]]
            if not s["title"]:
                self.in_heading = self.open[-1]
                s["level"] = int(tag[1])
                return
        if tag in _BLOCK:
            self._text("\n")

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if not any(t == tag for t, _, _ in self.stack):
            return
        while self.stack:
            t, sec_idx, skips = self.stack.pop()
            if skips:
                self.skip -= 1
            if t == "pre":
                self.pre -= 1
            if re.fullmatch(r"h[1-6]", t) and self.in_heading is not None:
                self.in_heading = None
            if sec_idx is not None and self.open and self.open[-1] == sec_idx:
                self.open.pop()
            if t in _BLOCK:
                self._text("\n")
            if t == tag:
                break

    def handle_data(self, data):
        self._text(data)

    def _text(self, data: str) -> None:
        if self.skip or not self.open:
            return
        if self.in_heading is not None:
            self.sections[self.in_heading]["title"] += data
            return
        if not self.pre:
            data = re.sub(r"[ \t\r\n]+", " ", data) if data != "\n" else "\n"
        self.sections[self.open[-1]]["body"].append(data)


def sphinx_sections(html_text: str, page: str) -> list[DocSection]:
    """Sections of one Sphinx page; each body holds only its own text (not its subsections')."""
    p = _SphinxSections()
    p.feed(html_text)
    p.close()
    secs = [s for s in p.sections if s["title"].strip()]
    if not secs:
        return []
    top = min(secs, key=lambda s: s["level"] or 9)
    page_title = " ".join(html.unescape(top["title"]).split()).rstrip("¶").strip()
    out = []
    for s in secs:
        title = " ".join(s["title"].split()).rstrip("¶").strip()
        body = "".join(s["body"]).replace("¶", "")
        out.append(
            DocSection(
                page=page,
                page_title=page_title,
                title=title,
                level=s["level"],
                body=normalize_ws(body),
                anchor=s["anchor"],
            )
        )
    return out


# Pages that are not documentation prose, and the reserved FAQ.
PYDOC_EXCLUDED_DIRS = ("faq", "whatsnew", "_sources", "_static", "_images", "_downloads")
PYDOC_EXCLUDED_PAGES = (
    "genindex",
    "py-modindex",
    "search.html",
    "contents.html",
    "copyright.html",
    "license.html",
    "about.html",
    "bugs.html",
    "download.html",
    "index.html",
)


def python_doc_pages(html_root: str | os.PathLike) -> list[tuple[Path, str]]:
    """(path, relative page name) of the documentation pages, without faq/ (reserved)."""
    root = Path(html_root)
    out = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root).as_posix()
        parts = rel.split("/")
        if parts[0] in PYDOC_EXCLUDED_DIRS:
            continue
        if len(parts) == 1 and rel.startswith(PYDOC_EXCLUDED_PAGES):
            continue
        if parts[-1] == "index.html":
            continue  # tables of contents
        out.append((p, rel))
    return out


# --------------------------------------------------------------------------- dictd (FOLDOC)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_b64(s: str) -> int:
    """Decode dictd's base-64 numbers (most significant digit first)."""
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


@dataclass
class DictEntry:
    headwords: list[str]
    text: str  # raw entry text (headword lines + indented definition)
    offset: int = 0


def read_dictd(index_path: str | os.PathLike, dict_path: str | os.PathLike) -> list[DictEntry]:
    """Entries of a dictd database, grouping headwords that point at the same text."""
    groups: dict[tuple[int, int], list[str]] = {}
    for line in read_text_file(index_path).splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        word, off, ln = parts[0], dictd_b64(parts[1]), dictd_b64(parts[2])
        if word.startswith("00-database") or word.startswith("00database"):
            continue
        groups.setdefault((off, ln), []).append(word)
    p = Path(dict_path)
    data = gzip.open(p, "rb").read() if p.suffix in (".dz", ".gz") else p.read_bytes()
    out = []
    for (off, ln), words in sorted(groups.items()):
        text = data[off : off + ln].decode("utf-8", errors="replace")
        out.append(DictEntry(headwords=words, text=text, offset=off))
    return out


MASK = "___"


def mask_terms(text: str, terms: list[str], mask: str = MASK) -> str:
    """Replace whole-word, case-insensitive occurrences of any term by ``mask`` (longest first)."""
    for t in sorted({t for t in terms if t.strip()}, key=len, reverse=True):
        pat = r"(?<![\w])" + re.escape(t) + r"(?![\w])"
        text = re.sub(pat, mask, text, flags=re.IGNORECASE)
    return text


def foldoc_headword_lines(entry: DictEntry) -> list[str]:
    """The unindented lines at the top of an entry: its headwords as written (original case)."""
    out = []
    for line in entry.text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if line[0].isspace():
            break
        out.append(line.strip())
    return out


def foldoc_definition(entry: DictEntry) -> str:
    """The definition of a FOLDOC entry as plain text: no headword lines, braces, domain tags or date."""
    lines = entry.text.splitlines()
    i = 0
    while i < len(lines) and (not lines[i].strip() or not lines[i][0].isspace()):
        i += 1  # headword lines are the unindented lines at the top
    body = "\n".join(lines[i:])
    body = re.sub(r"\{([^{}]*)\}", r"\1", body)  # cross-references {like this}
    body = re.sub(r"<[a-zA-Z][a-zA-Z ,/-]*>\s*", "", body)  # <domain> tags
    body = re.sub(r"\(\d{4}-\d{2}-\d{2}\)\s*$", "", body.strip())  # last-update date
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
    return "\n\n".join(p for p in paras if p)


# --------------------------------------------------------------------------- WordNet

# WordNet 3.0 lexicographer files for nouns (numbers 03-28), as documented in lexnames(5WN).
WORDNET_NOUN_LEXNAMES = {
    3: "noun.Tops",
    4: "noun.act",
    5: "noun.animal",
    6: "noun.artifact",
    7: "noun.attribute",
    8: "noun.body",
    9: "noun.cognition",
    10: "noun.communication",
    11: "noun.event",
    12: "noun.feeling",
    13: "noun.food",
    14: "noun.group",
    15: "noun.location",
    16: "noun.motive",
    17: "noun.object",
    18: "noun.person",
    19: "noun.phenomenon",
    20: "noun.plant",
    21: "noun.possession",
    22: "noun.process",
    23: "noun.quantity",
    24: "noun.relation",
    25: "noun.shape",
    26: "noun.state",
    27: "noun.substance",
    28: "noun.time",
}


@dataclass
class Synset:
    offset: str  # the split unit
    lexname: str
    lemmas: list[str]
    definition: str  # gloss without its quoted examples
    gloss: str = ""


def read_wordnet_nouns(data_noun_path: str | os.PathLike) -> list[Synset]:
    out = []
    for line in read_text_file(data_noun_path).splitlines():
        if not line or line.startswith(" "):
            continue  # license header lines start with two spaces
        head, _, gloss = line.partition(" | ")
        f = head.split()
        if len(f) < 6 or f[2] != "n":
            continue
        lex = WORDNET_NOUN_LEXNAMES.get(int(f[1]))
        if lex is None:
            continue
        w_cnt = int(f[3], 16)
        lemmas = [f[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
        gloss = gloss.strip()
        definition = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
        out.append(
            Synset(offset=f[0], lexname=lex, lemmas=lemmas, definition=definition, gloss=gloss)
        )
    return out


# --------------------------------------------------------------------------- Brown


@dataclass
class BrownSample:
    sample: str  # file id, e.g. "ca01" (the split unit)
    genre: str
    paragraphs: list[str] = field(default_factory=list)


def brown_detokenize(tokens: list[str]) -> str:
    """Join Brown tokens into readable text (quotes, punctuation spacing)."""
    s = " ".join(tokens)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r"\s+([,.;:!?)\]}%])", r"\1", s)
    s = re.sub(r"([(\[{$])\s+", r"\1", s)
    s = re.sub(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
    s = re.sub(r'"\s+([^"]*?)\s+"', r'"\1"', s)
    return " ".join(s.split())


def brown_paragraph(block: str) -> str:
    words = []
    for tok in block.split():
        w, sep, _tag = tok.rpartition("/")
        words.append(w if sep else tok)
    return brown_detokenize(words)


def read_brown(root: str | os.PathLike) -> list[BrownSample]:
    root = Path(root)
    cats = {}
    for line in (root / "cats.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            cats[parts[0]] = parts[1]
    out = []
    for sample, genre in sorted(cats.items()):
        p = root / sample
        if not p.is_file():
            continue
        text = p.read_bytes().decode("utf-8", errors="replace")
        paras = [brown_paragraph(b) for b in re.split(r"\n\s*\n", text) if b.strip()]
        out.append(BrownSample(sample=sample, genre=genre, paragraphs=[q for q in paras if q]))
    return out


# --------------------------------------------------------------------------- gensim test data


def read_lee(
    corpus_path: str | os.PathLike, matrix_path: str | os.PathLike
) -> tuple[list[str], list[tuple[int, int, float]]]:
    """The Lee documents and their human similarity pairs (i < j) from the upper-triangular matrix."""
    docs = [
        " ".join(line.split())
        for line in Path(corpus_path).read_bytes().decode("latin-1").splitlines()
        if line.strip()
    ]
    rows = [
        [float(x) for x in line.split()]
        for line in Path(matrix_path).read_text().splitlines()
        if line.strip()
    ]
    n = len(docs)
    if len(rows) != n or any(len(r) != n for r in rows):
        raise ValueError(
            f"Lee matrix is {len(rows)}x{len(rows[0]) if rows else 0}, expected {n}x{n}"
        )
    pairs = [(i, j, rows[i][j]) for i in range(n) for j in range(i + 1, n)]
    return docs, pairs


def read_word_pairs(path: str | os.PathLike) -> list[tuple[str, str, float]]:
    """Word-similarity lists: tab-separated ``word1 word2 score`` lines, ``#`` comments."""
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            continue
        try:
            out.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
        except ValueError:
            continue
    return out
