"""The ablation report only collects what runs and evaluations measured; check it on fabricated runs."""

from __future__ import annotations

import json

import pytest

from training.__main__ import main
from training.report import build, markdown


def _stage(root, arm, stage, objective, losses, erank):
    d = root / arm / stage
    (d / "diagnostics").mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"stage": objective, "steps": len(losses), "items": 10, "wall_seconds": 60.0})
    )
    (d / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": i + 1, "loss": v, "sec": 2.0}) + "\n" for i, v in enumerate(losses)
        )
    )
    sv = [1.0, 0.5, 0.2, 0.005]
    (d / "diagnostics" / "diagnostics.json").write_text(
        json.dumps(
            {
                "spectrum": {
                    "n": 4,
                    "dim": 4,
                    "above_1pct": 3,
                    "above_10pct": 3,
                    "entropy_rank": erank,
                    "participation_ratio": 1.5,
                    "singular_values": sv,
                },
                "memory_correlation": {"mean_offdiag": 0.25, "matrix": [[1.0]]},
            }
        )
    )


@pytest.fixture
def fake(tmp_path):
    runs = tmp_path / "runs"
    _stage(runs, "a-ctkd", "stage1", "ctkd", [5.0] * 5 + [2.0] * 5, 3.3)
    _stage(runs, "a-ctkd", "ucl", "ucl", [1.0, 0.5], 3.1)
    _stage(runs, "a-ctkd", "scl", "scl", [2.0, 1.0], 2.9)
    _stage(runs, "a-none", "ucl", "ucl", [1.0, 0.6], 2.0)
    _stage(runs, "a-none", "scl", "scl", [2.0, 1.1], 1.9)
    ev = {
        "profile": "quick",
        "models": {},
        "results": {
            "compsearch:a-ctkd": {
                "FooRetrieval": {"scores": {"main_score": 0.5}},
                "LeeDocSTS": {"scores": {"main_score": 0.4}},
            },
            "compsearch:a-none": {
                "FooRetrieval": {"scores": {"main_score": 0.3}},
                "LeeDocSTS": {"scores": {"main_score": 0.45}},
            },
        },
    }
    base = {
        "results": {
            "BM25": {
                "FooRetrieval": {"scores": {"main_score": 0.6}},
                "OtherRetrieval": {"scores": {"main_score": 0.9}},
            }
        }
    }
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    (tmp_path / "base.json").write_text(json.dumps(base))
    return tmp_path


def test_report_collects_runs_scores_and_dimensions(fake):
    rep = build(["a-ctkd", "a-none"], fake / "eval.json", fake / "base.json", fake / "runs")
    ctkd, none = rep["arms"]
    assert ctkd["objective"] == "ctkd" and none["objective"] == "none"
    assert (
        ctkd["stages"]["stage1"]["loss"]["first"] == 5.0
        and ctkd["stages"]["stage1"]["loss"]["last"] == 2.0
    )
    assert (
        ctkd["stages"]["scl"]["effective_dim"]["entropy_rank"] == 2.9
        and ctkd["wall_seconds"] == 180.0
    )
    assert none["scores"] == {"FooRetrieval": 0.3, "LeeDocSTS": 0.45}
    assert rep["baselines"] == {"BM25": {"FooRetrieval": 0.6}}  # only the tasks the arms ran
    md = markdown(rep)
    assert "| a-ctkd | ctkd | — | 0.500 | 0.400 | 0.500 |" in md
    assert "| BM25 (baseline) | — | — | 0.600 | — | 0.600 |" in md
    assert "5.000 → 2.000" in md and "| a-none | — |" in md


def test_report_cli_writes_files_and_refuses_missing_arms(fake, capsys):
    out = fake / "res" / "abl"
    args = [
        "report",
        "--eval",
        str(fake / "eval.json"),
        "--baselines",
        str(fake / "base.json"),
        "--runs",
        str(fake / "runs"),
        "--out",
        str(out),
    ]
    assert main(args + ["--arms", "a-ctkd,a-none"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["tasks"] == [
        "FooRetrieval",
        "LeeDocSTS",
    ]
    assert out.with_suffix(".md").is_file()
    assert main(args + ["--arms", "a-ctkd,a-nll"]) == 2
    assert "a-nll" in capsys.readouterr().err
    assert main(["report", "--arms", "a-ctkd", "--eval", str(fake / "missing.json")]) == 2
    # scored earlier but its run folder is gone (a replaced machine): reported from its scores
    ev = json.loads((fake / "eval.json").read_text())
    ev["results"]["compsearch:a-nll-s1"] = ev["results"]["compsearch:a-none"]
    (fake / "eval.json").write_text(json.dumps(ev))
    capsys.readouterr()
    assert main(args + ["--arms", "a-ctkd,a-nll-s1"]) == 0
    assert "no run folder" in capsys.readouterr().err
    md = out.with_suffix(".md").read_text()
    assert "| a-nll-s1 | — | — | — | — | — | — | — |" in md and "| a-nll-s1 | nll |" in md


def test_an_scl_only_arm_shows_the_stages_it_continues(fake):
    _stage(fake / "runs", "a-ctkd-synth", "scl", "scl", [2.0, 0.9], 2.7)
    (fake / "runs" / "a-ctkd-synth" / "scl" / "config.json").write_text(
        json.dumps(
            {
                "model": {"init_from": str(fake / "runs" / "a-ctkd" / "ucl")},
                "data": {"train": ["scl.jsonl", "/data/scl_mix.jsonl"]},
            }
        )
    )
    ev = json.loads((fake / "eval.json").read_text())
    ev["results"]["compsearch:a-ctkd-synth"] = {"FooRetrieval": {"scores": {"main_score": 0.55}}}
    (fake / "eval.json").write_text(json.dumps(ev))
    arm = build(["a-ctkd-synth"], fake / "eval.json", None, fake / "runs")["arms"][0]
    assert arm["continues"] == "a-ctkd" and arm["objective"] == "ctkd"
    assert (
        set(arm["stages"]) == {"stage1", "ucl", "scl"}
        and arm["stages"]["scl"]["effective_dim"]["entropy_rank"] == 2.7
    )
    assert "| a-ctkd-synth | ctkd | scl + scl_mix | 0.550 |" in markdown(
        build(["a-ctkd-synth"], fake / "eval.json", None, fake / "runs")
    )


def test_report_merges_one_evaluation_file_per_arm(fake, capsys):
    ev = json.loads((fake / "eval.json").read_text())
    for label in list(ev["results"]):
        part = {**ev, "results": {label: ev["results"][label]}}
        (fake / f"{label.split(':')[1]}.json").write_text(json.dumps(part))
    out = fake / "res" / "merged"
    assert (
        main(
            [
                "report",
                "--arms",
                "a-ctkd,a-none",
                "--eval",
                str(fake / "a-ctkd.json"),
                str(fake / "a-none.json"),
                "--baselines",
                str(fake / "base.json"),
                "--runs",
                str(fake / "runs"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rep = json.loads(out.with_suffix(".json").read_text())
    assert [a["scores"]["FooRetrieval"] for a in rep["arms"]] == [0.5, 0.3] and len(
        rep["eval_files"]
    ) == 2
    # the untrained default evaluated beside the arms is a baseline row
    (fake / "untrained.json").write_text(
        json.dumps({"results": {"compsearch": {"FooRetrieval": {"scores": {"main_score": 0.1}}}}})
    )
    rep = build(
        ["a-ctkd"],
        [fake / "a-ctkd.json", fake / "untrained.json"],
        fake / "base.json",
        fake / "runs",
    )
    assert rep["baselines"]["compsearch"] == {"FooRetrieval": 0.1}
    assert (
        "| compsearch default (as shipped when the baselines were run) (baseline) | — | — | 0.100 |"
        in markdown(rep)
    )


def _seeded_ablation(tmp_path, per_query: dict) -> None:
    """Runs (stage 1 unless ``none``, then SCL) under ``tmp_path/runs`` and ``tmp_path/eval.json`` with
    each arm's per-query nDCG@10 on one task."""
    ev = {"profile": "quick", "models": {}, "results": {}}
    for arm, pq in per_query.items():
        if "none" not in arm:
            _stage(tmp_path / "runs", arm, "stage1", arm.split("-")[-2], [3.0, 2.0], 3.0)
        _stage(tmp_path / "runs", arm, "scl", "scl", [2.0, 1.0], 2.0)
        ev["results"][f"compsearch:{arm}"] = {
            "FooRetrieval": {"scores": {"main_score": sum(pq.values()) / len(pq)}, "per_query": pq}
        }
    (tmp_path / "eval.json").write_text(json.dumps(ev))


def test_seeded_arms_are_compared_query_by_query(tmp_path):
    runs = tmp_path / "runs"
    arms = ["ab-ctkd-s1", "ab-none-s1", "ab-nll-s1", "ab-ctkd-s2", "odd-name"]
    for arm in arms:
        if "none" not in arm:
            _stage(runs, arm, "stage1", arm.split("-")[1], [3.0, 2.0], 3.0)
        _stage(runs, arm, "scl", "scl", [2.0, 1.0], 2.0)
    # ctkd finds every query's document, none finds none of them, nll half, seed 2 the same as seed 1
    hits = {
        "ab-ctkd-s1": 1.0,
        "ab-none-s1": 0.0,
        "ab-nll-s1": 0.5,
        "ab-ctkd-s2": 1.0,
        "odd-name": 1.0,
    }
    ev = {"profile": "quick", "models": {}, "results": {}}
    for arm, h in hits.items():
        pq = {f"q{i}": (h if h != 0.5 else float(i % 2)) for i in range(40)}
        ev["results"][f"compsearch:{arm}"] = {
            "FooRetrieval": {"scores": {"main_score": sum(pq.values()) / 40}, "per_query": pq}
        }
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    rep = build(arms, tmp_path / "eval.json", None, runs)
    got = {(c["kind"], c["a"], c["b"]): c for c in rep["comparisons"]}
    assert set(got) == {
        ("stage 1 vs none", "ab-ctkd-s1", "ab-none-s1"),
        ("stage 1 vs none", "ab-nll-s1", "ab-none-s1"),
        ("objective vs ctkd", "ab-nll-s1", "ab-ctkd-s1"),
        ("seed vs seed", "ab-ctkd-s2", "ab-ctkd-s1"),
    }  # odd-name has no objective/seed; ctkd-s2 has no none-s2 to pair with
    ctkd_none = got[("stage 1 vs none", "ab-ctkd-s1", "ab-none-s1")]
    assert ctkd_none["diff"] == 1.0 and ctkd_none["ci95"] == [1.0, 1.0] and ctkd_none["p"] == 0
    nll_ctkd = got[("objective vs ctkd", "ab-nll-s1", "ab-ctkd-s1")]
    assert nll_ctkd["diff"] == -0.5 and nll_ctkd["ci95"][1] < 0
    assert got[("seed vs seed", "ab-ctkd-s2", "ab-ctkd-s1")]["diff"] == 0
    md = markdown(rep)
    assert "| stage 1 vs none | ab-ctkd-s1 | ab-none-s1 | +1.000 | [+1.000, +1.000] | 0.000 |" in md
    assert f"Runs: `{runs}/<arm>`" in md and f"report --runs {runs} --arms" in md
    # a second evaluation file of another profile (the FAQ task, full): named in the header
    faq = {
        "profile": "full",
        "results": {"compsearch:ab-ctkd-s1": {"FaqRetrieval": {"scores": {"main_score": 0.2}}}},
    }
    (tmp_path / "faq.json").write_text(json.dumps(faq))
    both = build(arms, [tmp_path / "eval.json", tmp_path / "faq.json"], None, runs)
    assert "`quick` profile (Faq: `full`)" in markdown(both)


def test_a_longer_stage_1_config_pairs_with_the_shared_none_arm_and_its_short_twin(tmp_path):
    runs = tmp_path / "runs"
    arms = ["ab-ctkd-s1", "ab-none-s1", "ab-long-ctkd-s1", "ab-long-nll-s1"]
    ev = {"profile": "quick", "models": {}, "results": {}}
    for i, arm in enumerate(arms):
        if "none" not in arm:
            _stage(runs, arm, "stage1", arm.split("-")[-2], [3.0, 2.0], 3.0)
        _stage(runs, arm, "scl", "scl", [2.0, 1.0], 2.0)
        pq = {f"q{j}": i / 4 for j in range(10)}
        ev["results"][f"compsearch:{arm}"] = {
            "FooRetrieval": {"scores": {"main_score": i / 4}, "per_query": pq}
        }
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    got = {
        (c["kind"], c["a"], c["b"])
        for c in build(arms, tmp_path / "eval.json", None, runs)["comparisons"]
    }
    assert got == {
        ("stage 1 vs none", "ab-ctkd-s1", "ab-none-s1"),
        ("stage 1 vs none", "ab-long-ctkd-s1", "ab-none-s1"),  # no ab-long-none: the shared one
        ("stage 1 vs none", "ab-long-nll-s1", "ab-none-s1"),
        ("objective vs ctkd", "ab-long-nll-s1", "ab-long-ctkd-s1"),
        ("config vs config", "ab-long-ctkd-s1", "ab-ctkd-s1"),
    }


def test_objectives_with_several_seeds_are_compared_by_seed_means(tmp_path):
    runs = tmp_path / "runs"
    # none: seeds .2 and .6 (a big seed spread); ctkd: .5 and .5 at the same seeds; nll: .4 and .4 at
    # other seeds; rc: one seed at .9
    level = {
        "ab-none-s1": 0.2,
        "ab-none-s2": 0.6,
        "ab-ctkd-s1": 0.5,
        "ab-ctkd-s2": 0.5,
        "ab-nll-s3": 0.4,
        "ab-nll-s4": 0.4,
        "ab-rc-s1": 0.9,
    }
    _seeded_ablation(tmp_path, {arm: {f"q{i}": v for i in range(30)} for arm, v in level.items()})
    rep = build(list(level), tmp_path / "eval.json", None, runs)
    rows = {r["objective"]: r for r in rep["seed_means"]["rows"]}
    assert rows["none"]["seeds"] == pytest.approx({1: 0.2, 2: 0.6})
    assert rows["none"]["mean"] == pytest.approx(0.4) and rows["none"]["spread"] == pytest.approx(
        0.4
    )
    got = {(c["kind"], c["a"], c["b"]): c for c in rep["seed_means"]["comparisons"]}
    assert set(got) == {
        ("stage 1 vs none", "ab-ctkd", "ab-none"),
        ("stage 1 vs none", "ab-nll", "ab-none"),
        ("objective vs ctkd", "ab-nll", "ab-ctkd"),
    }  # rc has one seed: only the paired rows compare it
    ctkd = got[("stage 1 vs none", "ab-ctkd", "ab-none")]
    # matched seed by seed: +.3 at seed 1, -.1 at seed 2; the mean +.1 is not established
    assert ctkd["matched"] and ctkd["diff"] == pytest.approx(0.1)
    assert ctkd["ci95"][0] < 0 < ctkd["ci95"][1]
    nll = got[("stage 1 vs none", "ab-nll", "ab-none")]
    assert not nll["matched"] and nll["ci95"][0] < 0 < nll["ci95"][1]
    assert got[("objective vs ctkd", "ab-nll", "ab-ctkd")]["ci95"] == [-0.1, -0.1]
    md = markdown(rep)
    assert "| ab | none | s1: 0.200, s2: 0.600 | 0.400 | 0.400 |" in md
    assert "| stage 1 vs none | ab-ctkd | ab-none | 2 / 2 matched | +0.100 |" in md
    # with one seed per objective there is no seed table (the paired comparisons say it all)
    single = build(["ab-none-s1", "ab-rc-s1"], tmp_path / "eval.json", None, runs)
    assert single["seed_means"]["comparisons"] == [] and "Over seeds" not in markdown(single)
