"""Paired comparisons of per-query scores (benchmarks/mteb_suite/paired.py)."""

import numpy as np
import pytest

from benchmarks.mteb_suite import paired as P


def _scores(values, task="T"):
    return {task: {f"q{i}": float(v) for i, v in enumerate(values)}}


def test_identical_models_differ_by_nothing():
    a = _scores(np.linspace(0, 1, 50))
    cmp = P.paired_bootstrap(a, a, samples=500)
    assert cmp["diff"] == 0 and cmp["ci95"] == [0, 0] and cmp["p"] == 1.0


def test_a_consistent_gain_is_told_from_noise_and_a_tiny_one_is_not():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)
    better = _scores(np.clip(base + 0.1, 0, 1.5))
    noisy = _scores(base + rng.normal(0, 0.3, 200) * 0.01 + rng.normal(0, 0.3, 200))
    strong = P.paired_bootstrap(better, _scores(base), samples=2000)
    assert strong["diff"] == pytest.approx(0.1, abs=1e-3)
    assert strong["ci95"][0] > 0 and strong["p"] < 0.01
    weak = P.paired_bootstrap(noisy, _scores(base), samples=2000)
    assert weak["ci95"][0] < 0 < weak["ci95"][1] and weak["p"] > 0.05


def test_tasks_weigh_equally_and_only_shared_queries_count():
    a = {"A": {"q1": 1.0, "q2": 1.0}, "B": {"x": 0.0, "only_a": 1.0}}
    b = {"A": {"q1": 0.0, "q2": 0.0}, "B": {"x": 0.0}, "C": {"z": 1.0}}
    cmp = P.paired_bootstrap(a, b, samples=200)
    assert cmp["tasks"] == 2 and cmp["queries"] == 3
    assert cmp["diff"] == pytest.approx(0.5)  # mean of task means: (1 + 0) / 2


def test_no_shared_task_is_an_error():
    with pytest.raises(ValueError, match="share no task"):
        P.paired_bootstrap(_scores([1.0], "A"), _scores([1.0], "B"))


def test_sign_test_is_exact():
    assert P.sign_test([0.1] * 6)["p"] == pytest.approx(2 / 64)
    assert P.sign_test([0.1, -0.1])["p"] == 1.0
    assert P.sign_test([0.0, 0.0]) == {"positive": 0, "negative": 0, "p": 1.0}
    assert P.sign_test([1, 1, 1, 1, -1])["p"] == pytest.approx(2 * 6 / 32)


def test_per_query_ndcg_matches_hand_computation():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {}}
    ranking = {"q1": {"d9": 0.9, "d1": 0.5}, "q2": {"d2": 0.9, "d3": 0.8}}
    got = P.per_query_ndcg(qrels, ranking)
    assert set(got) == {"q1", "q2"}  # a query without relevant documents is not scored
    assert got["q1"] == pytest.approx(1 / np.log2(3), abs=1e-6)
    assert got["q2"] == pytest.approx(1.0)
    assert P.per_query_ndcg({"q": {"d": 1}}, {})["q"] == 0.0


def test_cli_compares_labels_across_files_and_refuses_missing_scores(tmp_path, capsys):
    import json

    quick = {
        "results": {
            "m:a": {"T": {"per_query": {"q1": 1.0, "q2": 1.0}}},
            "m:b": {"T": {"per_query": {"q1": 0.0, "q2": 1.0}}},
        }
    }
    faq = {
        "results": {
            "m:a": {"F": {"per_query": {"x": 1.0}}},
            "m:b": {"F": {"per_query": {"x": 0.0}}},
        }
    }
    (tmp_path / "q.json").write_text(json.dumps(quick))
    (tmp_path / "f.json").write_text(json.dumps(faq))
    files = [str(tmp_path / "q.json"), str(tmp_path / "f.json")]
    assert P.main(["--eval", *files, "--pair", "m:a", "m:b", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["tasks"] == 2 and row["diff"] == pytest.approx((0.5 + 1.0) / 2)
    assert row["sign"]["positive"] == 2
    assert P.main(["--eval", *files, "--pair", "m:a", "m:b"]) == 0
    assert "| m:a | m:b | +0.750 |" in capsys.readouterr().out
    assert P.main(["--eval", *files, "--pair", "m:a", "m:zzz"]) == 2
    assert "no per-query scores for m:zzz" in capsys.readouterr().err
    assert P.main(["--eval", str(tmp_path / "nope.json"), "--pair", "m:a", "m:b"]) == 2


def test_seed_bootstrap_with_one_seed_each_is_the_paired_difference():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 120)
    a, b = _scores(np.clip(base + 0.05, 0, 1)), _scores(base)
    one = P.seed_bootstrap([a], [b], samples=2000)
    plain = P.paired_bootstrap(a, b, samples=2000)
    assert one["seeds"] == [1, 1] and one["diff"] == plain["diff"]
    assert one["ci95"] == pytest.approx(plain["ci95"], abs=0.01)


def test_seeds_that_disagree_widen_the_interval_past_zero():
    # seed 1 of recipe a is far better than b on every query, seed 2 far worse: query noise alone
    # would call either seed's difference certain, the seed means differ by nothing
    rng = np.random.default_rng(4)
    base = rng.uniform(0.3, 0.7, 200)
    a1, a2, b = _scores(base + 0.2), _scores(base - 0.2), _scores(base)
    assert P.paired_bootstrap(a1, b, samples=1000)["ci95"][0] > 0.19
    both = P.seed_bootstrap([a1, a2], [b], samples=4000)
    assert both["seeds"] == [2, 1] and both["diff"] == pytest.approx(0, abs=1e-9)
    assert both["ci95"][0] <= -0.19 and both["ci95"][1] >= 0.19 and both["p"] > 0.4
    # seeds that agree keep a real difference certain
    agree = P.seed_bootstrap([a1, _scores(base + 0.15)], [b, _scores(base + 0.01)], samples=2000)
    assert agree["diff"] == pytest.approx(0.17, abs=1e-6) and agree["ci95"][0] > 0.1


def test_seed_bootstrap_needs_runs_that_share_a_task():
    with pytest.raises(ValueError, match="share no task"):
        P.seed_bootstrap([_scores([1.0], "A")], [_scores([1.0], "B")])
    with pytest.raises(ValueError, match="at least one run"):
        P.seed_bootstrap([], [_scores([1.0])])


def test_matched_seeds_cancel_a_seed_effect_both_recipes_share():
    # seed 2 lifts both recipes by .3 (its data suits the task); a is .05 above b at either seed
    rng = np.random.default_rng(5)
    base = rng.uniform(0.1, 0.5, 150)
    b1, b2 = _scores(base), _scores(base + 0.3)
    a1, a2 = _scores(base + 0.05), _scores(base + 0.35)
    free = P.seed_bootstrap([a1, a2], [b1, b2], samples=4000)
    assert not free["matched"] and free["ci95"][0] < 0 < free["ci95"][1]
    paired = P.seed_bootstrap([a1, a2], [b1, b2], samples=4000, matched=True)
    assert paired["matched"] and paired["diff"] == pytest.approx(0.05, abs=1e-6)
    assert paired["ci95"] == pytest.approx([0.05, 0.05], abs=1e-6)
    with pytest.raises(ValueError, match="as many runs"):
        P.seed_bootstrap([a1, a2], [b1], matched=True)
