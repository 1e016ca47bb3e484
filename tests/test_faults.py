"""kill -9 and Ctrl-C at random moments of API writes, of incremental index runs and of
maintenance: the index that remains is always a committed one (verify clean, digests match, no
committed update lost), the next write works, and a re-run equals a fresh build.

``COMPSEARCH_FAULT_TRIALS=N`` adds N trials to each (the CI run keeps the defaults small)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from compsearch import Retriever
from compsearch.indexdir import read_manifest
from compsearch.maintenance import verify

from synthetic import TextSeeded

pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("COMPSEARCH_FAULT_TRIALS", "0"))  # more trials for a local run

WRITER = textwrap.dedent("""
    import random
    import sys
    from compsearch import Retriever
    from conftest import WORDS
    from synthetic import TextSeeded
    def text(i, salt):  # distinct texts, so verify's self-recall has no exact ties
        rng = random.Random(f"{salt}{i}")
        return " ".join(rng.choice(WORDS) for _ in range(12))
    r = Retriever.open(sys.argv[1], TextSeeded())  # no torch: a writer starts in a second
    i = sum(1 for h in r.get() if (h.doc_id or "").startswith("b"))   # continue where it stopped
    r.delete([h.doc_id for h in r.get() if (h.doc_id or "").startswith("a")])  # a kill may have left the last one
    print("ready", flush=True)
    while True:
        r.add([text(i, "a"), text(i, "b")], ids=[f"a{i}", f"b{i}"])
        r.delete([f"a{i}"])
        i += 1
""")


def _spawn(args, env):
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _env():
    tests = os.path.dirname(os.path.abspath(__file__))
    return dict(
        os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests])
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_9_during_api_writes_loses_no_committed_update(tmp_path, sig):
    ix = tmp_path / "ix"
    Retriever.open(ix, TextSeeded()).add(["seed text"], ids=["seed"])
    rng = random.Random(7)
    trials = (5 if sig == signal.SIGKILL else 3) + TRIALS
    for _ in range(trials):
        proc = _spawn(["-c", WRITER, str(ix)], _env())
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert verify(ix) == []  # digests, SQLite, ids, self-recall
        r = Retriever.open(ix, TextSeeded())
        ids = {h.doc_id for h in r.get()}
        b = sorted(int(x[1:]) for x in ids if x.startswith("b"))
        assert b == list(range(len(b)))  # every committed add is there, in order
        assert {f"a{i}" for i in range(len(b) - 1)}.isdisjoint(ids)  # and every delete before it
        assert r.count() == read_manifest(ix)["counts"]["chunks"] == len(ids)
    # after all that, a normal write still works
    Retriever.open(ix, TextSeeded()).add(["after the storm"], ids=["last"])
    assert verify(ix) == []
    print(f"fault matrix, api add/delete, {sig.name}: {trials} trials, {trials} survived, 0 lost")


def _filled(ix, encoder, n: int = 3000):
    """An index of ``n`` chunks with random unit vectors (nothing encoded), and the vectors."""
    r = Retriever.open(ix, encoder)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, encoder.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    r.add([f"chunk {i}" for i in range(n)], vectors=vecs)
    return r, vecs


def test_kill_9_during_rebuild_leaves_the_old_index(tmp_path, tiny_encoder):
    ix = tmp_path / "ix"
    _filled(ix, tiny_encoder)
    before = read_manifest(ix)
    delays = random.Random(3)
    for kind in ("hnsw", "ivf", "ivf-sq8"):
        proc = _spawn(["-m", "compsearch", "rebuild", str(ix), "--type", kind], _env())
        time.sleep(delays.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        now = read_manifest(ix)
        assert now["generation"] in (before["generation"], before["generation"] + 1)
        assert verify(ix) == [] and Retriever.open(ix, tiny_encoder).count() == 3000
        before = now


# ---------------------------------------------------------------- the fault matrix


def _docs(root, version: int, rng) -> None:
    """A corpus that changes between versions: files added, edited, deleted, left alone."""
    from conftest import WORDS

    root.mkdir(exist_ok=True)
    for p in root.iterdir():
        p.unlink()
    for i in range(30):
        if (i + version) % 7 == 0:
            continue  # deleted in this version
        salt = version if i % 3 == 0 else 0  # edited in this version
        words = random.Random(f"{i}-{salt}")
        paras = [" ".join(words.choice(WORDS) for _ in range(40)) for _ in range(8)]
        (root / f"doc{i:03d}.md").write_text(f"# Doc {i}\n\n" + "\n\n".join(paras) + "\n")


def _state(ix):
    r = Retriever.open(ix)
    store, _ = r._open_read()
    chunks = sorted(
        (c.source, c.start_line, c.text) for c in store.get(store.all_ids().tolist()).values()
    )
    files = sorted(store.files().items())
    top = [[(h.source, h.start_line) for h in r.search(q, k=5)] for q in ("json parse", "log file")]
    r.close()
    return chunks, files, top


def _cli(args, env):
    return _spawn(["-m", "compsearch", *args], env)


def _wait_for_writer(ix, proc, limit=60.0) -> bool:
    """Until the writer holds the store's write lock (False: it finished first)."""
    import sqlite3

    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        db = sqlite3.connect(ix / "chunks.sqlite", timeout=0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return True
        finally:
            db.close()
        time.sleep(0.01)
    return False


def test_fault_matrix_incremental_index_runs(tmp_path, tiny_base):
    """kill -9 and Ctrl-C at random points of incremental `compsearch index` runs (files added,
    edited and deleted): the old index answers, verify passes, the re-run equals a fresh build."""
    from click.testing import CliRunner

    from compsearch.cli import main

    docs, ix, env = tmp_path / "docs", tmp_path / "ix", _env()
    rng = random.Random(11)
    runner = CliRunner()
    _docs(docs, 0, rng)
    args = [
        "index",
        str(docs),
        "--index",
        str(ix),
        "--model",
        str(tiny_base),
        "--chunk-tokens",
        "48",
    ]
    assert runner.invoke(main, args).exit_code == 0
    tally = {"trials": 0, "interrupted": 0, "survived": 0, "lost": 0}
    signals = [signal.SIGKILL] * (2 + TRIALS) + [signal.SIGINT] * (1 + TRIALS // 2)
    for version, sig in enumerate(signals, 1):
        before = _state(ix)
        _docs(docs, version, rng)
        proc = _cli(args, env)
        _wait_for_writer(ix, proc)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        tally["trials"] += 1
        tally["interrupted"] += proc.returncode != 0
        if sig == signal.SIGINT and proc.returncode == 130:
            assert "Traceback" not in err and "interrupted" in err, err
        # 0 or -2 after a Ctrl-C: it landed after the run, while the interpreter was exiting (a
        # library's atexit hook may say so); never a traceback from the run itself
        at_exit = proc.returncode in (0, -2) and "Exception ignored in atexit" in err
        assert proc.returncode in (0, 130, -9, -2), err[-2000:]
        assert "Traceback" not in err or at_exit, err[-2000:]
        why = []
        if verify(ix) != []:
            why.append(f"verify after the signal: {verify(ix)}")
        now = _state(ix)  # the old index answers, or the new one (the signal came after the commit)
        fresh = tmp_path / f"fresh{version}"
        assert runner.invoke(main, [*args[:3], str(fresh), *args[4:]]).exit_code == 0
        want = _state(fresh)
        if now not in (before, want):
            why.append(f"neither the old index nor the new one (exit {proc.returncode})")
        assert runner.invoke(main, args).exit_code == 0  # the re-run completes it
        if verify(ix) != []:
            why.append(f"verify after the re-run: {verify(ix)}")
        got = _state(ix)
        for part, a, b in zip(("chunks", "files", "top-5"), got, want):
            if a != b:
                why.append(f"re-run differs from a fresh build in {part}")
        ok = not why
        tally["survived" if ok else "lost"] += 1
        assert ok, (tally, why, sig.name, proc.returncode, err[-1500:])
    print("fault matrix, incremental runs:", tally)


@pytest.mark.parametrize("command", ["compact", "rebuild"])
def test_fault_matrix_maintenance(tmp_path, tiny_encoder, command):
    ix = tmp_path / "ix"
    r, vecs = _filled(ix, tiny_encoder)
    r.delete(list(range(0, 3000, 7)))  # tombstones for compact to fold
    want = sorted(h.text for h in r.get())
    delays, trials = random.Random(5), 0
    for sig in [signal.SIGKILL, signal.SIGINT] * (1 + TRIALS // 2):
        args = [command, str(ix)] + (["--type", "ivf"] if command == "rebuild" else [])
        proc = _cli(args, _env())
        _wait_for_writer(ix, proc)
        time.sleep(delays.uniform(0.0, 0.5))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err[-2000:]
        assert verify(ix) == []
        fresh = Retriever.open(ix, tiny_encoder)
        assert sorted(h.text for h in fresh.get()) == want
        assert fresh.search_vectors(vecs[1:2], 1, mode="dense")[0][0].text == "chunk 1"
        trials += 1
    print(f"fault matrix, {command}: {trials} trials, {trials} survived, 0 lost")
