"""Interrupting a real `compsearch index` process (Ctrl-C and kill -9) never damages the index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from compsearch import Retriever
from compsearch.cli import main
from compsearch.indexdir import read_manifest

from conftest import WORDS

pytestmark = pytest.mark.slow


def _write_docs(root: Path, n: int, salt: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(400)]
        paras = [" ".join(words[p : p + 40]) for p in range(0, 400, 40)]
        (root / f"doc{i:04d}.md").write_text(f"# Doc {i} {salt}\n\n" + "\n\n".join(paras) + "\n")


def _state(ix: Path):
    r = Retriever.open(ix)
    store, _ = r._open_read()
    chunks = sorted(
        (c.source, c.start_line, c.text) for c in store.get(store.all_ids().tolist()).values()
    )
    r.close()
    return read_manifest(ix)["generation"], chunks


def _start(docs, ix, model, home):
    env = dict(os.environ, COMPSEARCH_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compsearch",
            "index",
            str(docs),
            "--index",
            str(ix),
            "--model",
            str(model),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_work(ix: Path, proc, timeout=120.0) -> None:
    """Block until the writer has started its transaction (it holds the store's write lock)."""
    import sqlite3

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        db = sqlite3.connect(ix / "chunks.sqlite", timeout=0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError:  # "database is locked": the writer is at work
            return
        finally:
            db.close()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("indexing never started")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_index_keeps_previous_and_next_run_completes(sig, tiny_base, tmp_path):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    _write_docs(docs, 20, "v1")
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["index", str(docs), "--index", str(ix), "--model", str(tiny_base)]
        ).exit_code
        == 0
    )
    before = _state(ix)
    _write_docs(docs, 150, "v2")  # every file changes, many are new: a long second run

    proc = _start(docs, ix, tiny_base, os.environ["COMPSEARCH_HOME"])
    _wait_for_work(ix, proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else -9), (out, err)
    if sig == signal.SIGINT:
        assert "Traceback" not in err and "interrupted" in err
        assert not any(p.name.startswith(".tmp-") for p in ix.iterdir())
    assert _state(ix) == before  # the previous index, intact and loadable

    r = runner.invoke(main, ["index", str(docs), "--index", str(ix)])
    assert r.exit_code == 0, r.output
    after = _state(ix)
    assert after[0] == before[0] + 1
    assert not any(p.name.startswith((".tmp-",)) for p in ix.iterdir())
    # no half-written base is left: only the one the manifest names (and the previous one)
    bases = sorted(p.name for p in ix.iterdir() if p.name.startswith("base-"))
    assert read_manifest(ix)["base"]["file"] == bases[-1] and len(bases) <= 2
    fresh = tmp_path / "fresh"
    assert (
        runner.invoke(
            main, ["index", str(docs), "--index", str(fresh), "--model", str(tiny_base)]
        ).exit_code
        == 0
    )
    assert after[1] == _state(fresh)[1]
