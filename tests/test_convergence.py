"""Runs train until a held-out objective stops improving, and say where they stopped."""

from __future__ import annotations

import json

import pytest

from benchbed.cli import main
from benchbed.suite.protocol import Converge
from benchbed.run.train import ConvergenceCheck


def check(losses, patience=2, tolerance=0.1):
    return ConvergenceCheck(Converge(patience=patience, tolerance=tolerance, holdout=10), 100, losses)


def test_progress_is_measured_from_the_first_epoch_not_from_initialisation():
    # L_1 = 50, best falls to 9.5 (progress 40.5); the last 2 epochs bought 10 - 9.5 = 0.5 < 0.1 * 40.5
    assert check([100, 50, 20, 10, 9.8, 9.5]).converged()
    # 10 - 5 = 5 > 0.1 * (50 - 5) = 4.5: still learning
    assert not check([100, 50, 20, 10, 7, 5]).converged()
    # Measured from L_0 = 1000 instead, the same last epochs would look negligible (5 < 0.1 * 995):
    # a run whose first epoch fell from a random start must not stop for that.
    assert not check([1000, 50, 20, 10, 7, 5]).converged()
    # a plateau after a big first epoch (VIMAE's Gaussian decoder, constant 1623 nats) is not convergence
    assert not check([1650.0, 1625.523, 1625.510, 1625.498, 1625.490]).converged()


def test_the_rule_ignores_the_losses_scale_and_offset():
    losses = [100, 50, 20, 10, 9.8, 9.5]
    for a, b in ((1.0, 0.0), (0.05, 0.0), (1.0, 1623.0), (3.0, -7.0)):
        assert check([a * v + b for v in losses]).converged()
        assert not check([a * v + b for v in [100, 50, 20, 10, 7, 5]]).converged()


def test_no_verdict_before_patience_epochs_after_the_first_and_a_rise_counts_as_no_progress():
    assert not check([100, 10, 9]).converged()  # needs epochs 1 .. 1 + patience
    # best stays at 10 while the held-out loss rises (overfitting): converged
    c = check([100, 10, 12, 15])
    assert c.converged() and c.summary()["best_epoch"] == 1 and c.summary()["stop"] == "converged"


SUITE = """
name: conv
citation: "a test suite"
dataset: {name: digits}
methods:
  elbo:
    objective: {name: elbo}
    encoder: {name: mlp, hidden: [32]}
    decoder: {name: mlp, hidden: [32]}
grid: {latent_dim: [2], seed: [0]}
training: {epochs: EPOCHS, batch_size: 50, converge: {patience: 2, tolerance: 0.05, holdout: 300}}
metrics:
  logdet: {name: logdet_cov}
leaderboards:
  - id: t
    title: t
    columns:
      - {header: log-det/dim, metric: logdet, value: logdet_cov, better: closer_to_zero}
"""


@pytest.mark.parametrize("epochs, stop", [(200, "converged"), (2, "budget")])
def test_a_run_records_whether_it_converged_and_where_it_stopped(write_suite, tmp_path, epochs, stop):
    path = write_suite(SUITE.replace("EPOCHS", str(epochs)))
    boards = tmp_path / "b"
    assert main(["run", str(path), "--store", str(tmp_path / "s"), "--leaderboards", str(boards),
                 "--plain"]) == 0
    record = json.loads((boards / "conv" / "records" / "elbo__z2__s0.json").read_text())
    conv = record["convergence"]
    assert conv["stop"] == stop and conv["converged"] == (stop == "converged")
    assert conv["max_epochs"] == epochs
    assert conv["epochs"] < epochs if stop == "converged" else conv["epochs"] == epochs
    # every epoch's held-out loss is in the curves: L_1 .. L_epochs
    (run_dir,) = [p for p in (tmp_path / "s").iterdir() if p.is_dir() and p.name != "cache"]
    curves = (run_dir / "curves.csv").read_text()
    assert curves.count(",") and "heldout_loss" in curves.splitlines()[0]
    # training stopped at an epoch's end
    assert record["steps"] % conv["epochs"] == 0 and record["steps"] > 0
