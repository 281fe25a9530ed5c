"""The disentanglement scores on representations with known answers.

Codes equal to the factors score the maximum; codes independent of the
factors score chance; a rotation mixing two factors lowers disentanglement
but keeps informativeness; a duplicated factor lowers completeness; scores
that claim it are invariant to permuting and rescaling latents. The Gaussian
total correlation is checked against -1/2 log(1 - rho^2). Where the ``disent``
package can be imported, its scores are compared on identical inputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from benchbed.distributions import DeterministicPosterior
from benchbed.plan.loaded import load
from benchbed.suite.load import SuiteInvalid
from benchbed_plugins.metrics.disentanglement.beta_vae_score import beta_vae_score
from benchbed_plugins.metrics.disentanglement.dci import completeness, dci, disentanglement
from benchbed_plugins.metrics.disentanglement.factorvae_score import factorvae_score
from benchbed_plugins.metrics.disentanglement.mig import mig
from benchbed_plugins.metrics.disentanglement.sap import sap
from benchbed_plugins.metrics.disentanglement.gaussian_tc import gaussian_total_correlation
from benchbed_plugins.metrics.disentanglement.factors import entropies, mutual_info_matrix

SIZES = (3, 6, 10, 8)  # every factor fits in MIG's 20 bins


def factor_grid(sizes=SIZES, repeats: int = 2, seed: int = 0) -> np.ndarray:
    """Every combination of factor classes ``repeats`` times, rows shuffled."""
    grid = np.stack([m.ravel() for m in np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")], 1)
    grid = np.tile(grid, (repeats, 1))
    return grid[np.random.default_rng(seed).permutation(len(grid))].astype(np.int64)


@pytest.fixture(scope="module")
def classes():
    return factor_grid()


def standardised(classes):
    v = classes.astype(float)
    return (v - v.mean(0)) / v.std(0)


def rotate(codes, i, j, angle=math.pi / 4):
    out = codes.copy()
    c, s = math.cos(angle), math.sin(angle)
    out[:, i], out[:, j] = c * codes[:, i] - s * codes[:, j], s * codes[:, i] + c * codes[:, j]
    return out


def rng():
    return np.random.default_rng(1)


# -------------------------------------------------- the estimators themselves


def test_mutual_info_matrix_matches_the_definition():
    r = np.random.default_rng(0)
    a, b = r.integers(0, 4, (500, 2)), r.integers(0, 3, (500, 3))
    mi = mutual_info_matrix(a, b)
    for i in range(2):
        for j in range(3):
            joint = np.zeros((4, 3))
            np.add.at(joint, (a[:, i], b[:, j]), 1 / 500)
            outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
            nz = joint > 0
            assert mi[i, j] == pytest.approx((joint[nz] * np.log(joint[nz] / outer[nz])).sum())
    assert entropies(np.arange(8)[:, None]) == pytest.approx([math.log(8)])


# ----------------------------------------------------------- codes = factors


def test_codes_equal_to_factors_score_the_maximum(classes):
    codes = classes.astype(float)
    assert beta_vae_score(codes, classes, SIZES, rng(), num_train=2000, num_eval=1000)["eval_accuracy"] == 1.0
    assert factorvae_score(codes, classes, SIZES, rng(), num_train=2000, num_eval=1000)["eval_accuracy"] == 1.0
    assert mig(codes, classes, SIZES)["mig"] == pytest.approx(1.0)
    assert sap(codes, classes, classes.astype(float), SIZES, "continuous")["sap"] == pytest.approx(1.0)
    out = dci(codes, classes, SIZES)
    assert out["disentanglement"] == pytest.approx(1.0)
    assert out["completeness"] == pytest.approx(1.0)
    assert out["informativeness"] == 1.0


def test_discrete_sap_of_binary_factors_is_one_minus_chance():
    classes = factor_grid((2, 2, 2), repeats=200)
    out = sap(classes.astype(float), classes, classes.astype(float), (2, 2, 2), "discrete")
    # the own latent separates the two classes; any other latent is at chance (1/2)
    assert np.allclose(np.diag(out["matrix"]), 1.0)
    assert out["sap"] == pytest.approx(0.5, abs=0.05)


# ------------------------------------------------------- independent codes


def test_codes_independent_of_the_factors_score_chance(classes):
    codes = np.random.default_rng(2).standard_normal((len(classes), 4))
    chance = 1 / len(SIZES)
    assert beta_vae_score(codes, classes, SIZES, rng(), num_train=2000, num_eval=2000)["eval_accuracy"] == \
        pytest.approx(chance, abs=0.05)
    assert factorvae_score(codes, classes, SIZES, rng(), num_train=2000, num_eval=2000)["eval_accuracy"] == \
        pytest.approx(chance, abs=0.08)
    assert mig(codes, classes, SIZES)["mig"] < 0.03
    assert sap(codes, classes, classes.astype(float), SIZES, "continuous")["sap"] < 0.01
    out = dci(codes, classes, SIZES)
    assert out["disentanglement"] < 0.15 and out["completeness"] < 0.15
    assert out["informativeness"] == pytest.approx(np.mean([1 / n for n in SIZES]), abs=0.05)


# ------------------------------------------------- mixing and duplication


def test_a_rotation_mixing_two_factors_lowers_disentanglement_not_informativeness(classes):
    codes = standardised(classes)
    mixed = rotate(codes, 2, 3)
    clean, rotated = dci(codes, classes, SIZES), dci(mixed, classes, SIZES)
    assert rotated["disentanglement"] < clean["disentanglement"] - 0.2
    assert rotated["informativeness"] == clean["informativeness"] == 1.0
    assert mig(mixed, classes, SIZES)["mig"] < mig(codes, classes, SIZES)["mig"] - 0.3
    assert factorvae_score(mixed, classes, SIZES, rng())["eval_accuracy"] < 0.8
    assert sap(mixed, classes, classes.astype(float), SIZES, "continuous")["sap"] < 0.55


def test_a_duplicated_factor_lowers_completeness_only(classes):
    codes = classes.astype(float)
    doubled = np.concatenate([codes, codes[:, :1]], 1)  # factor 0 in two latents
    out = dci(doubled, classes, SIZES)
    assert out["disentanglement"] == pytest.approx(1.0)
    assert out["completeness"] < 0.95
    # MIG: factor 0's gap is 0 (two latents carry it equally), the others keep 1
    assert mig(doubled, classes, SIZES)["mig"] == pytest.approx(3 / 4)


# -------------------------------------------------------------- invariance


def test_scores_are_invariant_to_permuting_and_rescaling_latents(classes):
    noise = np.random.default_rng(3).standard_normal((len(classes), 4))
    codes = rotate(standardised(classes), 0, 1, 0.3) + 0.3 * noise
    perm = [2, 0, 3, 1]
    moved = codes[:, perm] * np.array([3.0, 0.2, 7.0, 1.5]) + np.array([1.0, -2.0, 0.0, 5.0])
    assert mig(moved, classes, SIZES)["mig"] == pytest.approx(mig(codes, classes, SIZES)["mig"])
    assert factorvae_score(moved, classes, SIZES, rng())["eval_accuracy"] == pytest.approx(
        factorvae_score(codes, classes, SIZES, rng())["eval_accuracy"])
    assert sap(moved, classes, classes.astype(float), SIZES, "continuous")["sap"] == pytest.approx(
        sap(codes, classes, classes.astype(float), SIZES, "continuous")["sap"])
    assert gaussian_total_correlation(moved) == pytest.approx(gaussian_total_correlation(codes))
    a, b = dci(codes, classes, SIZES), dci(moved, classes, SIZES)
    for key in ("disentanglement", "completeness", "informativeness"):
        assert b[key] == pytest.approx(a[key], abs=0.03)


# ------------------------------------------------------- total correlation


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_gaussian_tc_of_two_correlated_gaussians(rho):
    n = 200_000
    cov = np.array([[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 4.0]])
    z = np.random.default_rng(4).multivariate_normal(np.zeros(3), cov, size=n)
    expected = -0.5 * math.log(1 - rho ** 2)
    # the sample TC's error is O(1/n) in bias plus O(rho / sqrt n) in spread
    assert gaussian_total_correlation(z) == pytest.approx(expected, abs=0.01)


def test_data_that_varies_no_factor_is_refused_by_name():
    from benchbed.errors import BenchbedError

    classes = np.zeros((100, 2), dtype=np.int64)
    with pytest.raises(BenchbedError, match="no factor varies"):
        mig(np.random.default_rng(0).standard_normal((100, 3)), classes, (1, 1))


def test_dci_entropies_use_base_k_and_d():
    # one latent reads two factors equally: its disentanglement is 0
    r = np.array([[0.5, 0.5], [0.0, 0.0]])
    assert disentanglement(r) == pytest.approx(0.0)
    assert completeness(r) == pytest.approx(1.0)


# ------------------------------------------------------ the suite capability


def test_validate_refuses_a_factor_score_on_a_dataset_without_factors(write_suite):
    text = """
    name: t
    citation: a test
    dataset: {name: digits}
    methods:
      vae:
        objective: {name: elbo}
        encoder: {name: mlp, hidden: [8]}
        decoder: {name: mlp, hidden: [8]}
      ae:
        objective: {name: ae}
        encoder: {name: mlp, hidden: [8]}
        decoder: {name: mlp, hidden: [8]}
    grid: {latent_dim: [2]}
    training: {epochs: 1}
    metrics:
      mig: {name: mig}
      tc: {name: gaussian_tc}
    """
    with pytest.raises(SuiteInvalid) as err:
        load(write_suite(text))
    message = str(err.value)
    assert "1 problem" in message  # gaussian_tc needs no factors; mig is said once for both methods
    assert "suite.yaml:16: metrics.mig: metric 'mig' (mig) needs ground-truth factors" in message
    assert "(asked for by methods vae, ae)" in message
    assert "dataset 'digits'" in message
    load(write_suite(text.replace("{name: digits}", "{name: dsprites, stride: {orientation: 8}}")))


# ------------------------------------------------ disent on identical inputs


def disent_metrics():
    """disent's metric modules, imported without its dataset stack (h5py,
    lightning...), which the scores never touch; None when disent is absent."""
    spec = importlib.util.find_spec("disent")
    if spec is None:
        return None
    root = Path(spec.submodule_search_locations[0])
    stubs = {"disent.dataset": {"DisentDataset": object}, "disent.util": {"to_numpy": np.asarray},
             "disent.util.function": {"wrapped_partial": lambda f, **kw: f}}
    saved = {name: sys.modules.get(name) for name in [*stubs, "disent.metrics"]}
    try:
        for name, attrs in stubs.items():
            sys.modules[name] = types.SimpleNamespace(**attrs)
        package = types.ModuleType("disent.metrics")
        package.__path__ = [str(root / "metrics")]
        sys.modules["disent.metrics"] = package
        return {m: importlib.import_module(f"disent.metrics.{m}") for m in ("_mig", "_sap", "_dci")}
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_scores_agree_with_disent_on_identical_inputs(classes):
    modules = disent_metrics()
    if modules is None:
        pytest.skip("disent is not installed")
    noise = np.random.default_rng(5).standard_normal((len(classes), 5))
    codes = np.concatenate([rotate(standardised(classes), 1, 2, 0.4), noise[:, :1]], 1) + 0.5 * noise[:, :5]
    theirs = modules["_mig"]._compute_mig(codes.T, classes.T)["mig.discrete_score"]
    assert mig(codes, classes, SIZES)["mig"] == pytest.approx(theirs, rel=1e-12)
    cut = int(round(len(codes) * 2 / 3))
    for kind in ("continuous", "discrete"):
        theirs = modules["_sap"]._compute_sap(codes[:cut].T, classes[:cut].T, codes[cut:].T,
                                              classes[cut:].T, kind == "continuous")["sap.score"]
        rows = slice(None) if kind == "discrete" else slice(0, cut)  # disent's R^2 reads the train rows
        ours = sap(codes[rows], classes[rows], classes[rows].astype(float), SIZES, kind)["sap"]
        assert ours == pytest.approx(theirs, abs=1e-9)
    importance = dci(codes, classes, SIZES)["importance"]
    assert disentanglement(importance) == pytest.approx(modules["_dci"]._disentanglement(importance), abs=1e-8)
    assert completeness(importance) == pytest.approx(modules["_dci"]._completeness(importance), abs=1e-8)


# ------------------------------------- through the plugins, on dSprites itself


class OracleEncoder(torch.nn.Module):
    """Reads each dSprites image's factor values off a table: codes = factors."""

    def __init__(self, images, values):
        super().__init__()
        self.table = {img.numpy().tobytes(): v for img, v in zip(images, values.float())}
        self.weight = torch.nn.Parameter(torch.zeros(1))  # so the model has a device

    def forward(self, x):
        return DeterministicPosterior(torch.stack([self.table[img.cpu().numpy().tobytes()] for img in x]))


class BlankDecoder(torch.nn.Module):
    def mean(self, z):
        return torch.zeros(len(z), 1, 64, 64)


def test_every_score_plugin_reads_dsprites_factors_and_scores_oracle_codes_at_the_maximum(tmp_path, monkeypatch):
    from benchbed.run.model import Autoencoder, EvalContext
    from benchbed.plugins import get_registry
    from benchbed_plugins.datasets import datafiles
    from benchbed_plugins.datasets.dsprites import DSprites
    from benchbed_plugins.priors import NormalPrior

    monkeypatch.setenv("BENCHBED_DATA", str(tmp_path / "data"))
    datafiles.clear_cache()
    # (3, 2, 1, 8, 8): all fit 20 bins. Orientation is held at 0: a turned square or ellipse
    # can draw the same pixels as another orientation (symmetry), and the oracle reads pixels.
    # Params refuse such a stride (a suite would lose the factor silently); built unchecked here.
    stride = {"scale": 5, "orientation": 40, "pos_x": 4, "pos_y": 4}
    data = DSprites(DSprites.Params.model_construct(stride=stride, test_fraction=0.5))
    train, test = data.load("train"), data.load("test")
    oracle = OracleEncoder(test.x, data.factors("test").values)
    assert len(oracle.table) == len(test)  # every test image tells its factors apart
    model = Autoencoder(oracle, BlankDecoder(), NormalPrior(), 5)
    ctx = EvalContext(model=model, dataset=data, train=train, test=test, device=torch.device("cpu"),
                      seed=0, run_dir=tmp_path, cache_dir=tmp_path)
    registry = get_registry()

    def run(name, **params):
        return registry.create("metric", {"name": name, **params}).evaluate(ctx)

    # on a random half of the grid, independent factors share a little plug-in MI
    # (about (|A| - 1)(|B| - 1) / 2N nats each): the runner-up latents are not exactly 0
    assert run("mig").values["mig"] == pytest.approx(1.0, abs=0.06)
    assert run("beta_vae_score", num_train=1000, num_eval=500).values["eval_accuracy"] == 1.0
    assert run("factorvae_score", num_train=1000, num_eval=500).values["eval_accuracy"] == 1.0
    # likewise a sample correlation of independent factors (R^2 ~ 1/N) for SAP's runner-up
    assert run("sap", factor_type="continuous").values["sap"] == pytest.approx(1.0, abs=0.06)
    out = run("dci").values
    assert out["disentanglement"] == pytest.approx(1.0) and out["completeness"] == pytest.approx(1.0)
    assert out["informativeness"] == 1.0
    # the orientation latent is constant here: a singular covariance, documented as +inf
    assert run("gaussian_tc", codes="mean").values["tc"] == math.inf
    figures = run("disentanglement_figures").figures
    assert sorted(figures) == ["figures/mi_heatmap.png", "figures/traversals.png"]
    assert all((tmp_path / f).stat().st_size > 0 for f in figures)
    datafiles.clear_cache()
