"""Leaderboards: mean ± std over seeds with n, the best per column, the
paper's value and our difference, findings with verdicts, and every
deviation from the paper's protocol. Collapsed runs, values at an
estimator's ceiling or floor and runs stopped on their budget are marked and
never bolded; the footer names one clean commit or warns loudly."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np

from benchbed.publish.deviations import profile_differences
from benchbed.suite.source import load_raw
from benchbed.publish.findings import verdict
from benchbed.publish.leaderboard import render
from benchbed.suite.protocol import Suite

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


CONVERGED = {"converged": True, "stop": "converged", "epochs": 12, "max_epochs": 50, "best_epoch": 9,
             "criterion": "validation loss: no 1% gain in 3 epochs"}
BUDGET = {"converged": False, "stop": "budget", "epochs": 50, "max_epochs": 50, "best_epoch": 50,
          "criterion": "validation loss: no 1% gain in 3 epochs"}
MACHINE = {"benchbed": "0.1.0", "torch": "2.x", "python": "3.11.7", "platform": "Linux",
           "hardware": "Test CPU, 2 torch threads", "threads": 2, "git_commit": "abc123def456",
           "finished": "2026-01-01"}


def record(method, seed, value, latent_dim=8, status="finished", reason=None, metrics=None,
           convergence=CONVERGED, provenance=None):
    r = {"suite": "lb", "profile": None, "method": method, "label": method.upper(),
         "latent_dim": latent_dim, "seed": seed, "grid": {}, "run_key": f"{method}{seed}{latent_dim}",
         "status": status, "reason": reason, "train_seconds": 60.0, "eval_seconds": 6.0,
         "metrics": (metrics or {"svm": {"accuracy/clean": value}}) if status == "finished" else {},
         "figures": [], "config": {"code": {"benchbed": "0.1.0"}},
         "evaluation": {"metrics": {"svm": {"name": "svm"}, "mi": {"name": "mutual_info"},
                                    "mmd": {"name": "mmd"}}},
         "provenance": dict(provenance or MACHINE)}
    if convergence is not None:
        r["convergence"] = convergence
    return r


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


def test_findings_get_verdicts_from_tests_over_seeds():
    assert verdict(SUITE.findings[0], records())[0] == "reproduced"
    assert verdict(SUITE.findings[1], records())[0] == "inconclusive (n=1)"  # c has one seed
    assert verdict(SUITE.findings[2], records())[0] == "inconclusive (n=1)"
    only_b = [r for r in records() if r["method"] == "b"]
    assert verdict(SUITE.findings[0], only_b)[0] == "not run"
    line = next(x for x in page().splitlines() if x.startswith("- **a beats b**"))
    assert "**reproduced**" in line and "Welch t = " in line and "df = " in line and "p = " in line


def test_deviations_and_provenance_are_listed():
    text = page()
    assert "- fewer epochs" in text
    assert "- runs: 8 finished, 1 failed" in text
    assert "- git commit: abc123def456 (every run)" in text and "WARNING" not in text
    assert "- code: benchbed 0.1.0" in text
    assert "- machine: Test CPU, 2 torch threads, torch 2.x: 9 runs" in text
    # 9 runs x 66 s x 2 threads = 0.33 machine-hours
    assert "- total: 0.33 machine-hours" in text
    assert "bit for bit only on the same CPU kind, torch thread count and torch version" in text


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
    lines = profile_differences(*load_raw(path), "cpu")
    assert "`training.epochs`: 3 here; 100 in the suite's `paper` profile" in lines
    # Left out on one side: the value it then takes is named, not just "the default".
    assert "`methods.{a,b}.encoder.hidden`: [8] here; [256, 256, 256] (the default) in the suite's `paper` profile" in lines
    assert "`methods.a.training.epochs`: 1 here; 100 (the default) in the suite's `paper` profile" in lines
    assert "`metrics.mi.m`: 200 here; 1000 (the default) in the suite's `paper` profile" in lines
    assert "`training.train_subset`: 500 here; all of it (the default) in the suite's `paper` profile" in lines
    assert profile_differences(*load_raw(path), "paper") == []


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


# ------------------------------------------------ collapse, ceilings, floors


LATENT = Suite.model_validate({
    **SUITE.model_dump(exclude={"leaderboards", "findings", "metrics"}),
    "metrics": {"svm": {"name": "svm"}, "mi": {"name": "mutual_info"}, "mmd": {"name": "mmd"}},
    "leaderboards": [
        {"id": "acc", "title": "ACC", "where": {"latent_dim": 8}, "methods": ["a", "b", "c"],
         "columns": [{"header": "acc", "metric": "svm", "value": "accuracy/clean"}]},
        {"id": "latent", "title": "LATENT", "where": {"latent_dim": 8}, "methods": ["a", "b", "c"],
         "columns": [{"header": "MI", "metric": "mi", "value": "mutual_info", "better": "higher"},
                     {"header": "MMD", "metric": "mmd", "value": "mmd", "better": "lower", "digits": 4}]},
    ],
})
LOG_M = math.log(1000)


def latent_record(method, seed, acc, mi, mmd, **kw):
    return record(method, seed, None, metrics={"svm": {"accuracy/clean": acc},
                                               "mi": {"mutual_info": mi, "log_m": LOG_M},
                                               "mmd": {"mmd": mmd, "n": 1000.0}}, **kw)


def tables(rows):
    text = render(LATENT, rows, "f", [], "r", "l")
    acc, latent = text.split("### LATENT")
    return acc, latent, text


def test_a_collapsed_run_is_flagged_in_every_table_and_never_bold():
    # c's codes carry no information, yet it has the best accuracy and the best MMD.
    rows = [latent_record("a", 0, 80.0, 5.0, 0.020), latent_record("b", 0, 70.0, 4.0, 0.030),
            latent_record("c", 0, 95.0, 0.01, 0.001)]
    acc, latent, text = tables(rows)
    for table in (acc, latent):
        assert row(table, "C ⊘").count("**") == 0
    assert "**80.00**" in row(acc, "A")  # the best of the runs that may rank
    assert "**0.0200**" in row(latent, "A") and "**5.00**" in row(latent, "A")
    assert "⊘ collapsed: C z=8 seed=0: I(x; z) = 0.01 nats < 0.1" in text


def test_without_mi_or_class_ce_a_lower_is_better_column_gets_no_bold():
    # b measured no MI: its low MMD could be that of a collapsed code, q(z|x) = p(z).
    rows = [latent_record("a", 0, 80.0, 5.0, 0.020), latent_record("c", 0, 60.0, 3.0, 0.040),
            record("b", 0, None, metrics={"svm": {"accuracy/clean": 70.0}, "mmd": {"mmd": 0.001, "n": 1000.0}})]
    acc, latent, _ = tables(rows)
    mmd_cells = [row(latent, m).split("|")[3] for m in ("A", "B", "C")]
    assert not any("**" in cell for cell in mmd_cells)
    assert "no bold in MMD" in latent and "cannot be ruled out" in latent
    assert "**80.00**" in row(acc, "A")  # higher-is-better accuracy still ranks


def test_mi_at_log_m_is_shown_as_the_ceiling_and_never_bold():
    rows = [latent_record("a", 0, 80.0, LOG_M - 0.001, 0.02), latent_record("b", 0, 70.0, 4.0, 0.03),
            latent_record("c", 0, 60.0, 3.0, 0.04)]
    _, latent, _ = tables(rows)
    assert "≥ log M (6.91, n=1)" in row(latent, "A")
    mi_cells = [row(latent, m).split("|")[2] for m in ("A", "B", "C")]
    # The ceiling value may be the best, so no MI cell is bold.
    assert not any("**" in cell for cell in mi_cells)
    assert "no bold in MI: 1 value(s) at the estimator's ceiling could be the best" in latent


def test_a_negative_mmd_is_shown_as_the_floor_and_never_bold():
    rows = [latent_record("a", 0, 80.0, 5.0, -0.0004), latent_record("b", 0, 70.0, 4.0, 0.03),
            latent_record("c", 0, 60.0, 3.0, 0.04)]
    _, latent, _ = tables(rows)
    assert "< 0: floor (-0.0004, n=1)" in row(latent, "A")
    mmd_cells = [row(latent, m).split("|")[3] for m in ("A", "B", "C")]
    assert not any("**" in cell for cell in mmd_cells)
    assert "**5.00**" in row(latent, "A")  # the MI column is unaffected


def test_a_tie_at_the_shown_precision_is_not_bold():
    rows = [latent_record("a", 0, 80.001, 5.0, 0.02), latent_record("b", 0, 80.004, 4.0, 0.03),
            latent_record("c", 0, 60.0, 3.0, 0.04)]
    acc, _, _ = tables(rows)
    assert not any("**" in row(acc, m) for m in ("A", "B", "C"))
    assert "no bold in acc: 2 values tie for the best" in acc


def test_runs_stopped_on_their_budget_are_marked_with_a_dagger():
    rows = [latent_record("a", 0, 80.0, 5.0, 0.02, convergence=BUDGET),
            latent_record("a", 1, 81.0, 5.0, 0.02),
            latent_record("b", 0, 70.0, 4.0, 0.03, convergence=None),
            latent_record("c", 0, 60.0, 3.0, 0.04)]
    acc, _, _ = tables(rows)
    assert row(acc, "A †(1/2)") and row(acc, "B †") and "†" not in row(acc, "C")
    assert "† under-trained: 2 of 4 runs stopped on their epoch budget" in acc
    assert "1 of them fixed-epoch runs with no convergence check" in acc


def test_records_from_several_or_dirty_commits_raise_a_warning():
    dirty = dict(MACHINE, git_commit="abc123def456+dirty")
    other = dict(MACHINE, git_commit="fedcba654321", hardware="Other CPU, 1 torch thread", threads=1,
                 torch="2.y")
    rows = records()
    rows[0]["provenance"], rows[1]["provenance"] = dirty, other
    rows[2]["config"] = {"code": {"benchbed": "0.1.0", "benchbed-energy": "0.2.0"}}
    text = render(SUITE, rows, "f", [], "r", "l")
    footer = text.split("## Provenance")[1]
    assert "**WARNING: not published from one clean commit**: the runs come from 3 different commits; " \
           "1 of 9 runs from a checkout with uncommitted changes (+dirty)" in footer
    assert "- code: benchbed 0.1.0, benchbed-energy 0.2.0" in footer
    assert "- machine: Other CPU, 1 torch thread, torch 2.y: 1 run," in footer
    assert "- machine: Test CPU, 2 torch threads, torch 2.x: 8 runs," in footer
    # 8 x 66 s x 2 threads + 66 s x 1 thread
    assert f"- total: {(8 * 66 * 2 + 66) / 3600:.2f} machine-hours" in footer


def test_a_metric_evaluated_after_training_names_its_commit_beside_the_training_one():
    rows = records()
    for r in rows:
        r["provenance"] = dict(MACHINE, git_commit="aaaaaaaaaaaa")
    for r in rows[:4]:
        r["provenance"]["evaluated"] = {"bbbbbbbbbbbb": ["acc"]}
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert ("- git commit: bbbbbbbbbbbb (every run: trained at aaaaaaaaaaaa under the run keys "
            "bbbbbbbbbbbb plans; acc evaluated at bbbbbbbbbbbb on the stored weights of 4 runs)") in footer
    # evaluated at two commits, or from a dirty checkout: not one clean commit
    rows[0]["provenance"]["evaluated"] = {"cccccccccccc": ["acc"]}
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert "**WARNING: not published from one clean commit**: metrics were evaluated later at 2 commits" in footer
    assert "evaluated later: bbbbbbbbbbbb (acc; 3 runs), cccccccccccc (acc; 1 run)" in footer
    rows[0]["provenance"]["evaluated"] = {"bbbbbbbbbbbb+dirty": ["acc"]}
    rows[0]["provenance"]["git_commit"] = "aaaaaaaaaaaa+dirty"  # trained and evaluated dirty: one run
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert "1 of 9 runs from a checkout with uncommitted changes (+dirty)" in footer
    for r in rows:  # trained in a checkout, evaluated later where no commit could be read
        r["provenance"] = dict(MACHINE, git_commit="aaaaaaaaaaaa", evaluated={"unknown": ["acc"]})
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert "**WARNING: not published from one clean commit**: 9 of 9 runs name no commit for their training or a later evaluation" in footer


def trained_at_two_commits() -> list[dict]:
    """The records, 6 trained at cccccccccccc on 29 November and then 3 at aaaaaaaaaaaa on the 30th."""
    rows = records()
    for i, r in enumerate(rows):
        late = i < 3
        r["provenance"] = dict(MACHINE, git_commit="aaaaaaaaaaaa" if late else "cccccccccccc",
                               finished="2026-11-30 10:00 UTC" if late else "2026-11-29 10:00 UTC")
    return rows


def test_runs_trained_at_two_clean_commits_name_the_latest_and_each_commits_share():
    # e.g. three runs given a larger budget after the others were trained: the page keeps only
    # records whose keys the suite plans now, so the latest commit repeats every one of them
    rows = trained_at_two_commits()  # the later commit has the smaller hash: ordered by time, not by name
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert ("- git commit: aaaaaaaaaaaa (every run under the run keys aaaaaaaaaaaa plans: trained at "
            "cccccccccccc (6 runs) and aaaaaaaaaaaa (3 runs))") in footer and "WARNING" not in footer
    for r in rows[:3]:  # which came last is not known: warn
        r["provenance"]["finished"] = "2026-11-29 10:00 UTC"
    assert "WARNING" in render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    rows[0]["provenance"]["git_commit"] = "aaaaaaaaaaaa+dirty"  # one of them dirty: no longer one commit
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert "**WARNING: not published from one clean commit**: the runs come from 3 different commits" in footer


def test_runs_of_two_commits_with_a_metric_evaluated_later_name_the_latest_if_it_was_not_re_evaluated():
    # vimae: 18 runs trained at one commit, 9 of them given a new metric later, 3 retrained last
    rows = trained_at_two_commits()
    for r in rows[3:]:
        r["provenance"]["evaluated"] = {"bbbbbbbbbbbb": ["acc"]}
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert ("- git commit: aaaaaaaaaaaa (every run under the run keys and metric specs aaaaaaaaaaaa plans: "
            "trained at cccccccccccc (6 runs) and aaaaaaaaaaaa (3 runs); acc evaluated at bbbbbbbbbbbb on the "
            "stored weights of 6 runs)") in footer and "WARNING" not in footer
    # the latest commit's own runs re-evaluated later: a spec changed after it, so it does not repeat them
    rows[0]["provenance"]["evaluated"] = {"bbbbbbbbbbbb": ["acc"]}
    assert "WARNING" in render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]


def test_a_metric_evaluated_after_every_training_names_the_commit_that_evaluated_it():
    # vimae: a metric added to three old runs after the latest training; the latest training commit
    # does not plan it, the evaluating one plans everything
    rows = trained_at_two_commits()
    for r in rows[6:]:
        r["provenance"]["evaluated"] = {"dddddddddddd": ["mi"]}
        r["provenance"]["evaluated_finished"] = {"dddddddddddd": "2026-11-30 11:00 UTC"}
    footer = render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]
    assert ("- git commit: dddddddddddd (every run under the run keys and metric specs dddddddddddd plans: "
            "trained at cccccccccccc (6 runs) and aaaaaaaaaaaa (3 runs); mi evaluated at dddddddddddd on the "
            "stored weights of 3 runs)") in footer and "WARNING" not in footer
    # evaluated before the latest training, which did not re-evaluate: the latest training plans it all
    for r in rows[6:]:
        r["provenance"]["evaluated_finished"] = {"dddddddddddd": "2026-11-29 11:00 UTC"}
    assert "- git commit: aaaaaaaaaaaa (every run under the run keys and metric specs aaaaaaaaaaaa" in \
        render(SUITE, rows, "f", [], "r", "l").split("## Provenance")[1]

def test_a_record_names_a_later_evaluation_only_for_values_it_holds(tmp_path):
    from types import SimpleNamespace
    from benchbed.publish.records import _provenance
    from benchbed.run.store import metric_hashes
    evaluation = {"metrics": {"acc": {"name": "svm"}, "mi": {"name": "mutual_info"},
                              "nll": {"name": "nll"}}, "corruptions": {}, "conditions": {}}
    h = metric_hashes(evaluation)
    (tmp_path / "provenance.json").write_text('{"git_commit": "aaaaaaaaaaaa"}')
    done = {h["acc"]: {"values": {"x": 1.0}, "commit": "bbbbbbbbbbbb"},       # evaluated later
            h["mi"]: {"values": {}, "error": "boom", "commit": "bbbbbbbbbbbb"},  # failed: no value
            h["nll"]: {"values": {"x": 2.0}, "commit": "aaaaaaaaaaaa"}}          # with the training
    prov = _provenance(SimpleNamespace(evaluation=evaluation), tmp_path, done)
    assert prov == {"git_commit": "aaaaaaaaaaaa", "evaluated": {"bbbbbbbbbbbb": ["acc"]}}
    del done[h["acc"]]
    assert _provenance(SimpleNamespace(evaluation=evaluation), tmp_path, done) == {"git_commit": "aaaaaaaaaaaa"}
    done[h["acc"]] = {"values": {"x": 1.0}, "commit": None}  # evaluated where no commit could be read
    assert _provenance(SimpleNamespace(evaluation=evaluation), tmp_path, done)["evaluated"] == {"unknown": ["acc"]}


def test_old_records_name_their_threads_in_the_hardware_string():
    old = dict(MACHINE, hardware="Intel(R) Xeon(R) Processor, 4 torch threads")
    del old["threads"]
    rows = [record("a", 0, 80.0, provenance=old)]
    assert f"- total: {66 * 4 / 3600:.2f} machine-hours" in render(SUITE, rows, "f", [], "r", "l")


def test_the_page_is_a_function_of_the_records():
    assert page() == page()
    rows = [latent_record("a", 0, 80.0, LOG_M, -0.001, convergence=BUDGET),
            latent_record("b", 0, 70.0, 0.0, 0.03)]
    assert tables(rows)[2] == tables([dict(r) for r in rows])[2]


def test_a_leaderboard_with_runs_still_to_do_says_how_many(tiny_suite, tmp_path):
    from benchbed.cli import main

    boards = tmp_path / "boards"
    assert main(["run", str(tiny_suite), "--store", str(tmp_path / "s"), "--leaderboards", str(boards),
                 "--plain"]) == 0
    assert "Incomplete" not in (boards / "tiny.md").read_text()
    (boards / "tiny" / "records" / "vimae_n__z2__s0.json").unlink()
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 0
    page = (boards / "tiny.md").read_text()
    assert "**Incomplete: 1 of the 2 planned runs have no record yet**" in page
    assert "- runs: 1 finished, 0 failed, 1 not run yet" in page


FACTORVAE = Suite.model_validate({
    **{k: v for k, v in SUITE.model_dump(exclude_none=True).items() if k not in ("leaderboards", "findings")},
    "metrics": {"fv": {"name": "factorvae_score"}},
    "leaderboards": [{"id": "t", "title": "T", "columns": [
        {"header": "FactorVAE score", "metric": "fv", "value": "eval_accuracy", "scale": 100, "digits": 1}]}],
})


def fv_record(method, seed, accuracy, active):
    r = record(method, seed, None, metrics={"fv": {"eval_accuracy": accuracy, "active_dims": active}})
    r["evaluation"]["metrics"]["fv"] = {"name": "factorvae_score"}
    return r


def test_a_factorvae_score_with_no_active_dims_is_shown_as_such_and_never_bold_or_averaged():
    rows = [fv_record("a", 0, 0.0, 0.0), fv_record("b", 0, 0.22, 4.0), fv_record("b", 1, 0.0, 0.0),
            fv_record("c", 0, 0.18, 5.0)]
    text = render(FACTORVAE, rows, "f", [], "r", "l")
    assert "| no active dims (n=1)" in row(text, "A") and "0.0" not in row(text, "A")
    assert "22.0 (n=1, 1 no active dims)" in row(text, "B")  # the undefined seed is not averaged in
    assert "**" not in row(text, "A") + row(text, "B")  # neither ranks; C is alone, so no bold at all
    assert "- no active dims: no latent's spread reached the FactorVAE score's prune_threshold" in text


def test_findings_show_values_on_the_scale_of_the_tables_column_with_the_same_verdict():
    claims = [{"claim": "b beats c", "metric": "fv", "value": "eval_accuracy", "holds": ["b > c", "b > 0.1"],
               "digits": 3},
              {"claim": "b is c", "metric": "fv", "value": "eval_accuracy", "holds": ["b ~ c"],
               "tolerance": 0.05},
              {"claim": "own scale", "metric": "fv", "value": "eval_accuracy", "holds": ["b > c"],
               "scale": 1}]
    suite = Suite.model_validate({**FACTORVAE.model_dump(exclude_none=True), "findings": claims})
    rows = [fv_record("b", s, v, 4.0) for s, v in enumerate([0.22, 0.24, 0.23])] + [
        fv_record("c", s, v, 4.0) for s, v in enumerate([0.18, 0.2, 0.19])]
    text = render(suite, rows, "f", [], "r", "l")
    assert "fv eval_accuracy × 100: b = 23.0 (n=3) > c = 19.0 (n=3): Welch" in text  # the column's 23.0
    assert "; b = 23.0 (n=3) > 10: one-sample" in text  # a number in the claim is shown scaled too
    assert "b = 23.0 (n=3) ~ c = 19.0 (n=3) (±5): Welch TOST, margin ±5:" in text  # the column's digits
    assert "fv eval_accuracy: b = 0.23 (n=3) > c = 0.19 (n=3)" in text  # a finding's own scale is kept
    for finding in suite.findings:  # only the display changes
        assert text.count(f"— **{verdict(finding, rows)[0]}**") >= 1


def test_a_table_with_learning_curves_shows_each_rows_training():
    suite = SUITE.model_copy(deep=True)
    suite.leaderboards[0].learning_curves = True
    epochs = np.arange(1, 13, dtype=float)
    histories = [[300.0, *(90.0 + s + 15.0 * epochs ** -0.7)] for s in range(3)]  # floors 90, 91, 92
    runs = []
    for s, losses in enumerate(histories):
        runs.append(record("a", s, 90.0 + s, convergence={
            "converged": s == 0, "stop": "budget", "epochs": 12, "max_epochs": 12, "best_epoch": 12,
            "criterion": "x", "heldout_losses": losses}))
        runs[-1]["config"]["training"] = {"converge": {"patience": 3}}
    runs += [record("b", s, 80.0) for s in range(3)]  # no held-out history: no line
    text = render(suite, runs, "f", [], "run", "lb")
    block = text[text.index("Training of these runs"):]
    cells = [c.strip() for c in next(x for x in block.splitlines() if x.startswith("| A z=8"))
             .strip("|").split("|")]

    def mean_sd(values, digits=1):
        return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    falls = [(h[-4] - h[-1]) / 3 for h in histories]
    assert cells[1:6] == ["12", "1/3", mean_sd([h[1] for h in histories]),
                          mean_sd([h[-1] for h in histories]), mean_sd(falls, 2)]
    assert cells[6] == "91.0 ± 1.0"
    assert "| B z=8" not in block
    assert "Training of these runs" not in render(SUITE, runs, "f", [], "run", "lb")


def test_a_metric_of_an_older_spec_leaves_no_trace_on_the_page():
    from benchbed.run.driver import _without
    record = {"metrics": {"acc": {"x": 1.0}, "mi": {"x": 2.0}}, "metric_errors": {"acc": "old failure"},
              "provenance": {"git_commit": "a", "evaluated": {"b": ["acc"], "c": ["acc", "mi"]}}}
    kept = _without(record, ["acc"])
    assert kept["metrics"] == {"mi": {"x": 2.0}} and kept["metric_errors"] == {}
    assert kept["provenance"] == {"git_commit": "a", "evaluated": {"c": ["mi"]}}
    assert record["metrics"]["acc"] == {"x": 1.0}  # the record read from disk is left as it was
    assert "evaluated" not in _without(record, ["acc", "mi"])["provenance"]


def test_a_planned_latent_size_without_records_keeps_its_row_of_dashes():
    # a method with runs at some sizes still shows the others, so a reader sees what is missing
    suite = Suite.model_validate({**SUITE.model_dump(exclude={"leaderboards", "findings"}), "leaderboards": [
        {"id": "z", "title": "Z", "methods": ["a", "b"], "by_latent_dim": True,
         "columns": [{"header": "acc", "metric": "svm", "value": "accuracy/clean"}]}]})
    rows = [record("a", s, 90.0 + s) for s in range(3)] + [record("b", 0, 80.0, latent_dim=2)]
    cells = [[c.strip() for c in line.strip("|").split("|")]
             for line in render(suite, rows, "f", [], "r", "l").splitlines() if line.startswith("| A ")
             or line.startswith("| B ")]
    assert [c[:2] for c in cells] == [["A", "2"], ["A", "8"], ["B", "2"], ["B", "8"]]
    assert cells[0][2] == "—" and cells[3][2] == "—" and cells[1][2] != "—"


def test_a_missing_size_row_keeps_to_the_methods_sizes_and_the_grid_columns():
    suite = Suite.model_validate({**SUITE.model_dump(exclude={"leaderboards", "findings"}),
                                  "grid": {"latent_dim": [2, 8], "seed": [0, 1, 2],
                                           "params": {"training.optimiser.lr": [0.1, 0.2]}},
                                  "leaderboards": [
        {"id": "z", "title": "Z", "methods": ["a", "b"], "by_latent_dim": True, "where": {"latent_dim": [2, 8]},
         "columns": [{"header": "acc", "metric": "svm", "value": "accuracy/clean"}]}]})
    suite.methods["b"].latent_dims = [2]
    rows = [dict(record("a", 0, 90.0), grid={"training.optimiser.lr": lr}) for lr in (0.1, 0.2)]
    lines = [line for line in render(suite, rows, "f", [], "r", "l").splitlines()
             if line.startswith("| A ") or line.startswith("| B ")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    # B runs at 2 only: no row at 8; a missing row leaves its grid cell empty, the value column shows —
    assert cells == [["A", "2", "", "—"], ["A", "8", "0.1", "90.00 (n=1)"], ["A", "8", "0.2", "90.00 (n=1)"],
                     ["B", "2", "", "—"]]


def test_a_label_with_a_pipe_keeps_its_table_row():
    # A line break in a label is refused where the suite writes it (test_suite_validation); a record
    # written before that rule may still hold one.
    rows = [{**r, "label": "A | B\nC"} if r["method"] == "a" else r for r in records()]
    suite = Suite.model_validate({
        **SUITE.model_dump(by_alias=True, exclude_unset=True),
        "methods": {m: {"label": "A | B" if m == "a" else m.upper(), "objective": {"name": "elbo"},
                        "encoder": "mlp", "decoder": "mlp"} for m in ("a", "b", "c")}})
    text = render(suite, rows, "f", [], "r", "l")
    table = [line for line in text.splitlines() if line.startswith("|")]
    cells = {len(re.split(r"(?<!\\)\|", line)) for line in table}
    assert len(cells) == 1 and any("A \\| B" in line for line in table)


def test_a_method_that_trains_otherwise_than_the_rest_is_named_on_the_page(write_suite):
    from benchbed.plan.loaded import load
    from benchbed.publish.deviations import deviations_for
    from conftest import TINY_SUITE
    suite = write_suite(TINY_SUITE.replace("    objective: {name: vimae}\n",
                                           "    objective: {name: vimae}\n    training: {batch_size: 20}\n"
                                           "    training_at: {3: {epochs: 5}}\n")
                        .replace("grid: {latent_dim: [2], seed: [0]}", "grid: {latent_dim: [2, 3], seed: [0, 1]}"))
    lines = [line for line in deviations_for(load(suite)) if line.startswith("Not every run")]
    assert lines == [
        "Not every run trains alike: `training.batch_size` is 50 for elbo; 20 for vimae_n.",
        "Not every run trains alike: `training.epochs` is 2 for elbo, vimae_n at z=2; 5 for vimae_n at z=3."]
    assert not [line for line in deviations_for(load(write_suite(TINY_SUITE, "alike.yaml")))
                if line.startswith("Not every run")]


def test_a_huge_value_is_shown_in_powers_of_ten_not_in_all_its_digits():
    from benchbed.publish.leaderboard import _number
    assert _number(1e300, 2) == "1.00e+300" and _number(-3.5e12, 1) == "-3.50e+12"
    assert _number(123456.789, 2) == "123456.79" and _number(0.00042, 4) == "0.0004"
