"""Findings hold only beyond the seed spread: Welch's t-test one-sided in the
claimed direction, TOST for '~', a one-sample test against a number;
inconclusive with one seed, and inconclusive: under-trained when a run
stopped on its epoch budget."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from benchbed.publish.findings import verdict
from benchbed.publish.findings import fmt_p, one_sample, welch
from benchbed.suite.protocol import Finding

CONVERGED = {"converged": True, "stop": "converged", "epochs": 40, "max_epochs": 100,
             "best_epoch": 35, "criterion": "validation loss: no 1% gain in 5 epochs"}
BUDGET = {"converged": False, "stop": "budget", "epochs": 100, "max_epochs": 100,
          "best_epoch": 100, "criterion": "validation loss: no 1% gain in 5 epochs"}


def run(method, seed, value, convergence=CONVERGED, latent_dim=8, metric="svm",
        name="svm", key="accuracy/clean", extra=None):
    r = {"method": method, "label": method, "latent_dim": latent_dim, "seed": seed, "grid": {},
         "status": "finished", "metrics": {metric: {key: value, **(extra or {})}},
         "evaluation": {"metrics": {metric: {"name": name}}}}
    if convergence is not None:
        r["convergence"] = convergence
    return r


def runs(values: dict[str, list[float]], **kw) -> list[dict]:
    return [run(m, s, v, **kw) for m, vs in values.items() for s, v in enumerate(vs)]


def finding(*holds, tolerance=0.0, metric="svm", value="accuracy/clean", digits=2):
    return Finding(claim="c", metric=metric, value=value, holds=list(holds), tolerance=tolerance,
                   digits=digits)


# ---------------------------------------------------------------- the tests


def test_welch_t_and_df_match_the_formula_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    # means 2.5 and 5.25; sample variances 5/3 and 107/12; n = 4 each
    va, vb = (5 / 3) / 4, (107 / 12) / 4
    t = (2.5 - 5.25) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)
    stat = welch(a, b)
    assert stat.t == pytest.approx(t, rel=1e-12) and stat.t == pytest.approx(-1.69064, abs=1e-5)
    assert stat.df == pytest.approx(df, rel=1e-12) and stat.df == pytest.approx(4.0836, abs=1e-4)
    ref = stats.ttest_ind(a, b, equal_var=False, alternative="less")
    assert stat.p_less() == pytest.approx(ref.pvalue, rel=1e-9)
    assert stat.p_greater() == pytest.approx(1 - ref.pvalue, rel=1e-9)


def test_one_sample_t_matches_scipy():
    a = [0.31, -0.12, 0.25, 0.08, 0.19]
    stat = one_sample(a, 0.5)
    ref = stats.ttest_1samp(a, 0.5, alternative="greater")
    assert stat.t == pytest.approx(ref.statistic, rel=1e-12)
    assert stat.df == len(a) - 1
    assert stat.p_greater() == pytest.approx(ref.pvalue, rel=1e-9)


def test_a_shifted_null_is_a_margin():
    a, b = [10.0, 10.5, 9.5], [10.2, 10.8, 9.9]
    stat = welch(a, b).at(-1.0)  # H0: mean(a) - mean(b) <= -1
    ref = stats.ttest_ind([x + 1.0 for x in a], b, equal_var=False, alternative="greater")
    assert stat.p_greater() == pytest.approx(ref.pvalue, rel=1e-9)


def test_a_clear_difference_beyond_the_spread_is_reproduced_and_shows_its_numbers():
    records = runs({"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5]})
    result, shown = verdict(finding("a > b"), records)
    assert result == "reproduced"
    stat = welch([91.0, 92.5, 90.1], [85.0, 84.0, 86.5])
    text = shown[0]
    assert "a = 91.20 (n=3) > b = 85.17 (n=3)" in text
    assert f"t = {stat.t:.2f}, df = {stat.df:.1f}" in text
    assert f"p = {stat.p_greater():.3f}" in text


def test_the_opposite_beyond_the_spread_refutes():
    records = runs({"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5]})
    assert verdict(finding("b > a"), records)[0] == "refuted"
    assert verdict(finding("a < b"), records)[0] == "refuted"


def test_a_difference_inside_the_spread_is_inconclusive_not_refuted():
    # b's mean is higher, but far inside the seed spread.
    records = runs({"a": [46.4, 40.0, 52.8], "b": [46.8, 43.5, 50.1]})
    result, shown = verdict(finding("a > b"), records)
    assert result == "inconclusive"
    assert "within the spread" in shown[0]


def test_one_seed_is_never_tested():
    records = runs({"a": [91.0], "b": [50.0, 51.0]})
    result, shown = verdict(finding("a > b"), records)
    assert result == "inconclusive (n=1)"
    assert "untested (n=1)" in shown[0]


def test_runs_stopped_on_their_budget_make_even_a_clear_claim_inconclusive_under_trained():
    values = {"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5]}
    records = runs(values)
    records[0]["convergence"] = BUDGET
    result, shown = verdict(finding("a > b"), records)
    assert result == "inconclusive: under-trained"
    assert "1 of 6 runs stopped on their epoch budget" in shown[-1]
    assert "the test alone: reproduced" in shown[-1]
    # Records written before the convergence check (fixed epochs) count as stopped on the budget.
    assert verdict(finding("b > a"), runs(values, convergence=None))[0] == "inconclusive: under-trained"
    assert verdict(finding("a > b"), runs({"a": [91.0], "b": [85.0]}, convergence=None))[0] == \
        "inconclusive: under-trained (n=1)"


def test_a_multi_part_claim_needs_every_part_and_falls_with_any():
    records = runs({"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5], "c": [88.0, 95.0, 80.0]})
    assert verdict(finding("a > b", "b < a"), records)[0] == "reproduced"
    assert verdict(finding("a > b", "b > a"), records)[0] == "refuted"
    assert verdict(finding("a > b", "c > b"), records)[0] == "inconclusive"
    one_seed = records + [run("d", 0, 99.0)]
    assert verdict(finding("a > b", "d > a"), one_seed)[0] == "inconclusive (n=1)"
    assert verdict(finding("b > a", "d > a"), one_seed)[0] == "refuted"


def test_equivalence_is_two_one_sided_tests_within_the_tolerance():
    a, b = [1.00, 1.02, 0.98, 1.01], [1.01, 0.99, 1.00, 1.02]
    records = runs({"a": a, "b": b})
    result, shown = verdict(finding("a ~ b", tolerance=0.1), records)
    assert result == "reproduced"
    stat = welch(a, b)
    p_tost = max(stat.at(-0.1).p_greater(), stat.at(0.1).p_less())
    assert p_tost < 0.05
    assert f"{fmt_p(p_tost)} (equivalent" in shown[0]
    # Far apart beyond the spread: refuted; equal means but a wide spread: inconclusive.
    assert verdict(finding("a ~ b", tolerance=0.1),
                   runs({"a": a, "b": [2.0, 2.1, 1.9, 2.05]}))[0] == "refuted"
    assert verdict(finding("a ~ b", tolerance=0.1),
                   runs({"a": [0.0, 2.0, 1.0, 0.5], "b": [1.5, 0.0, 2.0, 0.3]}))[0] == "inconclusive"


def test_against_a_number_it_is_a_one_sample_test():
    near = runs({"elbo": [0.02, 0.05, 0.01, 0.03]}, metric="mi", name="mutual_info", key="mutual_info")
    f = finding("elbo ~ 0", tolerance=0.5, metric="mi", value="mutual_info")
    result, shown = verdict(f, near)
    assert result == "reproduced" and "one-sample TOST, margin ±0.5" in shown[0]
    far = runs({"elbo": [1.2, 1.4, 1.3]}, metric="mi", name="mutual_info", key="mutual_info")
    assert verdict(f, far)[0] == "refuted"
    above = finding("elbo > 1", metric="mi", value="mutual_info")
    stat = one_sample([1.2, 1.4, 1.3], 1.0)
    result, shown = verdict(above, far)
    assert result == "reproduced" and f"t = {stat.t:.2f}, df = 2.0" in shown[0]


def test_a_non_inferiority_margin_applies_to_at_least():
    records = runs({"a": [90.0, 90.4, 89.8], "b": [91.0, 91.4, 90.8]})
    assert verdict(finding("a >= b"), records)[0] == "refuted"
    assert verdict(finding("a >= b", tolerance=2.0), records)[0] == "reproduced"


def test_a_value_at_the_estimators_ceiling_cannot_be_shown_to_be_the_lower_one():
    mi = dict(metric="mi", name="mutual_info", key="mutual_info", extra={"log_m": math.log(1000)})
    records = (runs({"ae": [6.905, 6.906, 6.907]}, **mi)
               + runs({"vimae": [6.95, 6.96, 6.97]}, **{**mi, "extra": {"log_m": math.log(1100)}}))
    # ae sits at its ceiling log 1000 = 6.908: its true MI may be higher than vimae's.
    result, shown = verdict(finding("ae < vimae", metric="mi", value="mutual_info"), records)
    assert result == "inconclusive" and "ae at the estimator's ceiling" in shown[0]
    # The other direction is unaffected: a ceiling value being the higher one stands.
    low = runs({"elbo": [1.1, 1.3, 1.2]}, **mi)
    assert verdict(finding("ae > elbo", metric="mi", value="mutual_info"), records + low)[0] == "reproduced"


def test_identical_seeds_are_an_exact_difference():
    records = runs({"a": [5.0, 5.0], "b": [4.0, 4.0]})
    result, shown = verdict(finding("a > b"), records)
    assert result == "reproduced" and "t = +∞" in shown[0]
    assert verdict(finding("a < b"), records)[0] == "refuted"
    assert verdict(finding("a > b"), runs({"a": [5.0, 5.0], "b": [5.0, 5.0]}))[0] == "inconclusive"


def test_terms_without_runs_are_not_run():
    assert verdict(finding("a > b"), runs({"b": [1.0, 2.0]}))[0] == "not run"


def test_a_part_refuted_on_converged_runs_is_not_hidden_by_a_part_still_waiting_for_runs():
    # InfoVAE Fig. 1: "the ELBO drives MI toward 0" is refuted by the ELBO's own runs before L_AE's exist.
    records = runs({"elbo": [1.9, 1.95, 1.87]})
    result, shown = verdict(finding("elbo ~ 0", "ae > elbo", tolerance=0.5), records)
    assert result == "refuted"
    assert shown[0].endswith("refuted") and shown[1] == "ae > elbo: no finished runs for ae"
    # A part that holds proves nothing while another waits: the claim stays not run.
    result, shown = verdict(finding("elbo > 1", "ae > elbo"), records)
    assert (result, shown) == ("not run", ["ae > elbo: no finished runs for ae"])
    # Refuted on budget-stopped runs only: the missing part keeps it waiting.
    stopped = runs({"elbo": [1.9, 1.95, 1.87]}, convergence=BUDGET)
    assert verdict(finding("elbo ~ 0", "ae > elbo", tolerance=0.5), stopped)[0] == "not run"


def test_equivalence_without_a_margin_is_not_checked():
    result, shown = verdict(finding("a ~ b"), runs({"a": [1.0, 1.1], "b": [1.0, 1.1]}))
    assert result == "not checked" and "needs a tolerance > 0" in shown[0]


def test_a_factorvae_score_with_no_active_dims_is_undefined_not_a_number_to_compare():
    kw = {"metric": "fv", "name": "factorvae_score", "key": "eval_accuracy"}
    dead = {"active_dims": 0.0}
    records = ([run("a", s, 0.0, extra=dead, **kw) for s in range(3)]
               + runs({"b": [0.2, 0.21, 0.19]}, extra={"active_dims": 4.0}, **kw))
    claim = finding("b > a", metric="fv", value="eval_accuracy", digits=3)
    result, shown = verdict(claim, records)
    assert result == "inconclusive"  # not "reproduced" on a 0.0 that is no accuracy
    assert shown == ["b = 0.200 (n=3) > a = no active dims (n=3): not compared: a: no active dims, "
                     "so the score is undefined, not a number"]
    # A seed without an active latent is left out of its side, and said to be.
    records += [run("b", 3, 0.0, extra=dead, **kw)] + runs({"c": [0.1, 0.11, 0.09]}, **kw)
    result, shown = verdict(finding("b > c", metric="fv", value="eval_accuracy", digits=3), records)
    assert result == "reproduced"
    assert shown[0].startswith("b = 0.200 (n=3, 1 no active dims left out) > c = 0.100 (n=3): Welch")


def test_a_part_refuted_on_converged_runs_refutes_the_claim_whatever_the_other_parts_runs():
    records = runs({"a": [91.0, 92.5, 90.1], "b": [85.0, 84.0, 86.5], "c": [95.0, 96.0, 95.5]})
    records[0]["convergence"] = BUDGET  # a seed of a, read only by the first part
    result, shown = verdict(finding("a > b", "b > c"), records)
    assert result == "refuted"
    assert shown[-1] == ("1 of 9 runs stopped on their epoch budget (none of them in a refuted part); "
                         "b > c is refuted on converged runs alone, which refutes the claim")
    # A budget-stopped run in another refuted part is counted, not denied (infovae's Fig. 3(E) line).
    result, shown = verdict(finding("b > a", "b > c"), records)
    assert result == "refuted"
    assert shown[-1] == ("1 of 9 runs stopped on their epoch budget (1 refuted part(s) read some of "
                         "them); b > c is refuted on converged runs alone, which refutes the claim")
    # The refuted part reads the budget-stopped run: more training could change it.
    assert verdict(finding("b > a", "c > b"), records)[0] == "inconclusive: under-trained"
