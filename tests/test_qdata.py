"""training.qdata: question-shaped pairs from manuals, code and man pages, on small written samples."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from training import qdata as Q

LONG = (
    "The section explains the thing at length, and it is in English so that the language check passes. "
    * 2
)

PAGE = f"""<html><head><title>Manual</title></head><body>
<h1>Chapter 2. Installing the widget</h1><p>{LONG}</p>
<h2>2.1. Installing from source</h2><p>Run the configure script first. {LONG}</p>
<h2>Examples</h2><p>{LONG}</p>
<h2>Short one</h2><p>Too short.</p>
</body></html>"""


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "html" / "fr").mkdir(parents=True)
    (root / "html" / "_modules").mkdir()
    (root / "html" / "guide.html").write_text(PAGE)
    (root / "html" / "fr" / "guide.html").write_text(PAGE.replace("Installing", "Installer"))
    (root / "html" / "_modules" / "code.html").write_text(PAGE.replace("Installing", "Source of"))
    (root / "html" / "FAQ.html").write_text(PAGE.replace("Installing", "Why installing"))
    (root / "html" / "ls.html").write_text(PAGE.replace("Installing", "Listing"))
    return root


def _guard(tmp_path: Path, test_units=("ls.1",)):
    d = tmp_path / "tasks" / "ManPageRetrieval"
    d.mkdir(parents=True)
    (d / "units.json").write_text(json.dumps({"train": [], "test": list(test_units)}))
    return Q.man_guard(tmp_path / "tasks")


def test_headings_are_cleaned_and_generic_ones_refused():
    assert Q.clean_heading("2.1. Installing from source") == "Installing from source"
    assert Q.clean_heading("F.28.3.3. pgp_pub_encrypt()") == "pgp_pub_encrypt()"
    assert Q.clean_heading("Chapter 5. Data Definition") == "Data Definition"
    assert Q.clean_heading("◆ attached_pic") == "attached_pic"
    assert Q.usable_heading("Installing from source")
    assert (
        not Q.usable_heading("Examples")
        and not Q.usable_heading("See also")
        and not Q.usable_heading("x")
    )
    assert not Q.usable_heading("Table of Contents")


def test_section_pairs_skip_translations_faqs_sources_and_man_test_pages(tmp_path):
    rows = Q.section_pairs("mydoc", _tree(tmp_path), _guard(tmp_path))
    assert {r["unit"] for r in rows} == {"mydoc:html/guide.html"}
    assert {r["query"] for r in rows} == {"Installing the widget", "Installing from source"}
    src = next(r for r in rows if r["query"] == "Installing from source")
    assert (
        src["positive"].startswith("Run the configure script") and src["source"] == "sections:mydoc"
    )
    parent = next(r for r in rows if r["query"] == "Installing the widget")
    assert "Run the configure script" in parent["positive"]  # sub-sections belong to their parent


def test_ambiguous_headings_are_dropped(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    for i in range(5):
        (root / f"p{i}.html").write_text(f"<h2>Configuration file format</h2><p>{LONG} {i}</p>")
    (root / "one.html").write_text(f"<h2>Unique heading here</h2><p>{LONG}</p>")
    assert [r["query"] for r in Q.section_pairs("p", root)] == ["Unique heading here"]


@pytest.mark.parametrize(
    "package,rel,excluded",
    [
        ("git-doc", "usr/share/doc/git-doc/gitfaq.txt", True),  # the dev task's file
        ("zsh-doc", "usr/share/doc/zsh-common/html/FAQ03.html", True),
        ("zsh-doc", "usr/share/doc/zsh-common/html/The-Zsh-FAQ.html", True),  # any FAQ
        ("python3.11-doc", "usr/share/doc/python3.11/html/faq/general.html", True),  # reserved
        ("perl-doc", "usr/share/perl/pod/perlintro.pod", True),
        ("debian-faq", "usr/share/doc/debian/FAQ/index.html", True),
        ("zsh-doc", "usr/share/doc/zsh-common/html/Redirection.html", False),
    ],
)
def test_excluded_files(package, rel, excluded):
    assert Q.excluded_file(package, rel) is excluded


def test_no_configured_source_is_reserved_or_the_dev_task_package():
    assert "perl-doc" not in Q.DOC_PACKAGES and "debian-faq" not in Q.DOC_PACKAGES
    assert not any("python3" in p and "doc" in p for p in Q.DOC_PACKAGES)


CODE = '''
def public(a, b):
    """Add two numbers and return the sum.

    Longer text that is not the query.
    """
    c = a + b
    d = c * 1
    return d


def _private(x):
    """Private helpers are skipped entirely."""
    y = x
    z = y
    return z


def tiny():
    """Too short a body to be a useful document."""
    return 1


class Thing:
    """A thing that holds a value for later use."""

    def __init__(self, v):
        self.v = v
        self.w = v
'''


def test_code_pairs_remove_the_docstring_and_skip_private_and_tiny():
    rows = Q.code_pairs_from_source(CODE, "lib:mod.py", "code:lib", "lib")
    by = {r["query"]: r for r in rows}
    assert set(by) == {
        "Add two numbers and return the sum.",
        "A thing that holds a value for later use.",
    }
    pos = by["Add two numbers and return the sum."]["positive"]
    assert pos.startswith("def public(a, b):") and "Longer text" not in pos and '"""' not in pos
    assert by["Add two numbers and return the sum."]["unit"] == "lib:mod.py:2"
    assert Q.code_pairs_from_source("def broken(:\n", "x", "code:x", "x") == []


def test_first_sentence_and_summary_filter():
    assert Q.first_sentence("Return the path.  More text.\n\nOther") == "Return the path."
    assert (
        Q.first_sentence("Computes the inverse frequencies Args: config the model config")
        == "Computes the inverse frequencies"
    )
    assert not Q._usable_summary("See foo.")
    assert not Q._usable_summary("Load a dataset builder which can be used to:")
    assert Q._usable_summary("Load a dataset builder from the hub.")


TP_PAGE = r""".TH TOOL 1
.SH OPTIONS
.TP
\fB\-a\fR, \fB\-\-all\fR
Show all the entries. Entries whose names start with a dot are hidden otherwise, as are the backup files.
.TP
.BR \-q ", " \-\-quiet
Be quiet.
.SH SEE ALSO
"""
RS_PAGE = r""".SH "OPTIONS"
.sp
\fB\-C\fP, \fB\-\-clear\fP
.RS 4
Clear the ring buffer. The buffer is emptied after its contents have been printed to standard output.
.RE
"""


def test_man_options_both_layouts():
    assert Q.man_options(TP_PAGE) == [
        (
            "-a, --all",
            "Show all the entries. Entries whose names start with a dot are hidden otherwise, as are the backup files.",
        ),
        ("-q, --quiet", "Be quiet."),
    ]
    assert Q.man_options(RS_PAGE) == [
        (
            "-C, --clear",
            "Clear the ring buffer. The buffer is emptied after its contents have been printed to standard output.",
        )
    ]


def test_manopt_pairs_skip_man_test_pages(tmp_path):
    man1 = tmp_path / "root" / "usr" / "share" / "man" / "man1"
    man1.mkdir(parents=True)
    for name in ("tool", "ls"):
        with gzip.open(man1 / f"{name}.1.gz", "wt") as f:
            f.write(TP_PAGE)
    rows = Q.manopt_pairs("otherpkg", tmp_path / "root", _guard(tmp_path))
    assert [(r["unit"], r["query"]) for r in rows] == [("man:tool.1", "Show all the entries.")]
    assert rows[0]["positive"].startswith("-a, --all\nEntries whose names")


def test_finalize_dedupes_caps_and_splits_deterministically():
    rows = [
        {"query": f"q{i}", "positive": f"doc {i % 50}", "source": "s:a", "unit": f"u{i % 50}"}
        for i in range(100)
    ]
    rows += [
        {"query": "same", "positive": "same", "source": "s:a", "unit": "u"}
    ]  # query == positive
    rows += [
        {"query": f"b{i}", "positive": f"other {i}", "source": "s:b", "unit": f"b{i}"}
        for i in range(30)
    ]
    out = Q.finalize(rows, max_per_source=20)
    assert (
        sum(r["source"] == "s:a" for r in out) == 20
        and sum(r["source"] == "s:b" for r in out) == 20
    )
    assert len({r["positive"] for r in out}) == len(out)
    assert out == Q.finalize(rows, max_per_source=20)
    assert all(r["split"] == Q.split_of(r["unit"]) for r in out)
    sides = [Q.split_of(f"unit{i}") for i in range(5000)]
    assert 0.01 < sides.count("val") / 5000 < 0.03


def test_decontaminate_drops_positives_sharing_text_with_dev_answers(tmp_path):
    answer = (
        "Use the resume option with an offset so that the transfer continues where it stopped last time. "
        * 2
    )
    d = tmp_path / "tasks" / "FaqRetrieval"
    d.mkdir(parents=True)
    (d / "corpus.jsonl").write_text(json.dumps({"id": "d1", "title": "", "text": answer}) + "\n")
    win = Q.faq_windows(tmp_path / "tasks", None)
    rows = [
        {"query": "a", "positive": "Intro text here. " + answer[10:150] + " and more"},
        {
            "query": "b",
            "positive": "Something entirely different about widgets and their many uses. " * 3,
        },
    ]
    kept, dropped = Q.decontaminate(rows, win)
    assert dropped == 1 and [r["query"] for r in kept] == ["b"]


def test_check_rows_catches_leaks(tmp_path):
    guard = _guard(tmp_path)
    ok = [
        {
            "query": "q",
            "positive": "p",
            "source": "sections:zsh-doc",
            "unit": "zsh-doc:html/Redirection.html",
        }
    ]
    assert Q.check_rows(ok, guard)["leaks"] == 0
    for bad in (
        {"source": "sections:git-doc", "unit": "git-doc:usr/share/doc/git-doc/gitfaq.txt"},
        {"source": "manopt:coreutils", "unit": "man:ls.1", "package": "coreutils"},
        {"source": "manopt:other", "unit": "man:ls.1", "package": "other"},
    ):
        with pytest.raises(AssertionError, match="excluded files or evaluation units"):
            Q.check_rows([{"query": "q", "positive": "p", **bad}], guard)


def test_build_code_only_writes_data_manifest_and_negatives(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(6):
        f = src / f"m{i}.py"
        f.write_text(
            CODE.replace("public", f"public{i}")
            .replace("Add two", f"Add {i} and two")
            .replace("class Thing", f"class Thing{i}")
            .replace("A thing", f"A {i} thing")
        )
        files.append(f)
    monkeypatch.setattr(Q, "python_roots", lambda: [("mini", "0.1", src, files)])
    monkeypatch.setattr(Q, "faq_windows", lambda tasks, cache: set())
    m = Q.build(tmp_path / "out", cache=tmp_path / "cache", kinds=["code"], mine=True)
    rows = [json.loads(x) for x in (tmp_path / "out" / "qdata.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and m["counts"]["by_kind"] == {"code": 12}
    assert (
        m["sources"][0]["name"] == "mini"
        and m["sources"][0]["version"] == "0.1"
        and len(m["sources"][0]["sha256"]) == 64
    )
    assert m["files"]["qdata.jsonl"]["records"] == 12 and m["split"]["check"]["leaks"] == 0
    scl = [json.loads(x) for x in (tmp_path / "out" / "qdata-scl.jsonl").read_text().splitlines()]
    assert scl and all(r["negative"] != r["positive"] and r["split"] == "train" for r in scl)
    assert (
        json.loads((tmp_path / "out" / "manifest.json").read_text())["builder"] == "training.qdata"
    )


def test_cli_bad_kind_is_one_line_and_nonzero(capsys):
    assert Q.main(["build", "--out", "/nonexistent/x", "--kinds", "pictures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown kinds") and len(err.strip().splitlines()) == 1
