"""The index-only latency benchmark: tie-tolerant recall and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import common, latency


def test_recall_with_ties_forgives_equal_scores_only():
    vecs = np.array([[1.0, 0.0], [0.99, 0.141], [0.99, -0.141], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    kth = np.array([0.99], dtype=np.float32)  # exact top-2: id 0, then ids 1 and 2 tie at .99
    tie = [np.array([0, 2])]  # the other member of the tie
    assert latency._recall(tie, [np.array([0, 1])], 2) == 0.5
    assert latency._recall_ties(tie, q, vecs, kth, 2) == 1.0
    worse = [np.array([0, 3])]  # a clearly worse neighbour is still a miss
    assert latency._recall_ties(worse, q, vecs, kth, 2) == 0.5
    assert latency._recall_ties([np.array([0, -1])], q, vecs, kth, 2) == 0.5  # -1 = nothing found


def test_index_only_run_writes_report(tiny_encoder, tmp_path, monkeypatch):
    folder = tiny_encoder.save(tmp_path / "enc")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(latency, "RESULTS", tmp_path / "results")
    latency.run_index_only(
        3000, queries=5, k=10, types=["flat", "ivf", "hnsw"], encoded=20, model=str(folder)
    )
    data = json.loads((tmp_path / "results" / "index-only-3000.json").read_text())
    rows = data["types"]
    assert list(rows) == ["flat", "ivf", "hnsw"]
    assert rows["flat"]["recall_at_k_vs_exact"] == 1.0 and rows["flat"]["recall_at_k_ties"] == 1.0
    for r in rows.values():
        assert r["recall_at_k_ties"] >= r["recall_at_k_vs_exact"] > 0
        assert r["search_qps_batched"] > 0 and r["bytes_per_vector"] > 0
    sweep = rows["ivf"]["sweep"]
    nlist = int(rows["ivf"]["factory"].split(",")[0].split("IVF")[1])
    assert sweep[-1]["nprobe"] <= nlist and all(0 < p["recall_ties"] <= 1 for p in sweep)
    assert (
        data["crowding"]["score_at_1"]
        >= data["crowding"]["score_at_10"]
        >= data["crowding"]["score_at_100"]
    )
    md = (tmp_path / "results" / "index-only-3000.md").read_text()
    assert "recall@10 with ties" in md and "| nprobe | recall@10 | with ties |" in md


def test_throughput_report(tiny_encoder, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchmarks import throughput

    from test_encoder import _with_random_adapter

    folder = tmp_path / "lora"  # a trained-like encoder: the naive loop must apply its LoRA too
    _with_random_adapter(tiny_encoder, folder)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    rates = {"float32": 0.5, "bfloat16": 0.001}  # TFLOP/s; the real measurement is a timed matmul
    monkeypatch.setattr(throughput, "matmul_tflops", lambda dtype, n=1024: rates[dtype])
    res = CliRunner().invoke(
        throughput.main,
        ["--texts", "6", "--batch-size", "4", "--repeats", "1", "--model", str(folder),
         "--stem", "throughput-here"],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "results" / "throughput.json").exists()  # --stem names the report
    data = json.loads((tmp_path / "results" / "throughput-here.json").read_text())
    assert data["mean_cosine_agreement"] > 0.999  # the naive loop and Encoder.encode agree
    assert data["compsearch"]["tokens_per_s"] > 0 and data["naive_fp32_hf"]["tokens_per_s"] > 0
    md = (tmp_path / "results" / "throughput-here.md").read_text()
    assert "torch threads" in md
    assert data["machine"]["cpu"].endswith(")")  # the CPU's vector extensions, e.g. "AMD EPYC (AVX2)"
    assert "mean cosine 1.0000" in md
    if data["compsearch"]["dtype"] == "float32":  # a CPU without native bf16: both rates reported
        assert abs(data["mfu"] / data["mfu_vs_bf16"] - rates["bfloat16"] / rates["float32"]) < 1e-9
        assert "Measured bf16 matmul rate" in md
    else:
        assert data["mfu"] == data["mfu_vs_bf16"] and "Measured bf16 matmul rate" not in md


def test_machine_info_names_the_vector_extensions(monkeypatch, tmp_path):
    """Two CPUs with one model name can differ threefold in speed; the report must tell them apart."""
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open

    def fake_open(path, *a, **kw):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse avx avx2 fma\n")
    assert common.machine_info()["cpu"] == "AMD EPYC (AVX2)"
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: avx2 avx512f avx512_bf16\n")
    assert common.machine_info()["cpu"] == "AMD EPYC (AVX512-BF16, AVX512)"
