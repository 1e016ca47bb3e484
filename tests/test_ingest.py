"""Tests for compsearch.ingest: discovery, reading, decoding, HTML and PDF."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from compsearch import ingest
from compsearch.ingest import (
    Candidate,
    Document,
    Skipped,
    classify_path,
    content_hash,
    discover,
    html_to_text,
    load,
    parse,
    read_bytes,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def write(path: Path, content: str | bytes = "hello\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def run(paths, **kwargs) -> tuple[list[Candidate], dict[Path, str]]:
    candidates: list[Candidate] = []
    skipped: dict[Path, str] = {}
    for item in discover(paths, **kwargs):
        if isinstance(item, Candidate):
            candidates.append(item)
        else:
            skipped[item.path] = item.reason
    return candidates, skipped


def rel(root: Path, items) -> list[str]:
    return [Path(c.path if hasattr(c, "path") else c).relative_to(root).as_posix() for c in items]


def candidate(path: str | Path, kind: str = "text", language: str | None = None) -> Candidate:
    return Candidate(Path(path), kind, language)


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal, valid PDF: one Helvetica text line per string, per page."""
    n = len(pages)
    page_ids = [3 + 2 * i for i in range(n)]
    font_id = 3 + 2 * n
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
    ]
    for page_id, lines in zip(page_ids, pages):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.txt", ("text", None)),
        ("README.md", ("markdown", None)),
        ("guide.RST", ("rst", None)),
        ("page.htm", ("html", None)),
        ("paper.pdf", ("pdf", None)),
        ("main.py", ("code", "python")),
        ("app.tsx", ("code", "typescript")),
        ("lib.rs", ("code", "rust")),
        ("conf.yml", ("code", "yaml")),
        ("README", ("auto", None)),  # decided by content: text or Markdown
        ("LICENSE", ("auto", None)),
        ("Makefile", ("code", "make")),
        ("server.log", None),
        ("image.png", None),
        ("randomname", ("auto", None)),
        ("Apache-2.0", ("auto", None)),
        ("README.Debian", ("auto", None)),
        ("notes.txt.gz", ("text", None)),
        ("changelog.Debian.gz", ("auto", None)),
        ("paper.pdf.gz", None),
        ("archive.tar.gz", None),
    ],
)
def test_classify_path(name, expected):
    assert classify_path(Path(name)) == expected


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


def test_discover_walks_sorted_and_recursive(tmp_path):
    write(tmp_path / "b.md")
    write(tmp_path / "a.txt")
    write(tmp_path / "sub" / "z.py", "x = 1\n")
    write(tmp_path / "sub" / "deeper" / "c.rst")
    write(tmp_path / "c.html", "<p>hi</p>")
    candidates, skipped = run([tmp_path])
    assert rel(tmp_path, candidates) == [
        "a.txt",
        "b.md",
        "c.html",
        "sub/deeper/c.rst",
        "sub/z.py",
    ]
    assert not skipped
    kinds = {c.path.name: (c.kind, c.language) for c in candidates}
    assert kinds["z.py"] == ("code", "python")
    assert kinds["c.html"] == ("html", None)
    assert all(c.path.is_absolute() for c in candidates)


def test_discover_is_deterministic(tmp_path):
    for name in ["q.txt", "B.txt", "a.txt", "dir/x.md", "Dir2/y.md"]:
        write(tmp_path / name)
    first = [c.path for c in discover([tmp_path])]
    second = [c.path for c in discover([tmp_path])]
    assert first == second


def test_discover_paths_are_absolute_and_normalised(tmp_path, monkeypatch):
    write(tmp_path / "docs" / "a.txt")
    monkeypatch.chdir(tmp_path)
    candidates, _ = run(["docs/../docs/a.txt"])
    assert candidates[0].path == tmp_path / "docs" / "a.txt"


def test_discover_skips_hidden_entries_once(tmp_path):
    write(tmp_path / "visible.txt")
    write(tmp_path / ".secret.txt")
    write(tmp_path / ".hidden_dir" / "a.txt")
    write(tmp_path / ".hidden_dir" / "b.txt")
    candidates, skipped = run([tmp_path])
    assert rel(tmp_path, candidates) == ["visible.txt"]
    assert skipped == {
        tmp_path / ".secret.txt": "hidden",
        tmp_path / ".hidden_dir": "hidden",
    }


def test_discover_include_hidden(tmp_path):
    write(tmp_path / ".secret.txt")
    write(tmp_path / ".hidden_dir" / "a.txt")
    candidates, _ = run([tmp_path], include_hidden=True)
    assert rel(tmp_path, candidates) == [".hidden_dir/a.txt", ".secret.txt"]


def test_explicit_hidden_file_is_taken(tmp_path):
    hidden = write(tmp_path / ".notes.txt")
    candidates, skipped = run([hidden])
    assert [c.path for c in candidates] == [hidden]
    assert not skipped


def test_discover_skips_junk_dirs(tmp_path):
    write(tmp_path / "keep.py", "x = 1\n")
    write(tmp_path / "node_modules" / "pkg" / "index.js", "x\n")
    write(tmp_path / "__pycache__" / "m.py", "x\n")
    write(tmp_path / "venv" / "lib.py", "x\n")
    write(tmp_path / ".git" / "config.txt")
    write(tmp_path / "build" / "out.txt")  # build/ is NOT junk
    candidates, skipped = run([tmp_path], include_hidden=True)
    assert rel(tmp_path, candidates) == ["build/out.txt", "keep.py"]
    assert skipped[tmp_path / "node_modules"] == "excluded directory"
    assert skipped[tmp_path / ".git"] == "excluded directory"
    assert len(skipped) == 4  # one entry per junk dir, nothing inside them


def test_gitignore_root_and_nested(tmp_path):
    write(tmp_path / ".gitignore", "*.log.txt\nsecret/\n/top-only.txt\n")
    write(tmp_path / "a.txt")
    write(tmp_path / "debug.log.txt")
    write(tmp_path / "top-only.txt")
    write(tmp_path / "secret" / "x.txt")
    write(tmp_path / "sub" / ".gitignore", "drafts/\n!keep.log.txt\n*.md\n")
    write(tmp_path / "sub" / "top-only.txt")  # anchored pattern only applies at root
    write(tmp_path / "sub" / "keep.log.txt")  # re-included by the nested file
    write(tmp_path / "sub" / "other.log.txt")
    write(tmp_path / "sub" / "notes.md")
    write(tmp_path / "sub" / "drafts" / "d.txt")
    write(tmp_path / "other" / "notes.md")  # nested rule does not apply here
    candidates, skipped = run([tmp_path])
    assert rel(tmp_path, candidates) == [
        "a.txt",
        "other/notes.md",
        "sub/keep.log.txt",
        "sub/top-only.txt",
    ]
    ignored = sorted(rel(tmp_path, [p for p, r in skipped.items() if r == "ignored by .gitignore"]))
    assert ignored == [
        "debug.log.txt",
        "secret",
        "sub/drafts",
        "sub/notes.md",
        "sub/other.log.txt",
        "top-only.txt",
    ]


def test_gitignore_can_be_disabled(tmp_path):
    write(tmp_path / ".gitignore", "*.txt\n")
    write(tmp_path / "a.txt")
    candidates, _ = run([tmp_path], respect_gitignore=False)
    assert rel(tmp_path, candidates) == ["a.txt"]


def test_explicit_ignored_file_is_taken(tmp_path):
    write(tmp_path / ".gitignore", "*.txt\n")
    path = write(tmp_path / "a.txt")
    candidates, _ = run([path])
    assert [c.path for c in candidates] == [path]


def test_symlinks_followed_and_loops_detected(tmp_path):
    write(tmp_path / "real" / "doc.txt")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    os.symlink(tmp_path, tmp_path / "real" / "loop")
    os.symlink(tmp_path / "real" / "doc.txt", tmp_path / "link.txt")
    candidates, skipped = run([tmp_path])
    assert rel(tmp_path, candidates) == [
        "alias/doc.txt",
        "link.txt",
        "real/doc.txt",
    ]
    assert skipped[tmp_path / "real" / "loop"] == "symlink loop"
    assert skipped[tmp_path / "alias" / "loop"] == "symlink loop"


def test_self_referencing_symlink(tmp_path):
    os.symlink(tmp_path / "me.txt", tmp_path / "me.txt")
    _, skipped = run([tmp_path])
    assert skipped == {tmp_path / "me.txt": "symlink loop"}


def test_broken_symlink_and_missing_path(tmp_path):
    os.symlink(tmp_path / "nowhere.txt", tmp_path / "dangling.txt")
    candidates, skipped = run([tmp_path, tmp_path / "missing.md", tmp_path / "dangling.txt"])
    assert candidates == []
    assert skipped == {
        tmp_path / "dangling.txt": "broken symlink",
        tmp_path / "missing.md": "not found",
    }


def test_too_large_unsupported_and_empty(tmp_path):
    write(tmp_path / "big.txt", "x" * 2_000)
    write(tmp_path / "small.txt", "x" * 10)
    write(tmp_path / "empty.txt", "")
    write(tmp_path / "data.xyz", "x")
    write(tmp_path / "noext", "x")
    write(tmp_path / "app.log", "x")
    write(tmp_path / "package-lock.json", "{}")
    candidates, skipped = run([tmp_path], max_file_bytes=1_000)
    # unknown or no extension: decided by content at parse time ("x" is text)
    assert rel(tmp_path, candidates) == ["data.xyz", "noext", "small.txt"]
    assert skipped[tmp_path / "big.txt"] == "too large (2.0 KB > 1.0 KB)"
    assert skipped[tmp_path / "empty.txt"] == "empty file"
    assert skipped[tmp_path / "app.log"] == "unsupported type '.log'"
    assert skipped[tmp_path / "package-lock.json"] == "generated file"


def test_too_large_reason_in_megabytes(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:
        handle.truncate(12_300_000)  # sparse: cheap to create
    _, skipped = run([path])
    assert skipped[path] == "too large (12.3 MB > 10.0 MB)"


def test_duplicate_paths_reported_once(tmp_path):
    path = write(tmp_path / "a.txt")
    candidates, _ = run([tmp_path, path, str(path)])
    assert [c.path for c in candidates] == [path]


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def test_content_hash_is_sha256():
    assert content_hash(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_read_bytes_missing(tmp_path):
    result = read_bytes(tmp_path / "gone.txt")
    assert result == Skipped(tmp_path / "gone.txt", "not found")


@pytest.mark.skipif(IS_ROOT, reason="root can read files regardless of permissions")
def test_read_bytes_unreadable_chmod(tmp_path):
    path = write(tmp_path / "locked.txt")
    path.chmod(0)
    try:
        result = read_bytes(path)
    finally:
        path.chmod(0o644)
    assert isinstance(result, Skipped)
    assert result.reason == "unreadable: Permission denied"


def test_read_bytes_unreadable_monkeypatched(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.txt")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ingest, "open", deny, raising=False)
    result = read_bytes(path)
    assert result == Skipped(path, "unreadable: Permission denied")
    document, digest = load(candidate(path))
    assert document == Skipped(path, "unreadable: Permission denied")
    assert digest is None


def test_load_returns_document_and_hash(tmp_path):
    path = write(tmp_path / "a.md", "# Hi\r\nthere\r\n")
    document, digest = load(candidate(path, "markdown"))
    assert isinstance(document, Document)
    assert document.text == "# Hi\nthere\n"
    assert document.kind == "markdown"
    assert digest == content_hash(path.read_bytes())


# --------------------------------------------------------------------------
# parsing text
# --------------------------------------------------------------------------


def test_parse_utf8_with_bom_and_newlines():
    data = "\ufeffline one\r\nline two\rline three\n".encode()
    document = parse(candidate("/x/a.txt"), data)
    assert isinstance(document, Document)
    assert document.text == "line one\nline two\nline three\n"
    assert document.encoding == "utf-8"


def test_parse_utf16_with_bom():
    data = "hello wörld\n".encode("utf-16")
    document = parse(candidate("/x/a.txt"), data)
    assert isinstance(document, Document)
    assert document.text == "hello wörld\n"


def test_parse_binary():
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    assert parse(candidate("/x/a.txt"), data) == Skipped(Path("/x/a.txt"), "binary file")


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  "])
def test_parse_empty(data):
    assert parse(candidate("/x/a.txt"), data) == Skipped(Path("/x/a.txt"), "empty file")


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café crème brûlée — naïve façade, déjà vu. “Très bien” … €10\n", "cp1252"),
        ("The café served crème brûlée; the naïve critic said “superb”.\n", "cp1252"),
        ("Grüße aus München! Die Bäume sind grün und die Straße ist schön.\n", "latin-1"),
        ("Résumé\n", "latin-1"),
    ],
)
def test_parse_legacy_western_encodings(text, encoding):
    document = parse(candidate("/x/a.txt"), text.encode(encoding))
    assert isinstance(document, Document)
    assert document.text == text
    assert document.encoding != "utf-8"


def test_parse_other_legacy_encoding_via_charset_normalizer():
    text = "Привет, как дела? Это тест кодировки для русского текста.\n" * 3
    document = parse(candidate("/x/a.txt"), text.encode("cp1251"))
    assert isinstance(document, Document)
    assert document.text == text


def test_parse_undecodable_bytes():
    rng = random.Random(1234)
    data = bytes(rng.randrange(1, 256) for _ in range(3000))
    result = parse(candidate("/x/a.txt"), data)
    assert isinstance(result, Skipped)
    assert result.reason.startswith("undecodable text (")


def test_parse_never_raises_on_garbage():
    rng = random.Random(99)
    for kind in ["text", "markdown", "html", "code", "pdf", "rst"]:
        for size in [1, 10, 500]:
            data = bytes(rng.randrange(0, 256) for _ in range(size))
            result = parse(candidate("/x/f", kind), data)
            assert isinstance(result, (Document, Skipped))


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>My &amp; Page</title>
  <style>body { color: red; }</style>
  <script>
    var x = "<p>not text</p>";
  </script>
</head>
<body>
  <h1>Main   Title</h1>
  <p>First paragraph
     continues with <b>bold</b> text.</p>
  <h2>
     Sub heading
  </h2>
  <ul><li>one</li><li>two</li></ul>
  <pre>
  indented code
  </pre>
  <noscript>enable javascript</noscript>
  <div>a<br>b</div>
</body>
</html>"""


def test_html_keeps_source_lines_and_drops_scripts():
    document = parse(candidate("/x/p.html", "html"), HTML.encode())
    assert isinstance(document, Document)
    assert document.kind == "html"
    lines = document.text.split("\n")
    assert len(lines) == len(HTML.split("\n"))
    assert lines[4] == "My & Page"  # <title> is kept
    assert lines[11] == "# Main Title"
    assert lines[12] == "First paragraph"
    assert lines[13] == "continues with bold text."
    assert lines[14] == "## Sub heading"  # heading on the line of its start tag
    assert lines[17] == "one two"
    assert lines[19] == "  indented code"  # <pre> keeps whitespace
    assert lines[22] == "a b"
    for hidden in ["color", "not text", "var x", "enable javascript", "utf-8"]:
        assert hidden not in document.text


def test_html_heading_sharing_a_line_is_not_a_markdown_heading():
    text = html_to_text("<h2>Title</h2><p>Body text</p>\n<h3>Alone</h3>")
    assert text.split("\n") == ["Title Body text", "### Alone"]


def test_html_crlf_and_line_break_in_heading():
    source = "<h1>Big<br>Title</h1>\r\n<p>x</p>\r\n"
    document = parse(candidate("/x/p.html", "html"), source.encode())
    assert isinstance(document, Document)
    assert document.text.split("\n") == ["# Big Title", "x", ""]


def test_html_without_visible_text_is_skipped():
    result = parse(candidate("/x/p.html", "html"), b"<html><script>x()</script></html>")
    assert isinstance(result, Skipped)
    assert result.reason.startswith("empty file")


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------


def test_pdf_text_and_page_starts():
    data = make_pdf([["Hello page one", "second line"], ["Page (two) text"], []])
    document = parse(candidate("/x/d.pdf", "pdf"), data)
    assert isinstance(document, Document)
    assert document.encoding == "pdf"
    assert document.text.split("\n") == [
        "Hello page one",
        "second line",
        "Page (two) text",
        "",
    ]
    assert document.page_starts == [1, 3, 4]


def test_pdf_from_disk_via_load(tmp_path):
    path = write(tmp_path / "d.pdf", make_pdf([["Just one page"]]))
    candidates, _ = run([tmp_path])
    assert candidates == [Candidate(path, "pdf", None)]
    document, digest = load(candidates[0])
    assert isinstance(document, Document)
    assert document.text == "Just one page"
    assert document.page_starts == [1]
    assert digest is not None


def test_pdf_without_text():
    result = parse(candidate("/x/d.pdf", "pdf"), make_pdf([[], []]))
    assert result == Skipped(Path("/x/d.pdf"), "PDF has no extractable text")


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(data)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf():
    plain = make_pdf([["Secret text"]])
    locked = parse(candidate("/x/d.pdf", "pdf"), encrypt_pdf(plain, "pw"))
    assert locked == Skipped(Path("/x/d.pdf"), "PDF could not be parsed: encrypted")
    # an empty user password (owner-only protection) is opened transparently
    opened = parse(candidate("/x/d.pdf", "pdf"), encrypt_pdf(plain, ""))
    assert isinstance(opened, Document)
    assert opened.text == "Secret text"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\nthis is not really a pdf\n",
        make_pdf([["Hello"]])[:150],
        b"",
    ],
)
def test_corrupt_pdf_is_skipped(data):
    result = parse(candidate("/x/d.pdf", "pdf"), data)
    assert isinstance(result, Skipped)
    assert result.reason.startswith("PDF could not be parsed: ")


def test_files_without_known_extensions_are_decided_by_content(tmp_path):
    write(tmp_path / "NEWS", "Version 2.1\n\n* fixed the parser\n")
    write(
        tmp_path / "README.Debian",
        "# Debian notes\n\nSee [the wiki](https://wiki.debian.org).\n\n## Setup\n",
    )
    write(tmp_path / "Apache-2.0", "Apache License\nVersion 2.0, January 2004\n")
    (tmp_path / "blob.dat").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    candidates, _ = run([tmp_path])
    docs = {c.path.name: parse(c, c.path.read_bytes()) for c in candidates}
    assert docs["NEWS"].kind == "text" and docs["Apache-2.0"].kind == "text"
    assert docs["README.Debian"].kind == "markdown"
    assert isinstance(docs["blob.dat"], Skipped) and docs["blob.dat"].reason == "binary file"


def test_gzip_text_is_read_decompressed(tmp_path):
    import gzip

    (tmp_path / "changelog.gz").write_bytes(
        gzip.compress(b"pkg (1.2) unstable\n\n  * fixed ENOSPC\n")
    )
    (tmp_path / "notes.txt.gz").write_bytes(b"not gzip at all")
    candidates, _ = run([tmp_path])
    docs = {c.path.name: parse(c, c.path.read_bytes()) for c in candidates}
    assert "fixed ENOSPC" in docs["changelog.gz"].text and docs["changelog.gz"].kind == "text"
    assert docs["notes.txt.gz"] == Skipped(tmp_path / "notes.txt.gz", "corrupt gzip file")


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    import gzip

    import compsearch.ingest as ingest

    monkeypatch.setattr(ingest, "_MAX_DECOMPRESSED_BYTES", 1_000)
    (tmp_path / "big.txt.gz").write_bytes(gzip.compress(b"a" * 5_000))
    (cand,), _ = run([tmp_path])
    assert parse(cand, cand.path.read_bytes()).reason.startswith("too large when decompressed")


def test_include_and_exclude_globs(tmp_path):
    write(tmp_path / "docs" / "a.md", "# A\n")
    write(tmp_path / "docs" / "b.txt", "b\n")
    write(tmp_path / "build" / "c.md", "# C\n")
    write(tmp_path / "src" / "d.py", "x = 1\n")
    candidates, skipped = run([tmp_path], include=["*.md", "*.py"], exclude=["build/"])
    assert rel(tmp_path, candidates) == ["docs/a.md", "src/d.py"]
    assert skipped[tmp_path / "build"] == "excluded by --exclude"
    assert skipped[tmp_path / "docs" / "b.txt"] == "not matched by --include"
    # a file given by name is taken whatever the globs say
    candidates, _ = run([tmp_path / "docs" / "b.txt"], include=["*.md"])
    assert [c.path.name for c in candidates] == ["b.txt"]
