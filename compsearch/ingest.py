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

File kinds are chosen by extension where it says (see ``KIND_BY_EXTENSION``
and ``LANGUAGE_BY_EXTENSION``).  A file with no extension or one we do not
know (``NEWS``, ``TODO``, ``Apache-2.0``, ``README.Debian``) is decided by its
content: text is indexed (as Markdown when it looks like Markdown), binary is
skipped as "binary file".  Known binary formats (images, archives, objects)
are skipped by extension without being read.  ``name.gz`` is read
decompressed and classified by ``name`` (Debian ships ``changelog.gz``,
``README.gz``).  Log files, lock files and minified bundles are left out on
purpose: they are large and rarely useful as search results.  ``include`` /
``exclude`` take gitignore-style globs relative to each given folder.

This module keeps discovery and the dispatch by kind; the per-format readers
(decoding, HTML, PDF) live in ``compsearch.readers`` and the data types in
``compsearch.documents``.  HTML is reduced to its visible text without moving
it between lines, so line spans stay valid citations into the original file.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from .documents import Candidate, Document, Skipped
from .filetypes import (
    CODE_NAMES,
    GENERATED_NAMES,
    GENERATED_SUFFIXES,
    KIND_BY_EXTENSION,
    LANGUAGE_BY_EXTENSION,
    SKIP_EXTENSIONS,
)
from .readers.decode import decode, normalise_newlines
from .readers.html import html_to_text
from .readers.pdf import read_pdf

__all__ = [
    "Candidate",
    "Document",
    "Skipped",
    "classify_path",
    "content_hash",
    "discover",
    "html_to_text",
    "load",
    "parse",
    "read_bytes",
]

# --------------------------------------------------------------------------
# File classification
# --------------------------------------------------------------------------

_MAX_DECOMPRESSED_BYTES = 100_000_000
_MARKDOWN_HINTS = re.compile(
    r"^(#{1,6} \S|```|\s*[-*+] \[[ x]\] |.*\]\(https?://)|^[=-]{3,}\s*$", re.MULTILINE
)

# Generated files that match a supported extension but are noise.
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
    """Return ``(kind, language)`` for a file name, or None if it is never indexed.

    ``kind`` is ``"auto"`` when only the content can tell (no or unknown extension).
    ``name.gz`` is classified by ``name``.
    """
    name = path.name
    lowered = name.lower()
    if lowered.endswith(".gz") and len(lowered) > 3:
        inner = classify_path(path.with_name(name[:-3]))
        return None if inner is None or inner[0] == "pdf" else inner
    suffix = Path(lowered).suffix
    if suffix in KIND_BY_EXTENSION:
        return KIND_BY_EXTENSION[suffix], None
    if suffix in LANGUAGE_BY_EXTENSION:
        return "code", LANGUAGE_BY_EXTENSION[suffix]
    if lowered in CODE_NAMES:
        return "code", CODE_NAMES[lowered]
    if suffix in SKIP_EXTENSIONS:
        return None
    return "auto", None


def looks_like_markdown(text: str) -> bool:
    """Headings, fences, task lists, links or setext underlines in the first 20,000 characters."""
    return len(_MARKDOWN_HINTS.findall(text[:20_000])) >= 2


def _unsupported_reason(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix:
        return f"unsupported type '{suffix}'"
    return "unsupported type (no extension)"


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
        return False


def display_path(path) -> str:
    """A path as printable text: undecodable bytes of its name shown as escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_generated(path: Path) -> bool:
    lowered = path.name.lower()
    return lowered in GENERATED_NAMES or lowered.endswith(GENERATED_SUFFIXES)


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


def _globs(patterns: Sequence[str], option: str) -> pathspec.GitIgnoreSpec | None:
    patterns = [p for p in patterns if p and p.strip()]
    if not patterns:
        return None
    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns)
    except Exception as exc:  # pathspec raises several types for a bad pattern
        from .errors import CompsearchError

        raise CompsearchError(f"bad {option} pattern: {exc}") from None


@dataclass
class _Walker:
    include_hidden: bool
    respect_gitignore: bool
    max_file_bytes: int
    include: pathspec.GitIgnoreSpec | None = None
    exclude: pathspec.GitIgnoreSpec | None = None
    base: Path | None = None  # the given folder that include/exclude patterns are relative to
    seen: set[Path] = field(default_factory=set)

    def _rel(self, path: Path, is_dir: bool) -> str | None:
        if self.base is None:
            return None
        try:
            rel = path.relative_to(self.base).as_posix()
        except ValueError:
            return None
        return rel + ("/" if is_dir else "")

    def root(self, path: Path) -> Iterator[Candidate | Skipped]:
        """An explicitly given path: taken even if hidden or ignored."""
        try:
            st = os.stat(path)
        except OSError as exc:
            yield Skipped(path, _os_error_reason(exc, path))
            return
        if stat.S_ISDIR(st.st_mode):
            self.base = path
            yield from self.walk(path, st, frozenset(), ())
        else:
            self.base = None  # a file given by name is taken whatever the globs say
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
        rel = self._rel(path, is_dir)
        if is_dir and path.name in _JUNK_DIRS:
            yield Skipped(path, "excluded directory")
        elif self.exclude is not None and rel is not None and self.exclude.match_file(rel):
            yield Skipped(path, "excluded by --exclude")
        elif (
            self.include is not None
            and rel is not None
            and not is_dir
            and st is not None
            and not self.include.match_file(rel)
        ):
            yield Skipped(path, "not matched by --include")
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
        if not _utf8_name(path):  # the index stores names as UTF-8 text and cites them back
            yield Skipped(path, "file name is not valid UTF-8")
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
            kind, language = classified
            yield Candidate(path, kind, language, compressed=path.name.lower().endswith(".gz"))


def discover(
    paths: Iterable[str | Path],
    *,
    include_hidden: bool = False,
    respect_gitignore: bool = True,
    max_file_bytes: int = 10_000_000,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Candidate | Skipped]:
    """Yield a Candidate or Skipped for every file under ``paths``.

    Folders are walked recursively in sorted order, following symlinks
    (loops are reported, not followed).  Paths given explicitly are always
    taken, even when hidden or ignored.  Inside walked folders, hidden
    entries, ``.gitignore``-d entries and junk folders (``.git``,
    ``node_modules``, ``__pycache__``, virtualenvs, tool caches) yield one
    Skipped each and are not descended into.  A file reached twice (for
    example because it is given twice) is reported once.  ``include`` keeps
    only files matching one of its globs, ``exclude`` drops files and folders
    matching one of its globs (gitignore syntax, relative to each given folder).
    """
    walker = _Walker(
        include_hidden,
        respect_gitignore,
        max_file_bytes,
        _globs(include, "--include"),
        _globs(exclude, "--exclude"),
    )
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
# Parsing
# --------------------------------------------------------------------------


def parse(candidate: Candidate, data: bytes) -> Document | Skipped:
    """Decode or extract the text of a candidate's bytes."""
    if candidate.compressed:
        data = _gunzip(data)
        if isinstance(data, str):
            return Skipped(candidate.path, data)
    if candidate.kind == "pdf":
        return read_pdf(candidate, data)
    if not data.strip():
        return Skipped(candidate.path, "empty file")
    decoded = decode(data)
    if isinstance(decoded, str):
        return Skipped(candidate.path, decoded)
    text, encoding = decoded
    text = normalise_newlines(text)
    kind = candidate.kind
    if kind == "auto":
        kind = "markdown" if looks_like_markdown(text) else "text"
    if kind == "html":
        text = html_to_text(text)
        if not text.strip():
            return Skipped(candidate.path, "empty file (no visible text)")
    elif not text.strip():
        return Skipped(candidate.path, "empty file")
    return Document(candidate.path, kind, candidate.language, text, encoding)


def _gunzip(data: bytes) -> bytes | str:
    """Decompressed bytes, or a Skipped reason (corrupt, or a decompression bomb)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(_MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        return "corrupt gzip file"
    if len(out) > _MAX_DECOMPRESSED_BYTES:
        return f"too large when decompressed (> {_format_size(_MAX_DECOMPRESSED_BYTES)})"
    return out
