"""Figures of InfoVAE (samples, Proposition 1's Markov chain, curves) and VIMAE
(Fig. 1 latent scatter, Fig. 2 clean/corrupted reconstructions) as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from benchbed import testing
from benchbed.plugin_api.components import Corruption, Decoder, Encoder
from benchbed.distributions import GaussianPosterior
from benchbed.errors import BenchbedError
from benchbed.run.model import EvalContext
from benchbed_plugins.metrics import figures
C, H, W = 1, 8, 8  # tiny grey images
TILE = H + figures.PADDING


# ------------------------------------------------------------------ fixtures


class LinearEncoder(Encoder):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Linear(C * H * W, 2 * latent_dim)

    def forward(self, x):
        mean, logvar = self.net(x.flatten(1)).chunk(2, dim=1)
        return GaussianPosterior(mean, logvar)


class BernoulliDecoder(Decoder):
    """Linear logits: the test recomputes a reconstruction by hand from ``net``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.net = nn.Linear(latent_dim, C * H * W)

    def mean(self, z):
        return torch.sigmoid(self.net(z)).view(-1, C, H, W)

    def sample(self, z, generator=None):
        p = self.mean(z)
        return (torch.rand(p.shape, generator=generator) < p).float()

    def log_prob(self, x, z):  # pragma: no cover - unused here
        return torch.distributions.Bernoulli(probs=self.mean(z)).log_prob(x).flatten(1).sum(1)


class BlankLeftHalf(Corruption):
    def __call__(self, x, generator):
        out = x.clone()
        out[..., : W // 2] = 0
        return out


def make_ctx(tmp_path: Path, latent_dim: int = 2, curves=None, labelled=True) -> EvalContext:
    torch.manual_seed(0)
    model = testing.model(LinearEncoder(latent_dim), BernoulliDecoder(latent_dim)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(60, C, H, W, generator=g)
    split = testing.split(x, torch.arange(60) % 4 if labelled else None)
    return testing.eval_context(model, split, dataset=testing.InMemoryDataset(split, num_classes=4),
                                seed=3, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                                corruptions={"left blank": BlankLeftHalf()}, curves=curves)


CURVES = [
    {"step": 10, "epoch": 0, "loss": 5.0, "rec": 4.0, "probe/mmd": 0.3},
    {"step": 20, "epoch": 0, "loss": 4.0, "rec": 3.5},
    {"step": 30, "epoch": 1, "loss": float("nan"), "rec": 3.0, "probe/mmd": 0.1},
]


def png(path: Path) -> Image.Image:
    image = Image.open(path)
    assert image.format == "PNG"
    image.load()  # decodes every byte: a truncated file fails here
    return image


def tile(image: Image.Image, row: int, col: int) -> np.ndarray:
    """The H x W pixels of one grid tile (first channel)."""
    pixels = np.asarray(image)[..., 0]
    top, left = figures.PADDING + row * TILE, figures.PADDING + col * TILE
    return pixels[top:top + H, left:left + W]


def as_bytes(x: torch.Tensor) -> np.ndarray:
    """How an image in [0, 1] is written to an 8-bit PNG: floor(255 x + 0.5)."""
    return np.floor(x.detach().numpy()[0] * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------- grids


def test_every_figure_is_a_png_with_the_expected_tile_grid(tmp_path):
    ctx = make_ctx(tmp_path, curves=CURVES)
    metric = figures.Figures(grid=4, chain_steps=4, chain_keep_every=2)
    result = metric.evaluate(ctx)
    assert result.values == {}
    assert sorted(result.figures) == sorted(f"figures/{name}" for name in [
        "samples.png", "markov_chain_data.png", "markov_chain_noise.png", "reconstructions.png",
        "corrupted_reconstructions_left_blank.png", "latent_scatter.png", "curves.png"])
    images = {Path(f).name: png(tmp_path / f) for f in result.figures}

    side = 4 * TILE + figures.PADDING
    assert images["samples.png"].size == (side, side)  # 4 x 4 samples
    assert images["reconstructions.png"].size == (side, side)  # 2 pairs of 4-image rows
    chain = 3 * TILE + figures.PADDING  # x_0, then steps 2 and 4
    assert images["markov_chain_data.png"].size == (chain, side)
    assert images["markov_chain_noise.png"].size == (chain, side)
    assert images["corrupted_reconstructions_left_blank.png"].size == (side, 3 * TILE + figures.PADDING)
    for name in ("samples.png", "reconstructions.png", "markov_chain_data.png"):
        assert images[name].mode == "RGB"
    assert images["latent_scatter.png"].mode == "RGBA" and images["curves.png"].mode == "RGBA"


def test_reconstruction_rows_sit_under_their_inputs(tmp_path):
    ctx = make_ctx(tmp_path)
    figures.Figures(which=["reconstructions"], grid=4).evaluate(ctx)
    image = png(tmp_path / "figures" / "reconstructions.png")
    x = ctx.test.x
    with torch.no_grad():
        recon = torch.sigmoid(ctx.model.decoder.net(ctx.model.encoder.net(x.flatten(1))[:, :2]))
    recon = recon.view(-1, C, H, W)
    for pair in range(2):
        for col in range(4):
            i = pair * 4 + col
            assert np.abs(tile(image, 2 * pair, col).astype(int) - as_bytes(x[i])).max() <= 1
            assert np.abs(tile(image, 2 * pair + 1, col).astype(int) - as_bytes(recon[i])).max() <= 1


def test_corrupted_rows_show_clean_then_corrupted_inputs(tmp_path):
    ctx = make_ctx(tmp_path)
    metric = figures.Figures(which=["corrupted_reconstructions"], grid=3, conditions=["clean", "left blank"])
    metric.evaluate(ctx)
    clean = png(tmp_path / "figures" / "corrupted_reconstructions_clean.png")
    blank = png(tmp_path / "figures" / "corrupted_reconstructions_left_blank.png")
    first = ctx.test.x[0]
    assert np.array_equal(tile(blank, 0, 0), as_bytes(first))
    assert (tile(blank, 1, 0)[:, : W // 2] == 0).all()
    assert np.array_equal(tile(blank, 1, 0)[:, W // 2:], as_bytes(first)[:, W // 2:])
    assert np.array_equal(tile(clean, 1, 0), as_bytes(first))  # 'clean' leaves inputs alone


def test_markov_chain_starts_from_the_test_images(tmp_path):
    ctx = make_ctx(tmp_path)
    figures.Figures(which=["markov_chain"], grid=2, chain_steps=3, chain_keep_every=1).evaluate(ctx)
    image = png(tmp_path / "figures" / "markov_chain_data.png")
    assert image.size == (4 * TILE + figures.PADDING, 2 * TILE + figures.PADDING)  # x_0 .. x_3
    for row in range(2):
        assert np.array_equal(tile(image, row, 0), as_bytes(ctx.test.x[row]))


def test_unknown_conditions_are_a_clear_error(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(BenchbedError, match="left blank"):
        figures.Figures(which=["corrupted_reconstructions"], conditions=["gauss"]).evaluate(ctx)


# ------------------------------------------------------------------- plots


def test_a_2d_latent_is_scattered_as_is_and_higher_dims_by_pca(tmp_path):
    ctx = make_ctx(tmp_path, latent_dim=2)
    result = figures.Figures(which=["latent_scatter"], scatter_points=50).evaluate(ctx)
    assert png(tmp_path / result.figures[0]).size == (600, 550)

    codes = torch.randn(50, 2)
    prior = torch.randn(50, 2)
    points, prior_points, axes = figures.project_to_plane(codes, prior)
    assert torch.equal(points, codes) and torch.equal(prior_points, prior) and axes == "z_1, z_2"

    codes = torch.randn(200, 5) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.1])
    prior = torch.randn(40, 5)
    points, prior_points, axes = figures.project_to_plane(codes, prior)
    assert "principal components" in axes and "5-D" in axes
    # Independent PCA: the top two right singular vectors of the centred codes.
    centred = codes.double() - codes.double().mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    for k in range(2):
        direction = vt[k]
        expected = (codes.double() - codes.double().mean(0)) @ direction
        sign = math.copysign(1.0, float((points[:, k].double() * expected).sum()))
        assert torch.allclose(sign * points[:, k].double(), expected, atol=1e-4)
        expected_prior = (prior.double() - codes.double().mean(0)) @ direction
        assert torch.allclose(sign * prior_points[:, k].double(), expected_prior, atol=1e-4)


def test_scatter_of_unlabelled_data_is_still_drawn(tmp_path):
    ctx = make_ctx(tmp_path, latent_dim=3, labelled=False)
    result = figures.Figures(which=["latent_scatter"], scatter_points=30).evaluate(ctx)
    png(tmp_path / result.figures[0])


def test_curves_plot_each_logged_quantity_against_step(tmp_path):
    series = figures.curve_series(CURVES)
    assert list(series) == ["loss", "rec", "probe/mmd"]  # loss terms first, then probes
    assert series["loss"] == ([10.0, 20.0], [5.0, 4.0])  # the NaN is dropped
    assert series["probe/mmd"] == ([10.0, 30.0], [0.3, 0.1])  # rows without it are skipped

    ctx = make_ctx(tmp_path, curves=CURVES)
    result = figures.Figures(which=["curves"]).evaluate(ctx)
    assert result.figures == ["figures/curves.png"]
    assert png(tmp_path / "figures" / "curves.png").size == (1200, 300)  # 3 panels of 4 x 3 in


def test_no_logged_curves_means_no_curves_figure(tmp_path):
    result = figures.Figures(which=["curves"]).evaluate(make_ctx(tmp_path, curves=[]))
    assert result.figures == [] and not (tmp_path / "figures" / "curves.png").exists()


def test_params_are_validated():
    with pytest.raises(ValueError):
        figures.Figures(which=["histogram"])
    with pytest.raises(ValueError):
        figures.Figures(grid=0)
    with pytest.raises(ValueError):
        figures.Figures(which=[])
