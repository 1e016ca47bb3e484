"""compsearch.maintenance and its commands: inspect, verify (including detecting damage), rebuild,
compact, choose."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from compsearch import Retriever
from compsearch.indexdir import read_manifest, store_path
from compsearch.cli import main
from compsearch.maintenance import compact, inspect, rebuild, verify

TEXTS = [
    f"{a} {b} {c}"
    for a in ["json", "log", "http", "file", "page"]
    for b in ["parse", "rotate", "sort", "print", "build"]
    for c in ["value", "key", "size", "data"]
]


def _index(tiny_encoder, root):
    r = Retriever.open(root, tiny_encoder)
    r.add(TEXTS)
    return r


def test_inspect_verify_rebuild_compact(tiny_encoder, tmp_path):
    _index(tiny_encoder, tmp_path / "ix")
    info = inspect(tmp_path / "ix")
    assert info["vectors"] == info["chunks"] == len(TEXTS) and info["index_type"] == "flat"
    assert info["bytes"]["faiss"] > 0 and info["bytes"]["encoder"] > 0
    assert verify(tmp_path / "ix") == []
    m = rebuild(tmp_path / "ix", "ivf", nlist=2, nprobe=2)
    assert m["index"]["spec"]["kind"] == "ivf" and m["index"]["spec"]["nlist"] == 2
    assert verify(tmp_path / "ix") == []
    r2 = Retriever.open(tmp_path / "ix")
    assert r2.search(TEXTS[3], k=1)[0].text == TEXTS[3]
    r2.delete(where={"source": "<api>"})
    m = compact(tmp_path / "ix")
    assert m["index"]["ntotal"] == 0 and verify(tmp_path / "ix") == []


def test_verify_detects_damage(tiny_encoder, tmp_path):
    _index(tiny_encoder, tmp_path / "ix")
    manifest = read_manifest(tmp_path / "ix")
    manifest["counts"]["chunks"] = 5
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(manifest))
    assert any("manifest says 5" in p for p in verify(tmp_path / "ix"))
    # vectors in the store replaced by others: the index no longer finds them
    import sqlite3

    db = sqlite3.connect(store_path(tmp_path / "ix", manifest))
    rng = np.random.default_rng(0)
    for (i,) in db.execute("SELECT id FROM chunks").fetchall():
        v = rng.standard_normal(tiny_encoder.dim).astype(np.float32)
        db.execute(
            "UPDATE chunks SET vector = ? WHERE id = ?", ((v / np.linalg.norm(v)).tobytes(), i)
        )
    db.commit()
    db.close()
    assert any("self-recall" in p for p in verify(tmp_path / "ix"))


def test_cli(tiny_encoder, tmp_path):
    _index(tiny_encoder, tmp_path / "ix")
    runner = CliRunner()
    r = runner.invoke(main, ["inspect", str(tmp_path / "ix")])
    assert r.exit_code == 0 and json.loads(r.output)["vectors"] == len(TEXTS)
    assert runner.invoke(main, ["verify", str(tmp_path / "ix")]).output.strip() == "ok"
    r = runner.invoke(main, ["rebuild", str(tmp_path / "ix"), "--type", "hnsw"])
    assert r.exit_code == 0 and "HNSW" in r.output
    r = runner.invoke(main, ["verify", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and r.output.startswith("error: no index")
    r = runner.invoke(main, ["choose", "200000"])
    assert json.loads(r.output)["kind"] == "ivf"
