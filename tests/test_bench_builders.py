"""Offline suite: source readers, task builders and the by-unit split, on tiny fixtures."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.mteb_suite import builders as B
from benchmarks.mteb_suite import parse as P
from benchmarks.mteb_suite import sources as S

FIX = Path(__file__).parent / "fixtures" / "bench"
SRC = [
    {
        "registry": "debian",
        "name": "fixture",
        "version": "1.0-1",
        "pinned": "1.0-1",
        "file": "f.deb",
        "sha256": "0" * 64,
    }
]


# --------------------------------------------------------------------------- splits


def test_unit_split_is_deterministic_and_near_fraction():
    units = [f"pkg{i}" for i in range(4000)]
    sides = [B.unit_split(u, 0.2) for u in units]
    assert sides == [B.unit_split(u, 0.2) for u in units]  # pure function of the unit
    frac = sides.count("test") / len(units)
    assert 0.17 < frac < 0.23
    # a different seed gives a different split
    assert sides != [B.unit_split(u, 0.2, seed=B.SEED + 1) for u in units]


def test_stratified_split_gives_every_label_test_and_train_units():
    by = {"scifi": ["s1", "s2", "s3"], "news": [f"n{i}" for i in range(20)], "solo": ["x1"]}
    side = B.stratified_unit_split(by, 0.3)
    for label, units in by.items():
        got = [side[u] for u in units]
        assert "test" in got
        if len(units) > 1:
            assert "train" in got
    assert [side[u] for u in by["news"]].count("test") == 6


def test_check_split_catches_leaks():
    B.check_split(
        {"train": ["a", "b"], "test": ["c"]}, {"test": [{"unit": "c"}], "train": [{"unit": "a"}]}
    )
    with pytest.raises(B.SplitLeakError):
        B.check_split({"train": ["a", "b"], "test": ["b"]})
    with pytest.raises(B.SplitLeakError):
        B.check_split({"train": ["a"], "test": ["c"]}, {"test": [{"units": ["c", "a"]}]})
    with pytest.raises(B.SplitLeakError):
        B.check_split({"train": ["a"], "test": ["c"]}, {"train": [{"unit": "c"}]})


def test_reserved_sources_are_refused():
    with pytest.raises(B.ReservedSourceError):
        B.check_reserved({"sources": [{"name": "perl-doc"}]})
    with pytest.raises(B.ReservedSourceError):
        B.check_reserved({"sources": []}, ["faq/general.html"])
    with pytest.raises(S.SourceError):
        S.deb_package("perl-doc", cache=Path("/nonexistent"))
    sec = P.DocSection(
        page="faq/general.html", page_title="FAQ", title="FAQ", level=1, body="x" * 200
    )
    with pytest.raises(B.ReservedSourceError):
        B.build_python_docs_retrieval([sec], SRC)


def test_make_retrieval_merges_identical_documents_and_queries():
    corpus, queries, qrels = B.make_retrieval(
        [
            ("src1", "lib files", "shared text", ""),
            ("src1", "dev files", "shared text", ""),  # same document, different query
            ("src2", "lib files", "other text", ""),  # same query, different document
        ]
    )
    assert len(corpus) == 2 and len(queries) == 2
    by_q = {}
    for r in qrels:
        by_q.setdefault(r["query-id"], set()).add(r["corpus-id"])
    lib = next(q["id"] for q in queries if q["text"] == "lib files")
    assert len(by_q[lib]) == 2
    shared = next(c for c in corpus if c["text"] == "shared text")
    assert shared["units"] == ["src1"]


# --------------------------------------------------------------------------- Debian


def test_debian_lists_join_and_long_description(tmp_path):
    lz4_frame = pytest.importorskip("lz4.frame")

    packages = tmp_path / "x_Packages.lz4"
    packages.write_bytes(lz4_frame.compress((FIX / "debian" / "Packages").read_bytes()))
    pkgs = {p.name: p for p in P.read_debian_packages(packages, FIX / "debian" / "Translation-en")}
    assert set(pkgs) == {"frobnicate", "libfrob1", "libfrob-dev", "tuxpaint-lite", "oldthing"}
    assert pkgs["libfrob1"].source == "frobnicate"  # "Source: frobnicate (1.2-1)" -> name only
    assert pkgs["frobnicate"].long.startswith(
        "Frobnicate reads widget definitions and rewrites them in canonical form."
    )
    assert (
        "\n\nFeatures:\n- fast\n- safe" in pkgs["frobnicate"].long
    )  # paragraph break + verbatim lines
    assert pkgs["tuxpaint-lite"].section == "graphics"


def test_debian_retrieval_keeps_source_packages_together():
    pkgs = P.read_debian_packages(FIX / "debian" / "Packages", FIX / "debian" / "Translation-en")
    task = B.build_debian_retrieval(pkgs, SRC, test_fraction=1.0)
    assert task.units["train"] == [] and set(task.units["test"]) == {"frobnicate", "tuxpaint-lite"}
    texts = [q["text"] for q in task.files["queries"]]
    assert "transitional package for newthing" not in texts  # transitional packages dropped
    # libfrob1 and libfrob-dev share their long description: one document, two queries relevant to it
    assert len(task.files["corpus"]) == 3 and len(task.files["queries"]) == 4
    # with a fraction that splits, siblings never land on different sides
    for frac in (0.3, 0.5, 0.7):
        t = B.build_debian_retrieval(pkgs, SRC, test_fraction=frac)
        B.check_split(t.units, B._split_items(t))
        test_names = {u for q in t.files["queries"] for u in q["units"]}
        assert test_names <= set(t.units["test"])


def test_debian_classification_split_by_source():
    pkgs = P.read_debian_packages(FIX / "debian" / "Packages", FIX / "debian" / "Translation-en")
    many = [
        P.DebPackage(
            f"p{i}",
            f"src{i // 3}",
            "1",
            ["utils", "games"][i % 2],
            f"tool {i}",
            "a long enough description " * 3,
        )
        for i in range(60)
    ] + pkgs
    task = B.build_debian_section_classification(many, SRC, test_fraction=0.3)
    train_units = {r["unit"] for r in task.files["train"]}
    test_units = {r["unit"] for r in task.files["test"]}
    assert train_units and test_units and not (train_units & test_units)
    assert {r["label"] for r in task.files["test"]} <= set(B.DEBIAN_TOPICAL_SECTIONS)


# --------------------------------------------------------------------------- man pages


def test_man_sections_from_rendered_text():
    page = P.parse_man_page(
        (FIX / "man" / "printf.txt").read_text(), "printf.3", "manpages-dev", "3"
    )
    assert page.name_line == "printf, fprintf, sprintf - formatted output conversion"
    assert page.description.startswith("The functions in the printf() family produce output")
    assert "Format of the format string" in page.description  # subsections stay in DESCRIPTION
    assert "Upon successful return" not in page.description
    assert B.man_query(page.name_line) == "formatted output conversion"


def test_man_page_files_skip_so_stubs():
    files = P.man_page_files(FIX / "man" / "root")
    assert [(n, s) for _, n, s in files] == [("frob", "1")]


@pytest.mark.skipif(
    shutil.which("man") is None or shutil.which("col") is None, reason="man/col not installed"
)
def test_render_real_man_page():
    ((path, name, section),) = P.man_page_files(FIX / "man" / "root")
    page = P.parse_man_page(P.render_man(path), f"{name}.{section}", "fixture", section)
    assert page is not None
    assert page.name_line == "frob - frobnicate widget files"
    assert "reads widget definitions from each file" in page.description
    assert "Without a file it reads standard input." in page.description


# --------------------------------------------------------------------------- Python docs


def test_python_doc_pages_exclude_faq_and_indexes():
    pages = [rel for _, rel in P.python_doc_pages(FIX / "pydocs")]
    assert pages == ["library/json.html"]


def test_sphinx_sections_own_text_only():
    secs = P.sphinx_sections(
        (FIX / "pydocs" / "library" / "json.html").read_text(), "library/json.html"
    )
    assert [s.title for s in secs] == [
        "json — JSON encoder and decoder",
        "1.1. Basic Usage",
        "Exceptions",
    ]
    top, basic, exc = secs
    assert top.page_title == "json — JSON encoder and decoder"
    assert "lightweight data interchange format" in top.body
    assert "Serialize" not in top.body  # a subsection's text is not in its parent
    assert "json.dump(obj, fp)" in basic.body and "json.dumps([1, 2])" in basic.body
    assert "¶" not in basic.body and "not text" not in top.body and "Copyright" not in exc.body
    task = B.build_python_docs_retrieval(secs, SRC, test_fraction=1.0, min_body=20)
    assert sorted(q["text"] for q in task.files["queries"]) == [
        "json — JSON encoder and decoder",
        "json — JSON encoder and decoder: Basic Usage",
        "json — JSON encoder and decoder: Exceptions",
    ]


# --------------------------------------------------------------------------- FOLDOC


def test_dictd_reader_and_masking(tmp_path):
    dz = tmp_path / "foldoc.dict.dz"
    dz.write_bytes(gzip.compress((FIX / "foldoc" / "foldoc.dict").read_bytes()))
    for dict_path in (FIX / "foldoc" / "foldoc.dict", dz):
        entries = P.read_dictd(FIX / "foldoc" / "foldoc.index", dict_path)
        assert len(entries) == 3  # 00-database entries dropped, ATLAS grouped with its expansion
    atlas = next(e for e in entries if "atlas" in e.headwords)
    assert sorted(atlas.headwords) == ["abbreviated test language for avionics systems", "atlas"]
    defn = P.foldoc_definition(atlas)
    assert defn.startswith("(ATLAS) A Mil-spec language") and "<language>" not in defn
    assert "{" not in defn and "2000-04-03" not in defn
    items = {term: text for _, term, text in B.foldoc_items(entries)}
    assert set(items) == {
        "Abbreviated Test Language for Avionics Systems",
        "garbage collection",
    }  # ABC too short
    assert "ATLAS" not in items["Abbreviated Test Language for Avionics Systems"]
    assert (
        items["garbage collection"].startswith("The process by which")
        and "___ is done" in items["garbage collection"]
    )


# --------------------------------------------------------------------------- WordNet, Brown, gensim


def test_wordnet_nouns():
    syn = {s.offset: s for s in P.read_wordnet_nouns(FIX / "wordnet" / "data.noun")}
    assert len(syn) == 7
    assert (
        syn["02084071"].lemmas == ["dog", "domestic dog"]
        and syn["02084071"].lexname == "noun.animal"
    )
    assert syn["02084071"].definition == "a member of the genus Canis"  # examples dropped
    task = B.build_wordnet_retrieval(list(syn.values()), SRC, test_fraction=1.0)
    bank = next(q for q in task.files["queries"] if q["text"] == "bank")
    rel = [r for r in task.files["qrels"] if r["query-id"] == bank["id"]]
    assert len(rel) == 2  # two bank synsets, both relevant
    clu = B.build_wordnet_clustering(list(syn.values()), SRC, test_fraction=1.0, min_per_label=1)
    assert "noun.Tops" not in {r["label"] for r in clu.files["test"]}


def test_brown_reader_detokenizes():
    samples = {s.sample: s for s in P.read_brown(FIX / "brown")}
    assert samples["ca01"].genre == "news"
    first = samples["ca01"].paragraphs[0]
    assert first.startswith(
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent"
    )
    assert '"no evidence"' in first and first.endswith("took place.")
    assert (
        "(see below)" in samples["ca01"].paragraphs[1] and "didn't" in samples["ca01"].paragraphs[1]
    )
    assert (
        samples["ck01"].paragraphs[0]
        == "Scotty did not go back to school. His parents talked seriously."
    )


def test_brown_tasks_split_by_sample():
    rng_text = "word " * 120
    samples = [
        P.BrownSample(f"c{g}{i:02d}", g, [rng_text + str(j) for j in range(10)])
        for g in ("a", "b", "c")
        for i in range(10)
    ]
    cls = B.build_brown_classification(samples, SRC)
    B.check_split(cls.units, B._split_items(cls))
    assert {r["unit"] for r in cls.files["test"]}.isdisjoint(
        {r["unit"] for r in cls.files["train"]}
    )
    assert {r["label"] for r in cls.files["test"]} == {"a", "b", "c"}
    clu = B.build_brown_clustering(samples, SRC)
    assert {r["unit"] for r in clu.files["test"]} <= set(cls.units["test"])


def test_lee_and_word_pairs():
    docs, pairs = P.read_lee(FIX / "gensim" / "lee.cor", FIX / "gensim" / "similarities0-1.txt")
    assert len(docs) == 3 and "£400 million" in docs[0]
    assert pairs == [(0, 1, 0.3), (0, 2, 0.24), (1, 2, 0.52)]  # upper triangle only
    ws = P.read_word_pairs(FIX / "gensim" / "wordsim353.tsv")
    assert ws[0] == ("love", "sex", 6.77) and len(ws) == 4
    task = B.build_lee_sts(docs, pairs, SRC)
    assert [r["score"] for r in task.files["test"]] == [0.3, 0.24, 0.52]
    assert task.metadata()["max_score"] == 1.0


# --------------------------------------------------------------------------- writing, reading, caching


def test_write_read_roundtrip_records_versions(tmp_path):
    pkgs = P.read_debian_packages(FIX / "debian" / "Packages", FIX / "debian" / "Translation-en")
    task = B.build_debian_retrieval(pkgs, SRC, test_fraction=1.0)
    d = B.write_task(task, tmp_path)
    meta = B.verify_task_dir(d)
    assert meta["sources"][0]["version"] == "1.0-1" and meta["builder_version"] == B.BUILDER_VERSION
    assert meta["stats"]["queries"] == 4 and meta["seed"] == B.SEED
    units = json.loads((d / "units.json").read_text())
    assert units["unit_kind"] == "debian source package"
    # a tampered units file (a test unit also listed as train) is caught on re-read
    units["train"] = units["test"][:1]
    (d / "units.json").write_text(json.dumps(units))
    with pytest.raises(B.SplitLeakError):
        B.verify_task_dir(d)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / "c"))
    assert S.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(S.CACHE_ENV)
    monkeypatch.delenv("COMPSEARCH_HOME", raising=False)  # conftest points it at a temp folder
    assert S.cache_dir() == Path.home() / ".cache" / "compsearch" / "benchmarks"
    monkeypatch.setenv("COMPSEARCH_HOME", str(tmp_path / "home"))
    assert S.cache_dir() == tmp_path / "home" / "benchmarks"


def test_cached_source_record_is_reused(tmp_path):
    root = tmp_path / "raw" / "deb" / "manpages" / "root"
    root.mkdir(parents=True)
    src = S.Source(
        registry="debian",
        name="manpages",
        version="6.03-2",
        pinned="6.03-2",
        file="m.deb",
        sha256="ab" * 32,
        root=str(root),
    )
    S._save_record(root.parent, src)
    # no apt-get is called: the record and the extracted tree are there
    got = S.deb_package("manpages", cache=tmp_path)
    assert got.version == "6.03-2" and got.is_pinned and "root" not in got.record()
