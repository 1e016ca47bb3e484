"""FaqRetrieval: every FAQ format on small written samples, the question filter, reserved sources."""

from __future__ import annotations

import json

import pytest

from benchmarks.mteb_suite import builders as B
from benchmarks.mteb_suite import faq as F

SRC = [
    {
        "registry": "debian",
        "name": "fixture-faq",
        "version": "1.0-1",
        "pinned": "1.0-1",
        "file": "f.deb",
        "sha256": "0" * 64,
    }
]
LONG = "This answer explains the matter at some length so that it passes the minimum answer length filter."

DEBIAN_TEXT = f"""Table of Contents

1. Basics
    1.1. What is a widget?
    1.2. How do I install a widget on a very old
        machine?

Chapter 1. Basics

1.1.\xa0What is a widget?

    A widget is a small thing that does one job well.
\xa0 \xa0 {LONG}

1.2.\xa0How do I install a widget on a very old
machine?

    Use the installer from the rescue medium.
    {LONG}

1.3.\xa0Licensing

    {LONG}

Chapter 2. More

2.1.\xa0Why is the sky blue?

    Short.
"""

CURL_TEXT = f"""FAQ

 1. Philosophy
  1.1 What is frob?
  1.2 configure fails with static libraries

 2. Usage
  2.1 How do I resume a transfer?

1. Philosophy

  1.1 What is frob?

  frob is a tool for transferring data. {LONG}

  1.2 configure fails with static libraries

  Link the dependencies too. {LONG}

2. Usage

  2.1 How do I resume a transfer?

  Use the resume option with an offset:

  1. start the transfer
  2. resume it later {LONG}
"""

ASCIIDOC_TEXT = f"""gitfoo(7)
=========

Configuration
-------------

[[user-name]]
What should I put in `user.name`?::
\tYou should put your personal name here.
\t{LONG}
+
----
$ tool config user.name "A U Thor"
----

[[editor]]
How do I configure a different editor?::
\tSet the EDITOR variable. {LONG}

Common Issues
-------------

[[tiny]]
Why is this so short?::
\tBecause.
"""

HTML_FAQ = f"""<html><head><title>Foo FAQ</title><style>h2 {{color: red}}</style></head><body>
<h1>Chapter 3: How to get things to work</h1>
<h2>3.1: Why does <code>$var</code> not split?</h2>
<a name="31"></a>
<p>Because the option is off. {LONG}</p>
<pre>
  setopt shwordsplit
</pre>
<h2>3.2: Startup files</h2>
<p>{LONG}</p>
<h2 id="meta-id"><a name="meta">How do I get the Meta key to work</a></h2>
<p>Set the resource. {LONG}</p>
<h3>Details</h3>
<p>Detailed text belongs to the same answer.</p>
<h3>Can I nest a question?</h3>
<p>Yes: this is a separate entry. {LONG}</p>
<h2 class="section">4.1 Why doesn&rsquo;t it support feature [xyz]?<span class="pull-right"><a href="#x">&para;</a> <a href="#toc">TOC</a></span></h2>
<p>Nobody wrote it yet. {LONG}</p>
<script>var x = "What is this?";</script>
</body></html>
"""

SQLITE_HTML = f"""<h2>Frequently Asked Questions</h2><ol><li><a href="#q1">How do I create an AUTOINCREMENT field?</a></li></ol>
<a name="q1"></a>
<p><b>(1) How do I create an AUTOINCREMENT field?</b></p>
<blockquote><p>Short answer: declare it INTEGER PRIMARY KEY. {LONG}</p></blockquote>
<a name="q2"></a>
<p><b>(2) What datatypes does it support?</b></p>
<blockquote><p>Several. {LONG}</p></blockquote>
"""


def _by_number(rows):
    return {n: (h, a) for n, h, a in rows}


def test_debian_text_headings_wrap_toc_is_skipped_chapters_end_answers():
    got = _by_number(F.parse_debian_faq(DEBIAN_TEXT))
    assert set(got) == {"1.1", "1.2", "1.3", "2.1"}  # the indented table of contents is not parsed
    assert got["1.2"][0] == "How do I install a widget on a very old machine?"
    assert got["1.1"][1].startswith("A widget is a small thing")
    assert "\xa0" not in got["1.1"][1] and "Chapter" not in got["1.3"][1]
    assert got["2.1"][1] == "Short."


def test_curl_text_toc_is_skipped_and_numbered_lists_stay_in_the_answer():
    got = _by_number(F.parse_curl_faq(CURL_TEXT))
    assert set(got) == {"1.1", "1.2", "2.1"}
    assert got["1.1"][1].startswith("frob is a tool") and "Usage" not in got["1.2"][1]
    assert "1. start the transfer" in got["2.1"][1] and "2. resume it later" in got["2.1"][1]


def test_asciidoc_entries_end_at_anchors_and_section_titles():
    got = _by_number(F.parse_asciidoc_faq(ASCIIDOC_TEXT))
    assert set(got) == {"user-name", "editor", "tiny"}
    assert got["user-name"][0] == "What should I put in user.name?"
    assert 'user.name "A U Thor"' in got["user-name"][1] and "----" not in got["user-name"][1]
    assert "Common Issues" not in got["editor"][1] and got["tiny"][1] == "Because."


def test_html_sections_nest_subheadings_but_not_nested_questions():
    got = {h: (n, a) for n, h, a in F.parse_html_faq(HTML_FAQ)}
    meta_n, meta_a = got["How do I get the Meta key to work"]
    assert meta_n == "meta-id"
    assert "Detailed text belongs" in meta_a and "separate entry" not in meta_a
    assert "separate entry" in got["Can I nest a question?"][1]
    n31, a31 = got["3.1: Why does $var not split?"]
    assert n31 == "3.1" and "setopt shwordsplit" in a31
    assert "Why doesn’t it support feature [xyz]?" in [
        F.clean_question(h) for h in got
    ]  # ¶/TOC links gone
    assert all("What is this?" not in a for _, a in got.values())  # script text skipped


def test_sqlite_markup_becomes_entries():
    got = _by_number(F.parse_sqlite_faq(SQLITE_HTML))
    assert set(got) == {"1", "2"}
    assert (
        got["1"][1].startswith("Short answer")
        and F.clean_question(got["2"][0]) == "What datatypes does it support?"
    )


@pytest.mark.parametrize(
    "heading,question",
    [
        ("1.5. What is Debian?", "What is Debian?"),
        ("3.1: Why does it fail?", "Why does it fail?"),
        ("(4) Is this a bug?", "Is this a bug?"),
        ("F1. Why does my old file no\nlonger work?", "Why does my old file no longer work?"),
        ("2.10 How do I  resume?", "How do I resume?"),
        ("Why, oh why?", "Why, oh why?"),
    ],
)
def test_clean_question_strips_numbering(heading, question):
    assert F.clean_question(heading) == question


@pytest.mark.parametrize(
    "text,ok",
    [
        ("What is a conffile?", True),
        ("How do I list all tables", True),
        ("Can I use it from PHP", True),
        ("I have a problem, who do I mail?", True),
        ("Is this a bug? (And other oddities.)", True),
        ("configure fails when using static libraries", False),
        ("Licensing", False),
        ("Details", False),
        ("Fetchmail dumps core when given an invalid rc file.", False),
        ("What?", False),
        ("", False),
    ],
)
def test_question_filter(text, ok):
    assert F.is_question(text) is ok


def test_keep_entries_filters_and_makes_units_unique():
    es = [
        F.FaqEntry("p", "1.1", "1.1. What is it?", LONG),
        F.FaqEntry("p", "1.1", "1.1. Why twice?", LONG),
        F.FaqEntry("p", "1.2", "1.2. Licensing", LONG),
        F.FaqEntry("p", "1.3", "1.3. Why short?", "Because."),
    ]
    kept = F.keep_entries(es)
    assert [(e.unit, e.question) for e in kept] == [
        ("p:1.1", "What is it?"),
        ("p:1.1~2", "Why twice?"),
    ]


def test_build_task_round_trip_and_dev_metadata(tmp_path):
    entries = (
        F.entries_from_text("debian-faq", "debian-text", DEBIAN_TEXT, "a.txt")
        + F.entries_from_text("libcurl4-doc", "curl-text", CURL_TEXT, "FAQ")
        + F.entries_from_text("git-doc", "asciidoc", ASCIIDOC_TEXT, "gitfaq.txt")
        + F.entries_from_text("zsh-doc", "html", HTML_FAQ, "FAQ03.html")
        + F.entries_from_text("sqlite3-doc", "sqlite-html", SQLITE_HTML, "faq.html")
    )
    task = F.build_faq_retrieval(entries, SRC)
    d = B.write_task(task, tmp_path)
    meta = B.verify_task_dir(d)
    _, files, units = B.read_task(d)
    assert units["train"] == [] and len(units["test"]) == len(files["queries"])
    assert (
        meta["dev_task"] is True
        and "git-doc:usr/share/doc/git-doc/gitfaq.txt" in meta["training_exclusions"]["files"]
    )
    per = meta["params"]["queries_per_package"]
    assert per == {"debian-faq": 2, "git-doc": 2, "libcurl4-doc": 2, "sqlite3-doc": 2, "zsh-doc": 4}
    q = {r["text"]: r for r in files["queries"]}
    assert (
        "How do I resume a transfer?" in q and "Why is the sky blue?" not in q
    )  # short answer dropped
    docs = {r["id"]: r["text"] for r in files["corpus"]}
    rel = [r for r in files["qrels"] if r["query-id"] == q["How do I resume a transfer?"]["id"]]
    assert len(rel) == 1 and "resume it later" in docs[rel[0]["corpus-id"]]


def test_reserved_sources_cannot_enter(tmp_path):
    with pytest.raises(B.ReservedSourceError):
        F.build_faq_retrieval(
            [
                F.FaqEntry(
                    "python3.11-doc",
                    "x",
                    "What is it?",
                    LONG,
                    "usr/share/doc/python3.11/html/faq/general.html",
                )
            ],
            SRC,
        )
    with pytest.raises(B.ReservedSourceError):
        F.build_faq_retrieval(
            [F.FaqEntry("perl-doc", "x", "What is it?", LONG, "perlfaq1.pod")], SRC
        )
    perl = [{**SRC[0], "name": "perl-doc"}]
    task = F.build_faq_retrieval(F.entries_from_text("git-doc", "asciidoc", ASCIIDOC_TEXT), perl)
    with pytest.raises(B.ReservedSourceError):
        B.write_task(task, tmp_path)
    # every configured source is a non-reserved package and file
    for pkg, (_pin, files) in F.FAQ_SOURCES.items():
        for rel, _fmt in files:
            F._refuse_reserved(pkg, rel)


def test_unknown_format_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown FAQ format"):
        F.entries_from_text("x", "pdf", "")


def test_registered_in_the_suite():
    from benchmarks.mteb_suite import build as BLD

    assert BLD.TASKS[F.TASK_NAME][0] == "Retrieval"
    assert json.loads(json.dumps(F.training_exclusions()))["packages"] == sorted(F.FAQ_SOURCES)
