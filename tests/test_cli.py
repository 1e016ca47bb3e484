"""The command line through click's CliRunner: output, --json, and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from compsearch.cli import main

from conftest import write_corpus


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def _one_line_error(result, needle):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


def test_index_query_info(run, tiny_base, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    ix = tmp_path / "ix"
    r = run("index", docs, "--index", ix, "--model", tiny_base, "--chunk-tokens", 32, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["files_indexed"] == 4 and report["chunks_total"] > 0
    assert report["skipped_by_reason"]["hidden"] == 1
    r = run("index", docs, "--index", ix)
    assert r.exit_code == 0 and "files unchanged" in r.output and "skipped" in r.output
    r = run("query", "rotate log file", "--index", ix, "-k", 2, "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)["results"]
    assert len(hits) == 2 and {"score", "source", "start_line", "end_line", "text"} <= set(hits[0])
    r = run("query", "rotate log file", "--index", ix, "--where", "kind=markdown")
    assert r.exit_code == 0 and "1. " in r.output and ".md:" in r.output
    assert "code.py" not in r.output
    r = run("info", "--index", ix, "--json")
    info = json.loads(r.output)
    assert info["counts"]["files"] == 4 and info["encoder"]["fingerprint"]
    r = run("info", "--index", ix)
    assert r.exit_code == 0 and "fingerprint" in r.output


def test_errors_are_one_line(run, tiny_base, tmp_path):
    _one_line_error(run("query", "x", "--index", tmp_path / "none"), "no index")
    _one_line_error(run("info", "--index", tmp_path / "none"), "no index")
    ix = tmp_path / "ix"
    ix.mkdir()
    (ix / "manifest.json").write_text("garbage")
    _one_line_error(run("query", "x", "--index", ix), "corrupt")
    _one_line_error(
        run("index", tmp_path, "--index", tmp_path / "i2", "--model", tmp_path / "no-model"),
        "model not found",
    )
    _one_line_error(
        run("index", tmp_path / "docs-missing", "--index", tmp_path / "i3", "--model", tiny_base),
        "nothing to index",
    )
    _one_line_error(
        run(
            "index", tmp_path, "--index", tmp_path / "i4", "--model", tiny_base, "--chunk-tokens", 4
        ),
        "max_tokens",
    )
    r = run(
        "index",
        tmp_path,
        "--index",
        tmp_path / "i5",
        "--model",
        tiny_base,
        "--chunk-tokens",
        100_000,
    )  # checked once the encoder is loaded (after its note)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.splitlines()[-1].startswith("error: a chunk budget of 100000 tokens is above")
    _one_line_error(run("query", "  ", "--index", ix), "empty")
    r = run("query", "x", "-k", 0)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_hostile_manifest_is_one_line_for_every_command(run, tiny_base, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    ix = tmp_path / "ix"
    assert run("index", docs, "--index", ix, "--model", tiny_base).exit_code == 0
    good = json.loads((ix / "manifest.json").read_text())
    for change, needle in [
        ({"generation": "../../etc/passwd"}, "generation must be"),
        ({"generation": None}, "generation must be"),
        (
            {"index": dict(good["index"], spec={"kind": "flat", "evil": 1})},
            "unknown index parameter",
        ),
    ]:
        (ix / "manifest.json").write_text(json.dumps(dict(good, **change)))
        for cmd in [
            ("info", "--index", ix),
            ("query", "x", "--index", ix),
            ("index", docs, "--index", ix),
            ("inspect", ix),
            ("verify", ix),
            ("rebuild", ix),
            ("compact", ix),
        ]:
            _one_line_error(run(*cmd), needle)


def test_other_encoder_refused(run, tiny_base, tmp_path):
    from conftest import make_tiny_base

    docs = write_corpus(tmp_path / "docs")
    ix = tmp_path / "ix"
    assert run("index", docs, "--index", ix, "--model", tiny_base).exit_code == 0
    other = make_tiny_base(tmp_path / "other", seed=5)
    _one_line_error(run("index", docs, "--index", ix, "--model", other), "cannot be mixed")
