"""Turn files and folders into text documents.

The pipeline has three steps, each usable on its own:

1. :func:`discover` walks the given paths and yields a :class:`Candidate` for
   every file worth indexing, or a :class:`Skipped` (with a short, stable,
   human-readable reason) for everything it looked at and rejected.
2. :func:`read_bytes` reads a candidate's raw bytes; :func:`content_hash`
   fingerprints them so unchanged files can be skipped on re-index.
3. :func:`parse` decodes the bytes into a :class:`Document` (text with ``\\n``
   newlines) or a :class:`Skipped`.  It never raises on bad content.

:func:`load` chains 2 and 3 for convenience.

File kinds are chosen by extension (see ``_KIND_BY_EXTENSION`` and
``_LANGUAGE_BY_EXTENSION``); a few extension-less names (README, LICENSE,
Makefile, ...) are recognised too.  Everything else is skipped as
"unsupported type".  Log files, lock files and minified bundles are left out
on purpose: they are large and rarely useful as search results.

HTML is reduced to its visible text *without moving it between lines*: the
extracted text has exactly as many lines as the source and every fragment sits
on the line where it occurs, so line spans computed on the text are valid
citations into the original file.  Headings become Markdown ``#`` lines so the
chunker can treat HTML like Markdown.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pathspec
from charset_normalizer import from_bytes

__all__ = [
    "Candidate",
    "Document",
    "Skipped",
    "classify_path",
    "content_hash",
    "discover",
    "load",
    "parse",
    "read_bytes",
]

# --------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A file found by :func:`discover`; not read yet."""

    path: Path
    kind: str  # "text" | "markdown" | "rst" | "html" | "code" | "pdf"
    language: str | None  # for code: "python", "javascript", ...; else None


@dataclass(frozen=True)
class Skipped:
    """A path that was looked at and rejected, with a short reason."""

    path: Path
    reason: str


@dataclass
class Document:
    """Decoded or extracted text of one file."""

    path: Path
    kind: str
    language: str | None
    text: str  # newlines normalised to "\n"
    encoding: str  # "utf-8", "cp1252", ..., or "pdf"
    page_starts: list[int] | None = None  # PDF only: 1-based first line of each page


# --------------------------------------------------------------------------
# File classification
# --------------------------------------------------------------------------

_KIND_BY_EXTENSION: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
}

# Source code and configuration files are all kind "code".  JSON is included
# (package.json, tsconfig.json, ... are useful); huge data dumps are kept out
# by ``max_file_bytes`` and lock files by ``_GENERATED_NAMES``.
_LANGUAGE_BY_EXTENSION: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".sql": "sql",
    ".swift": "swift",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".lua": "lua",
    ".r": "r",
    ".pl": "perl",
    ".pm": "perl",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
    ".json": "json",
    ".css": "css",
}

# Extension-less file names (compared case-insensitively).
_TEXT_NAMES = frozenset(
    {
        "readme",
        "license",
        "licence",
        "copying",
        "notice",
        "authors",
        "contributors",
        "changelog",
        "changes",
        "history",
        "install",
        "contributing",
    }
)
_CODE_NAMES: dict[str, str] = {
    "makefile": "make",
    "gnumakefile": "make",
    "dockerfile": "dockerfile",
}

# Generated files that match a supported extension but are noise.
_GENERATED_NAMES = frozenset(
    {"package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "composer.lock"}
)
_GENERATED_SUFFIXES = (".min.js", ".min.css")

# Directories never worth walking, whatever include_hidden says.
_JUNK_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
    }
)


def classify_path(path: Path) -> tuple[str, str | None] | None:
    """Return ``(kind, language)`` for a file name, or None if unsupported."""
    name = path.name
    lowered = name.lower()
    suffix = Path(lowered).suffix
    if suffix in _KIND_BY_EXTENSION:
        return _KIND_BY_EXTENSION[suffix], None
    if suffix in _LANGUAGE_BY_EXTENSION:
        return "code", _LANGUAGE_BY_EXTENSION[suffix]
    if not suffix:
        if lowered in _TEXT_NAMES:
            return "text", None
        if lowered in _CODE_NAMES:
            return "code", _CODE_NAMES[lowered]
    return None


def _unsupported_reason(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix:
        return f"unsupported type '{suffix}'"
    return "unsupported type (no extension)"


def _is_generated(path: Path) -> bool:
    lowered = path.name.lower()
    return lowered in _GENERATED_NAMES or lowered.endswith(_GENERATED_SUFFIXES)


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


def _format_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.1f} KB"
    return f"{n} B"


def _os_error_reason(exc: OSError, path: Path) -> str:
    """Map an OSError to one of the stable Skipped reasons."""
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, FileNotFoundError):
        return "broken symlink" if path.is_symlink() else "not found"
    return f"unreadable: {exc.strerror or type(exc).__name__}"


@dataclass(frozen=True)
class _IgnoreRule:
    """The patterns of one .gitignore file and the folder it applies to."""

    base: Path
    spec: pathspec.GitIgnoreSpec

    def verdict(self, path: Path, is_dir: bool) -> bool | None:
        """True = ignored, False = re-included by '!', None = no opinion."""
        rel = path.relative_to(self.base).as_posix() + ("/" if is_dir else "")
        if hasattr(self.spec, "check_file"):
            return self.spec.check_file(rel).include
        return True if self.spec.match_file(rel) else None


def _load_gitignore(folder: Path) -> _IgnoreRule | None:
    try:
        lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines.splitlines())
    return _IgnoreRule(folder, spec) if len(spec) else None


def _is_ignored(path: Path, is_dir: bool, rules: Sequence[_IgnoreRule]) -> bool:
    ignored = False
    for rule in rules:  # outermost first: deeper files override
        verdict = rule.verdict(path, is_dir)
        if verdict is not None:
            ignored = verdict
    return ignored


@dataclass
class _Walker:
    include_hidden: bool
    respect_gitignore: bool
    max_file_bytes: int
    seen: set[Path] = field(default_factory=set)

    def root(self, path: Path) -> Iterator[Candidate | Skipped]:
        """An explicitly given path: taken even if hidden or ignored."""
        try:
            st = os.stat(path)
        except OSError as exc:
            yield Skipped(path, _os_error_reason(exc, path))
            return
        if stat.S_ISDIR(st.st_mode):
            yield from self.walk(path, st, frozenset(), ())
        else:
            yield from self.file(path, st)

    def walk(
        self,
        folder: Path,
        st: os.stat_result,
        ancestors: frozenset[tuple[int, int]],
        rules: tuple[_IgnoreRule, ...],
    ) -> Iterator[Candidate | Skipped]:
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            yield Skipped(folder, "symlink loop")
            return
        ancestors = ancestors | {key}
        try:
            with os.scandir(folder) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            yield Skipped(folder, _os_error_reason(exc, folder))
            return
        if self.respect_gitignore and ".gitignore" in names:
            rule = _load_gitignore(folder)
            if rule is not None:
                rules = rules + (rule,)
        for name in names:
            yield from self.entry(folder / name, ancestors, rules)

    def entry(
        self,
        path: Path,
        ancestors: frozenset[tuple[int, int]],
        rules: tuple[_IgnoreRule, ...],
    ) -> Iterator[Candidate | Skipped]:
        if path.name.startswith(".") and not self.include_hidden:
            yield Skipped(path, "hidden")
            return
        try:
            st: os.stat_result | None = os.stat(path)
            error = None
        except OSError as exc:
            st, error = None, _os_error_reason(exc, path)
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        if is_dir and path.name in _JUNK_DIRS:
            yield Skipped(path, "excluded directory")
        elif _is_ignored(path, is_dir, rules):
            yield Skipped(path, "ignored by .gitignore")
        elif st is None:
            yield Skipped(path, error or "unreadable")
        elif is_dir:
            yield from self.walk(path, st, ancestors, rules)
        else:
            yield from self.file(path, st)

    def file(self, path: Path, st: os.stat_result) -> Iterator[Candidate | Skipped]:
        if path in self.seen:
            return
        self.seen.add(path)
        if not stat.S_ISREG(st.st_mode):
            yield Skipped(path, "not a regular file")
            return
        classified = classify_path(path)
        if classified is None:
            yield Skipped(path, _unsupported_reason(path))
        elif _is_generated(path):
            yield Skipped(path, "generated file")
        elif st.st_size > self.max_file_bytes:
            size, limit = _format_size(st.st_size), _format_size(self.max_file_bytes)
            yield Skipped(path, f"too large ({size} > {limit})")
        elif st.st_size == 0:
            yield Skipped(path, "empty file")
        else:
            yield Candidate(path, *classified)


def discover(
    paths: Iterable[str | Path],
    *,
    include_hidden: bool = False,
    respect_gitignore: bool = True,
    max_file_bytes: int = 10_000_000,
) -> Iterator[Candidate | Skipped]:
    """Yield a Candidate or Skipped for every file under ``paths``.

    Folders are walked recursively in sorted order, following symlinks
    (loops are reported, not followed).  Paths given explicitly are always
    taken, even when hidden or ignored.  Inside walked folders, hidden
    entries, ``.gitignore``-d entries and junk folders (``.git``,
    ``node_modules``, ``__pycache__``, virtualenvs, tool caches) yield one
    Skipped each and are not descended into.  A file reached twice (for
    example because it is given twice) is reported once.
    """
    walker = _Walker(include_hidden, respect_gitignore, max_file_bytes)
    for raw in paths:
        yield from walker.root(Path(os.path.abspath(os.fspath(raw))))


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes | Skipped:
    """Read a whole file; OS errors become a Skipped instead of raising."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        return Skipped(path, _os_error_reason(exc, path))


def load(candidate: Candidate) -> tuple[Document | Skipped, str | None]:
    """Read, hash and parse a candidate: ``(result, sha256 or None)``."""
    data = read_bytes(candidate.path)
    if isinstance(data, Skipped):
        return data, None
    return parse(candidate, data), content_hash(data)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

_BINARY_SNIFF_BYTES = 8192
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "utf-32"),
    (b"\xff\xfe", "utf-16", "utf-16"),
    (b"\xfe\xff", "utf-16", "utf-16"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")
_MAX_CONTROL_RATIO = 0.02

# Non-ASCII characters that plausibly occur in Western European text.  Used
# to prefer cp1252 (the most common legacy encoding) over the sometimes odd
# guesses of charset_normalizer on short texts.
_WESTERN_CHARS = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŒœŠšŸŽžƒ"
    "“”‘’‚„–—…€•«»°©®™¡¿£¥¢§·\xa0"
)
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{4,}")


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:100_000]
    bad = sum(
        1
        for ch in sample
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs", "Co")
    )
    return bad / len(sample)


def _plausible_cp1252(data: bytes) -> str | None:
    """Decode as cp1252 if the result looks like Western European text."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = {ch for ch in text if ord(ch) > 0x7F}
    if not non_ascii <= _WESTERN_CHARS or _NON_ASCII_RUN.search(text):
        return None
    if _control_ratio(text) > 0:
        return None
    return text


def _decode(data: bytes) -> tuple[str, str] | str:
    """Return ``(text, encoding)`` or a Skipped reason."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), name
            except UnicodeDecodeError:
                break
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        return "binary file"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if _control_ratio(text) > _MAX_CONTROL_RATIO:
            return "binary file"
        return text, "utf-8"
    western = _plausible_cp1252(data)
    if western is not None:
        return western, "cp1252"
    best = from_bytes(data).best()
    if best is None:
        return "undecodable text (no encoding detected)"
    text = str(best)
    if _control_ratio(text) > _MAX_CONTROL_RATIO:
        return "undecodable text (too many control characters)"
    return text, best.encoding


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def parse(candidate: Candidate, data: bytes) -> Document | Skipped:
    """Decode or extract the text of a candidate's bytes."""
    if candidate.kind == "pdf":
        return _parse_pdf(candidate, data)
    if not data.strip():
        return Skipped(candidate.path, "empty file")
    decoded = _decode(data)
    if isinstance(decoded, str):
        return Skipped(candidate.path, decoded)
    text, encoding = decoded
    text = _normalise_newlines(text)
    if candidate.kind == "html":
        text = html_to_text(text)
        if not text.strip():
            return Skipped(candidate.path, "empty file (no visible text)")
    elif not text.strip():
        return Skipped(candidate.path, "empty file")
    return Document(candidate.path, candidate.kind, candidate.language, text, encoding)


def _short_error(exc: BaseException, limit: int = 120) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_pdf(candidate: Candidate, data: bytes) -> Document | Skipped:
    path = candidate.path
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - pypdf is a dependency
        return Skipped(path, "PDF could not be parsed: pypdf is not installed")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _try_empty_password(reader):
            return Skipped(path, "PDF could not be parsed: encrypted")
        pages = list(reader.pages)
    except Exception as exc:  # pypdf raises many exception types on bad input
        return Skipped(path, f"PDF could not be parsed: {_short_error(exc)}")
    texts, failures = _extract_pages(pages)
    if not any(t.strip() for t in texts):
        if pages and failures == len(pages):
            return Skipped(path, "PDF could not be parsed: text extraction failed")
        return Skipped(path, "PDF has no extractable text")
    starts, line = [], 1
    for page_text in texts:
        starts.append(line)
        line += page_text.count("\n") + 1
    text = "\n".join(texts)
    return Document(path, candidate.kind, candidate.language, text, "pdf", starts)


def _try_empty_password(reader: object) -> bool:
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:
        return False


def _extract_pages(pages: list) -> tuple[list[str], int]:
    texts: list[str] = []
    failures = 0
    for page in pages:
        try:
            raw = page.extract_text() or ""
        except Exception:
            raw, failures = "", failures + 1
        texts.append(_normalise_newlines(raw).replace("\x00", "").rstrip())
    return texts, failures


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption",
        "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption",
        "figure", "footer", "form", "header", "hr", "html", "li", "main", "nav",
        "ol", "option", "p", "pre", "section", "summary", "table", "tbody",
        "td", "tfoot", "th", "thead", "title", "tr", "ul",
    }
)  # fmt: skip
_SPACES = re.compile(r"\s+")


@dataclass
class _Fragment:
    text: str
    heading: int = 0  # heading level, 0 for ordinary text
    raw: bool = False  # inside <pre>: keep whitespace


class _TextExtractor(HTMLParser):
    """Collects visible text fragments keyed by their source line."""

    def __init__(self, line_count: int) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[_Fragment]] = [[] for _ in range(line_count)]
        self.skip_depth = 0
        self.in_head = False
        self.in_title = False
        self.pre_depth = 0
        self.heading: tuple[int, int, list[str]] | None = None  # level, line, parts

    # -- tag events ------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif tag == "head":
            self.in_head = True
        elif tag == "title":
            self.in_title = True
        elif tag == "pre":
            self.pre_depth += 1
        if tag in _HEADINGS and self.skip_depth == 0:
            self._finish_heading()
            self.heading = (_HEADINGS[tag], self.getpos()[0], [])
        elif tag in _BLOCK_TAGS:
            self._separate()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "head":
            self.in_head = False
        elif tag == "title":
            self.in_title = False
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _HEADINGS:
            self._finish_heading()
        elif tag in _BLOCK_TAGS:
            self._separate()

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:  # <br/>, <hr/>
            self._separate()

    # -- text events -----------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self.skip_depth or (self.in_head and not self.in_title):
            return
        if self.heading is not None:
            self.heading[2].append(data)
            return
        line = self.getpos()[0]
        for offset, piece in enumerate(data.split("\n")):
            if self.pre_depth:
                self._add(line + offset, _Fragment(piece, raw=True))
            elif piece:
                self._add(line + offset, _Fragment(_SPACES.sub(" ", piece)))

    def close(self) -> None:
        super().close()
        self._finish_heading()

    # -- helpers ---------------------------------------------------------
    def _add(self, line: int, fragment: _Fragment) -> None:
        if 1 <= line <= len(self.lines):
            self.lines[line - 1].append(fragment)

    def _separate(self) -> None:
        """Block boundary: keep words on the same source line apart."""
        if self.heading is not None:
            self.heading[2].append(" ")
        else:
            self._add(self.getpos()[0], _Fragment(" "))

    def _finish_heading(self) -> None:
        if self.heading is None:
            return
        level, line, parts = self.heading
        self.heading = None
        title = _SPACES.sub(" ", "".join(parts)).strip()
        if title:
            self._add(line, _Fragment(title, heading=level))
            self._add(line, _Fragment(" "))

    def render(self) -> list[str]:
        return [_render_line(fragments) for fragments in self.lines]


def _render_line(fragments: list[_Fragment]) -> str:
    visible = [f for f in fragments if f.text.strip()]
    if len(visible) == 1 and visible[0].heading:
        return "#" * visible[0].heading + " " + visible[0].text
    if any(f.raw for f in fragments):
        return "".join(f.text for f in fragments).rstrip()
    return _SPACES.sub(" ", "".join(f.text for f in fragments)).strip()


def html_to_text(source: str) -> str:
    """Visible text of an HTML page, each fragment on its source line.

    The result has exactly as many lines as ``source``.  Text inside
    script/style/noscript/template/svg and inside ``<head>`` (except
    ``<title>``) is dropped.  A heading alone on its line becomes a Markdown
    heading (``## Title``); several blocks on one source line are joined with
    a space.
    """
    source = _normalise_newlines(source)
    extractor = _TextExtractor(source.count("\n") + 1)
    try:
        extractor.feed(source)
        extractor.close()
    except Exception:  # html.parser is lenient; be safe anyway
        pass
    return "\n".join(extractor.render())
