"""benchmarks.mteb_suite.rerankers: the table it writes (the run itself needs the real model)."""

from __future__ import annotations

from benchmarks.mteb_suite.rerankers import BASES, RERANKERS, render


def test_render_has_every_mode_and_reranker():
    modes = {}
    for i, b in enumerate(BASES):
        modes[b] = {"ndcg_at_10": [0.5, 0.55][i], "search_ms_p50": 1.0}
        for j, r in enumerate(RERANKERS):
            modes[f"{b}+{r}"] = {
                "ndcg_at_10": [0.4, 0.45, 0.7][j] - i / 100,
                "search_ms_p50": 1.0,
                "added_ms_p50": 2.0 + j,
                "added_ms_p95": 3.0 + j,
            }
    res = {
        "profile": "quick",
        "seed": 1,
        "depth": 20,
        "commands": ["a", "b"],
        "created": "now",
        "machine": "m",
        "encoder": {"name": "e", "fingerprint": "f" * 64, "max_tokens": 256},
        "tasks": {"T": {"modes": modes, "likelihood_unstored_added_ms": [1000.0, 2000.0]}},
    }
    md = render(res)
    assert "rerank depth 20" in md and "`a`; `b`" in md
    assert "| T | 0.500 | 0.550 | 0.400 | 0.450 | **0.700** | 0.390 | 0.440 | 0.690 |" in md
    assert "hybrid+likelihood" in md and "4.0 / 5.0" in md and "1000, 2000" in md
