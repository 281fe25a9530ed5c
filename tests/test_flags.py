"""The flag rules: what makes a run under-trained or collapsed, and a value
sit at an estimator's ceiling or floor."""

from __future__ import annotations

import math

import pytest
import torch

from benchbed.publish import flags
from benchbed_plugins.metrics.class_ce import class_cross_entropy


def record(metrics: dict, names: dict, convergence=None, params=None):
    r = {"status": "finished", "metrics": metrics,
         "evaluation": {"metrics": {k: {"name": names[k], **(params or {}).get(k, {})} for k in metrics}}}
    if convergence is not None:
        r["convergence"] = convergence
    return r


def test_only_a_converged_run_is_trained_enough():
    assert flags.under_trained({})  # a fixed-epoch record: no convergence check
    assert flags.under_trained({"convergence": {"converged": False, "stop": "budget", "epochs": 30,
                                                "max_epochs": 30, "best_epoch": 30, "criterion": "x"}})
    assert not flags.under_trained({"convergence": {"converged": True, "stop": "converged", "epochs": 12,
                                                    "max_epochs": 30, "best_epoch": 7, "criterion": "x"}})


def test_codes_with_no_information_are_collapsed_whatever_the_suite_calls_the_metric():
    names = {"information": "mutual_info"}
    assert flags.collapsed(record({"information": {"mutual_info": 0.05, "log_m": 6.9}}, names))
    assert flags.collapsed(record({"information": {"mutual_info": -7e-6, "log_m": 6.9}}, names))
    assert not flags.collapsed(record({"information": {"mutual_info": 0.2, "log_m": 6.9}}, names))
    # A failed run is not judged.
    failed = record({"information": {"mutual_info": 0.0}}, names)
    failed["status"] = "failed"
    assert not flags.collapsed(failed)


def test_the_one_class_reference_is_class_ce_of_a_one_hot_sampler():
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    for k in range(10):
        one_hot = torch.zeros(10, dtype=torch.float64)
        one_hot[k] = 1.0
        assert flags.one_class_ce() == pytest.approx(class_cross_entropy(uniform, one_hot, 1e-4), rel=1e-12)
    # MNIST's train-split class frequencies: a one-class sampler stays within the tolerance.
    counts = torch.tensor([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], dtype=torch.float64)
    c = counts / counts.sum()
    for k in range(10):
        one_hot = torch.zeros(10, dtype=torch.float64)
        one_hot[k] = 1.0
        value = class_cross_entropy(c, one_hot, 1e-4)
        assert abs(value - flags.one_class_ce()) < flags.ONE_CLASS_TOLERANCE_NATS
        assert flags.collapsed(record({"cce": {"class_ce": value}}, {"cce": "class_ce"}))
    # Two classes half and half is far from it, and so is the eps the record names.
    for share in (0.5, 0.9):
        two = torch.zeros(10, dtype=torch.float64)
        two[0], two[1] = share, 1 - share
        assert not flags.collapsed(record({"cce": {"class_ce": class_cross_entropy(c, two, 1e-4)}},
                                          {"cce": "class_ce"}))
    assert flags.one_class_ce(eps=1e-2) < flags.one_class_ce(eps=1e-4) - 1.0
    # With eps = 0.01 a one-class sampler scores 1.94: the rule reads eps from the record.
    assert flags.collapsed(record({"cce": {"class_ce": 1.9}}, {"cce": "class_ce"},
                                  params={"cce": {"eps": 1e-2}}))
    assert not flags.collapsed(record({"cce": {"class_ce": 1.9}}, {"cce": "class_ce"}))


def test_mi_within_the_tolerance_of_log_m_is_at_the_ceiling():
    log_m = math.log(1000)
    recs = [record({"mi": {"mutual_info": log_m - 0.01, "log_m": log_m}}, {"mi": "mutual_info"})]
    b = flags.bound(recs, "mi", "mutual_info", [log_m - 0.01])
    assert b is not None and b.kind == "ceiling" and b.text == "≥ log M"
    assert flags.bound(recs, "mi", "mutual_info", [log_m - 0.2]) is None
    assert flags.hides_best(b, "higher") and not flags.hides_best(b, "lower")


def test_an_unbiased_mmd_below_zero_or_not_above_it_at_95_percent_is_at_the_floor():
    one = [record({"mmd": {"mmd": -5e-5}}, {"mmd": "mmd"})]
    b = flags.bound(one, "mmd", "mmd", [-5e-5])
    assert b is not None and b.kind == "floor" and b.text.startswith("< 0")

    def runs(values, se):
        return [record({"mmd": {"mmd": v, "mmd_se": se}}, {"mmd": "mmd"}) for v in values]

    # One run: 1.5 standard errors above 0 is not above it at 95% (one-sided, z = 1.645); 2.5 is.
    assert flags.bound(runs([0.003], 0.002), "mmd", "mmd", [0.003]).text.startswith("≈ 0")
    assert flags.bound(runs([0.005], 0.002), "mmd", "mmd", [0.005]) is None
    # Three seeds that agree by chance, each within its estimator's noise (disentangle's β-VAE, β = 16):
    # the mean's standard error is √(3·se²)/3 = 5.8e-5, and 7.3e-5 is under 1.645 of them.
    agreeing = [7.0e-5, 7.5e-5, 7.3e-5]
    assert flags.bound(runs(agreeing, 1e-4), "mmd", "mmd", agreeing).text.startswith("≈ 0")
    # Seeds far apart but each far above its noise: the spread is training's, not the estimator's.
    spread = [0.01, 0.05, 0.19]
    assert flags.bound(runs(spread, 1e-3), "mmd", "mmd", spread) is None
    # The biased estimator (a V-statistic) is never negative: no floor rule.
    biased = [record({"mmd": {"mmd": -1e-4}}, {"mmd": "mmd"}, params={"mmd": {"estimator": "biased"}})]
    assert flags.bound(biased, "mmd", "mmd", [-1e-4]) is None
    assert flags.hides_best(b, "lower") and not flags.hides_best(b, "higher")


def test_a_factorvae_score_with_no_active_latent_is_undefined_not_zero():
    names = {"fv": "factorvae_score"}
    dead = record({"fv": {"eval_accuracy": 0.0, "train_accuracy": 0.0, "active_dims": 0.0}}, names)
    live = record({"fv": {"eval_accuracy": 0.0, "train_accuracy": 0.1, "active_dims": 3.0}}, names)
    b = flags.undefined(dead, "fv", "eval_accuracy")
    assert b.kind == "undefined" and b.text == "no active dims" and "prune_threshold" in b.why
    assert flags.undefined(dead, "fv", "train_accuracy") is not None
    assert flags.undefined(dead, "fv", "active_dims") is None  # a count of 0 is a number
    assert flags.undefined(live, "fv", "eval_accuracy") is None  # a real 0.0 accuracy is one too
