"""kill -9 at random moments of API writes and of maintenance: the index that remains is always a
committed one (verify clean, digests match, no committed update lost), and the next write works."""

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

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent("""
    import random
    import sys
    from compsearch import Encoder, Retriever
    from conftest import WORDS
    def text(i, salt):  # distinct texts, so verify's self-recall has no exact ties
        rng = random.Random(f"{salt}{i}")
        return " ".join(rng.choice(WORDS) for _ in range(12))
    enc = Encoder.from_base(sys.argv[2], dtype="float32", query_prompt=None)
    r = Retriever.open(sys.argv[1], enc)
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


def test_kill_9_during_api_writes_loses_no_committed_update(tmp_path, tiny_base, tiny_encoder):
    ix = tmp_path / "ix"
    Retriever.open(ix, tiny_encoder).add(["seed text"], ids=["seed"])
    rng = random.Random(7)
    trials = 5
    for _ in range(trials):
        proc = _spawn(["-c", WRITER, str(ix), str(tiny_base)], _env())
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.1, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert verify(ix) == []  # digests, SQLite, ids, self-recall
        r = Retriever.open(ix, tiny_encoder)
        ids = {h.doc_id for h in r.get()}
        b = sorted(int(x[1:]) for x in ids if x.startswith("b"))
        assert b == list(range(len(b)))  # every committed add is there, in order
        assert {f"a{i}" for i in range(len(b) - 1)}.isdisjoint(ids)  # and every delete before it
        assert r.count() == read_manifest(ix)["counts"]["chunks"] == len(ids)
    # after all that, a normal write still works
    Retriever.open(ix, tiny_encoder).add(["after the storm"], ids=["last"])
    assert verify(ix) == []


def test_kill_9_during_rebuild_leaves_the_old_index(tmp_path, tiny_encoder):
    ix = tmp_path / "ix"
    r = Retriever.open(ix, tiny_encoder)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3000, tiny_encoder.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    r.add([f"chunk {i}" for i in range(3000)], vectors=vecs)
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
