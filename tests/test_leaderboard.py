"""Leaderboards: mean ± std over seeds with n, the best per column, the
paper's value and our difference, findings with verdicts, and every
deviation from the paper's protocol."""

from __future__ import annotations

import statistics

from benchbed.deviations import profile_differences
from benchbed.findings import verdict
from benchbed.leaderboard import render
from benchbed.suite import Suite

SUITE = Suite.model_validate({
    "name": "lb", "citation": "test",
    "dataset": {"name": "digits"},
    "methods": {m: {"label": m.upper(), "objective": {"name": "elbo"}, "encoder": "mlp", "decoder": "mlp"}
                for m in ("a", "b", "c")},
    "grid": {"latent_dim": [2, 8], "seed": [0, 1, 2]},
    "training": {"epochs": 1},
    "metrics": {"svm": {"name": "svm"}},
    "leaderboards": [{
        "id": "t", "title": "T", "where": {"latent_dim": 8}, "methods": ["a", "b", "c"],
        "columns": [{"header": "acc", "metric": "svm", "value": "accuracy/clean", "digits": 2,
                     "paper": {"a": 90.0, "b": 80.5}}]}],
    "findings": [
        {"claim": "a beats b", "metric": "svm", "value": "accuracy/clean", "where": {"latent_dim": 8},
         "holds": ["a > b"]},
        {"claim": "c beats a", "metric": "svm", "value": "accuracy/clean", "where": {"latent_dim": 8},
         "holds": ["c > a"]},
        {"claim": "a at 2 is below a at 8", "metric": "svm", "value": "accuracy/clean",
         "holds": ["a@z=2 < a@z=8"]},
    ],
})

VALUES = {"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5], "c": [70.0]}


def record(method, seed, value, latent_dim=8, status="finished", reason=None):
    return {"suite": "lb", "profile": None, "method": method, "label": method.upper(),
            "latent_dim": latent_dim, "seed": seed, "grid": {}, "run_key": f"{method}{seed}{latent_dim}",
            "status": status, "reason": reason, "train_seconds": 60.0, "eval_seconds": 6.0,
            "metrics": {"svm": {"accuracy/clean": value}} if status == "finished" else {},
            "figures": [], "provenance": {"benchbed": "0.1.0", "torch": "2.x", "finished": "2026-01-01"}}


def records():
    out = [record(m, s, v) for m, vs in VALUES.items() for s, v in enumerate(vs)]
    out.append(record("c", 1, None, status="failed", reason="diverged: loss became nan"))
    out.append(record("a", 0, 50.0, latent_dim=2))
    return out


def page():
    return render(SUITE, records(), "lb/figures", ["fewer epochs"], "benchbed run x", "benchbed leaderboard x")


def row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} "))


def test_cells_are_mean_and_sample_std_over_seeds_with_n():
    a = row(page(), "A")
    mean, std = statistics.fmean(VALUES["a"]), statistics.stdev(VALUES["a"])
    assert f"{mean:.2f}** ± {std:.2f} (n=3)" in a


def test_the_best_mean_is_bold_and_the_paper_difference_is_ours_minus_theirs():
    a, b = row(page(), "A"), row(page(), "B")
    assert f"**{statistics.fmean(VALUES['a']):.2f}**" in a and "**" not in b
    assert f"{statistics.fmean(VALUES['a']) - 90.0:+.2f}" in a
    assert f"{statistics.fmean(VALUES['b']) - 80.5:+.2f}" in b and "80.5" in b


def test_failed_runs_are_counted_and_explained():
    text = page()
    assert "(n=1, 1 failed)" in row(text, "C")
    assert "failed: C z=8 seed=1: diverged: loss became nan" in text


def test_findings_get_verdicts_from_the_means():
    assert verdict(SUITE.findings[0], records())[0] == "reproduced"
    assert verdict(SUITE.findings[1], records())[0] == "not reproduced"
    assert verdict(SUITE.findings[2], records())[0] == "reproduced"
    only_b = [r for r in records() if r["method"] == "b"]
    assert verdict(SUITE.findings[0], only_b)[0] == "not run"


def test_deviations_and_provenance_are_listed():
    text = page()
    assert "- fewer epochs" in text
    assert "- runs: 8 finished, 1 failed" in text
    assert "benchbed 0.1.0; torch 2.x" in text


def test_profile_differences_name_each_changed_field(write_suite):
    path = write_suite("""
        name: p
        citation: c
        dataset: {name: digits}
        methods:
          a: {objective: {name: elbo}, encoder: {name: mlp}, decoder: {name: mlp}}
          b: {objective: {name: elbo}, encoder: {name: mlp}, decoder: {name: mlp}}
        grid: {latent_dim: [2]}
        training: {epochs: 100}
        metrics:
          mi: {name: mutual_info}
        profiles:
          paper: {}
          cpu:
            training: {epochs: 3, train_subset: 500}
            methods:
              a: {encoder: {hidden: [8]}, training: {epochs: 1}}
              b: {encoder: {hidden: [8]}}
            metrics:
              mi: {m: 200}
        """)
    lines = profile_differences(path, "cpu")
    assert "`training.epochs`: 3 here; 100 in the paper protocol" in lines
    # Left out on one side: the value it then takes is named, not just "the default".
    assert "`methods.{a,b}.encoder.hidden`: [8] here; [256, 256, 256] (the default) in the paper protocol" in lines
    assert "`methods.a.training.epochs`: 1 here; 100 (the default) in the paper protocol" in lines
    assert "`metrics.mi.m`: 200 here; 1000 (the default) in the paper protocol" in lines
    assert "`training.train_subset`: 500 here; all of it (the default) in the paper protocol" in lines
    assert profile_differences(path, "paper") == []


def test_runs_that_differ_in_a_grid_value_are_never_pooled():
    rows = [dict(record("a", s, 80.0 + s), grid={"training.optimiser.lr": lr}, slug=f"a{s}{lr}")
            for s in (0, 1) for lr in (0.001, 0.01)]
    text = render(SUITE, rows, "f", [], "r", "l")
    lines = [line for line in text.splitlines() if line.startswith("| A ")]
    assert len(lines) == 2  # one row per learning rate, each over its two seeds
    assert all("80.50" in line and "± 0.71 (n=2)" in line for line in lines)
    assert "training.optimiser.lr" in text


def test_a_column_naming_a_value_the_metric_lacks_says_what_it_reports():
    suite = SUITE.model_copy(deep=True)
    suite.leaderboards[0].columns[0].value = "acuracy/clean"
    text = render(suite, records(), "f", [], "r", "l")
    assert "reports no value 'acuracy/clean' (it reports: accuracy/clean)" in text
