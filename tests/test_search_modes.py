"""Search modes: dense, lexical and hybrid (RRF / score fusion), the identifier probe, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from compsearch import CompsearchError, Retriever
from compsearch.cli import main
from compsearch.fusion import normalised, rrf, score_fusion
from compsearch.modes import fuse

# Eight identifiers, each in exactly one chunk; their parts (config, file, path, user, 2024 ...)
# also occur elsewhere so that matching a part is not enough.
PROBE = {
    "CVE-2024-3094": "the xz backdoor CVE-2024-3094 was patched in the 2024 release",
    "ENOSPC": "write failed with ENOSPC when the log volume filled up",
    "parse_config_file": "def parse_config_file(path): read the config file and return a dict",
    "os.path.join": "paths are built with os.path.join so the separator is right",
    "getUserName": "getUserName returns the login of the current user",
    "ERR_CONNECTION_REFUSED": "the browser shows ERR_CONNECTION_REFUSED when the server is down",
    "0x80070005": "windows update stops with error 0x80070005 access denied",
    "libssl.so.3": "the binary links against libssl.so.3 from the openssl package",
}
FILLER = [
    "the config file holds one key per line",
    "a file path is joined from its parts",
    "the user name and the path of the home folder",
    "the 2024 release notes list every change",
    "a connection to the server can be refused by a firewall",
    "the log volume and its size",
    "access to the file was denied for the user",
    "error codes are listed in the table",
    "parse the json value and return the data",
    "the release of the package and its version",
    "the server response header and the error value",
    "join the table on the key and sort it",
]


def test_rrf_on_hand_made_rankings():
    fused = rrf([[1, 2, 3], [3, 1, 4]], k=60)
    assert [i for _, i in fused] == [1, 3, 2, 4]
    assert fused[0][0] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][0] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[3][0] == pytest.approx(1 / 63)
    # an item found by one side only still counts; ties keep first-seen order
    assert [i for _, i in rrf([[7], [8]])] == [7, 8]
    # weights
    assert [i for _, i in rrf([[1, 2], [2, 1]], weights=[1.0, 3.0])] == [2, 1]
    assert rrf([[], []]) == []


def test_score_fusion_on_hand_made_scores():
    assert normalised([(10.0, 1), (5.0, 2), (0.0, 3)]) == {1: 1.0, 2: 0.5, 3: 0.0}
    assert normalised([(2.0, 1), (2.0, 2)]) == {1: 1.0, 2: 1.0}
    dense = [(0.9, 1), (0.8, 2), (0.1, 3)]  # normalised 1, .875, 0
    lexical = [(12.0, 3), (2.0, 4)]  # normalised 1, 0
    fused = score_fusion([dense, lexical])
    assert [i for _, i in fused] == [1, 3, 2, 4]  # 1 and 3 tie: first seen first
    scores = {i: s for s, i in fused}
    assert scores[1] == pytest.approx(0.5) and scores[2] == pytest.approx(0.4375)
    assert scores[3] == pytest.approx(0.5) and scores[4] == pytest.approx(0.0)
    # weights move the balance: lexical-heavy puts 3 first
    assert score_fusion([dense, lexical], weights=[0.2, 0.8])[0][1] == 3


def test_fuse_promotes_rare_literal_matches_and_reports_both_scores():
    dense = [(0.9, 1), (0.8, 2), (0.7, 3)]
    lexical = [(5.0, 2), (4.0, 3), (3.0, 9)]
    plain = fuse(dense, lexical, "rrf", dense_weight=0.5)
    assert [i for _, i, _ in plain][:3] == [2, 3, 1]
    # the dense weight moves the balance (and must be a share)
    assert fuse(dense, lexical, "rrf", dense_weight=1.0)[0][1] == 1
    assert fuse(dense, lexical, "score", dense_weight=0.0)[0][1] == 2
    with pytest.raises(CompsearchError, match="between 0 and 1"):
        fuse(dense, lexical, "score", dense_weight=1.5)
    assert plain[0][2] == {"dense_score": 0.8, "lexical_score": 5.0}
    promoted = fuse(dense, lexical, "rrf", literal=[9])
    assert promoted[0][1] == 9 and promoted[0][2]["dense_score"] is None
    assert fuse(dense, lexical, "score", literal=[42])[0][1] != 42  # only lexical hits move


@pytest.fixture(scope="module")
def probe_index(tiny_encoder, tmp_path_factory):
    r = Retriever.open(tmp_path_factory.mktemp("probe") / "ix", tiny_encoder)
    texts = list(PROBE.values()) + FILLER
    r.add(
        texts,
        [{"n": i, "kind": "probe" if i < len(PROBE) else "filler"} for i in range(len(texts))],
    )
    return r


@pytest.mark.parametrize("mode,fusion", [("lexical", None), ("hybrid", "rrf"), ("hybrid", "score")])
def test_identifier_probe_finds_all_eight_at_rank_one(probe_index, mode, fusion):
    found = {
        q: probe_index.search(q, k=3, mode=mode, fusion=fusion)[0].text == text
        for q, text in PROBE.items()
    }
    assert all(found.values()), found


def test_hybrid_is_the_default_and_returns_both_scores(probe_index):
    from compsearch import modes

    assert (modes.DEFAULT_MODE, modes.DEFAULT_FUSION) == ("hybrid", "score")
    hits = probe_index.search("ENOSPC", k=3)
    assert hits[0].text == PROBE["ENOSPC"]
    assert hits[0].metadata["lexical_score"] > 0 and "dense_score" in hits[0].metadata
    assert "lexical_score" not in probe_index.search("ENOSPC", k=1, mode="dense")[0].metadata


def test_lexical_mode_needs_no_encoder(probe_index, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("lexical search must not encode")

    monkeypatch.setattr(probe_index.encoder, "encode", boom)
    assert probe_index.search("getUserName", mode="lexical")[0].text == PROBE["getUserName"]
    # a query with no searchable word finds nothing rather than failing
    assert probe_index.search("?? ...", mode="lexical") == []


def test_fts_syntax_in_queries_is_text(probe_index):
    for q in ['"unbalanced', "NEAR(a b)", "config AND", "col:value", "a*", "-x", "'; DROP TABLE"]:
        probe_index.search(q, k=2, mode="lexical")
        probe_index.search(q, k=2, mode="hybrid")


def test_filters_apply_in_every_mode(probe_index):
    for mode in ("dense", "lexical", "hybrid"):
        hits = probe_index.search(
            "the config file and the user path", k=20, mode=mode, where={"kind": "filler"}
        )
        assert hits and all(h.metadata["kind"] == "filler" for h in hits), mode
        hits = probe_index.search("ENOSPC", k=5, mode=mode, where="n>=10")
        assert all(h.metadata["n"] >= 10 for h in hits), mode
        assert probe_index.search("ENOSPC", k=5, mode=mode, where={"n": {"$in": []}}) == []


def test_bad_modes_and_old_hybrid_rerank(probe_index):
    with pytest.raises(CompsearchError, match="unknown search mode 'fuzzy'"):
        probe_index.search("x", mode="fuzzy")
    with pytest.raises(CompsearchError, match="unknown fusion"):
        probe_index.search("x", fusion="max")
    with pytest.raises(CompsearchError, match="cannot be combined"):
        probe_index.search("x", mode="dense", rerank="hybrid")
    old = probe_index.search("ENOSPC", k=2, rerank="hybrid")
    assert old[0].text == PROBE["ENOSPC"] and "dense_score" in old[0].metadata


def test_cli_query_modes_and_filters(tiny_encoder, tmp_path):
    r = Retriever.open(tmp_path / "ix", tiny_encoder)
    r.add(list(PROBE.values()), [{"year": 2017 + i, "draft": i % 2 == 0} for i in range(8)])
    run = CliRunner().invoke
    for mode in ("lexical", "hybrid", "dense"):
        res = run(
            main,
            [
                "query",
                "os.path.join",
                "--index",
                str(tmp_path / "ix"),
                "--mode",
                mode,
                "--json",
                "-k",
                "8",
            ],
        )
        assert res.exit_code == 0, res.output
        hits = json.loads(res.output)["results"]
        if mode != "dense":
            assert hits[0]["text"] == PROBE["os.path.join"]
    res = run(
        main,
        [
            "query",
            "error",
            "--index",
            str(tmp_path / "ix"),
            "--json",
            "-k",
            "8",
            "--where",
            "year>=2021",
            "--where",
            "draft=false",
        ],
    )
    assert res.exit_code == 0, res.output
    years = [
        (h["metadata"]["year"], h["metadata"]["draft"]) for h in json.loads(res.output)["results"]
    ]
    assert years and all(y >= 2021 and d is False for y, d in years)
    res = run(
        main,
        [
            "query",
            "error",
            "--index",
            str(tmp_path / "ix"),
            "--json",
            "--where",
            '{"year": {"$in": [2017, 2018]}}',
        ],
    )
    assert {h["metadata"]["year"] for h in json.loads(res.output)["results"]} <= {2017, 2018}
    res = run(main, ["query", "error", "--index", str(tmp_path / "ix"), "--rerank", "hybrid"])
    assert res.exit_code == 0, res.output
    for bad, msg in [
        ("year>>2020", "bad filter"),
        ('{"year": {"$regex": "x"}}', "unknown operator"),
        ("{oops", "invalid JSON"),
        ("a b=1", "bad filter"),
    ]:
        res = run(main, ["query", "error", "--index", str(tmp_path / "ix"), "--where", bad])
        assert res.exit_code == 1 and msg in res.output and "Traceback" not in res.output, bad
        assert len(res.output.strip().splitlines()) == 1
    res = run(main, ["query", "x", "--index", str(tmp_path / "ix"), "--mode", "fuzzy"])
    assert res.exit_code != 0


@pytest.mark.slow
def test_search_modes_benchmark_on_a_tiny_task(tiny_encoder, tmp_path):
    from benchmarks.mteb_suite import search_modes as SM
    from test_bench_mteb import _tiny_suite

    tasks = _tiny_suite(tmp_path / "bench")
    res = SM.evaluate_task(
        "TinyRetrieval",
        tiny_encoder,
        "quick",
        tmp_path / "cache",
        tmp_path / "work",
        tasks_root=tasks,
    )
    assert set(res["modes"]) == set(SM.MODES) and res["n_queries"] == 6
    # the queries are words of their document: BM25 finds every one first
    assert res["modes"]["lexical"]["ndcg_at_10"] == pytest.approx(1.0)
    assert all(
        0 <= m["ndcg_at_10"] <= 1 and m["search_ms_p95"] >= m["search_ms_p50"] >= 0
        for m in res["modes"].values()
    )
    assert list((tmp_path / "cache").glob("TinyRetrieval-*.npy"))  # vectors cached
    md = SM.render(
        {
            "profile": "quick",
            "command": "x",
            "machine": "m",
            "created": "t",
            "encoder": {"name": "e", "fingerprint": "f" * 64, "max_tokens": 8},
            "tasks": {"TinyRetrieval": res},
            "suite_bm25": {"TinyRetrieval": 0.5},
        }
    )
    assert "| TinyRetrieval |" in md and "0.500" in md


def test_search_modes_report_keeps_its_hand_written_notes(tmp_path):
    from benchmarks.mteb_suite import search_modes as SM

    report = tmp_path / "search-modes.md"
    SM.write_report(report, "# tables, first run\n")
    assert report.read_text() == "# tables, first run\n"  # no notes yet: the tables alone
    report.write_text(report.read_text() + f"\n{SM.NOTES}\n## Reading\n- a note\n")
    SM.write_report(report, "# tables, second run\n")
    text = report.read_text()
    assert text.startswith("# tables, second run\n") and "first run" not in text
    assert text.endswith(f"{SM.NOTES}\n## Reading\n- a note\n")
