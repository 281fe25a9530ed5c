"""Pixel likelihoods, the "mlp" and "wae_conv" architectures (shapes, layouts, widths)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from benchbed.distributions import DeterministicPosterior, GaussianPosterior
from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.architectures.conv import WAEConv
from benchbed_plugins.architectures.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    LikelihoodParams,
    make_likelihood,
)
from benchbed_plugins.architectures.mlp import MLP

MNIST = (1, 28, 28)
CELEBA = (3, 64, 64)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_weight_count(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


# ------------------------------------------------------------------ likelihoods


def test_bernoulli_log_prob_is_the_torch_bernoulli_log_pmf_summed_over_pixels():
    logits = torch.randn(6, 1, 5, 4, dtype=torch.float64) * 3
    x = torch.bernoulli(torch.rand(6, 1, 5, 4, dtype=torch.float64))
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    got = BernoulliLikelihood().log_prob(logits, x)
    assert got.shape == (6,)
    torch.testing.assert_close(got, expected)


def test_bernoulli_log_prob_on_grey_targets_is_the_cross_entropy():
    logits = torch.randn(4, 3, 3, 3, dtype=torch.float64) * 4
    x = torch.rand(4, 3, 3, 3, dtype=torch.float64)
    p = 1 / (1 + torch.exp(-logits))
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum((1, 2, 3))
    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), expected)


def test_bernoulli_mean_is_sigmoid_and_samples_are_binary_with_that_frequency():
    raw = torch.full((4000, 1, 1, 1), 0.8)
    lik = BernoulliLikelihood()
    torch.testing.assert_close(lik.mean(raw), torch.full_like(raw, 1 / (1 + math.exp(-0.8))))
    s = lik.sample(raw, generator=torch.Generator().manual_seed(1))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert abs(s.mean().item() - 1 / (1 + math.exp(-0.8))) < 0.03  # ~4 standard errors


def test_gaussian_log_prob_with_fixed_sigma_is_the_normal_density_with_its_constant():
    raw = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    x = torch.rand(5, 3, 4, 4, dtype=torch.float64)
    lik = make_likelihood(LikelihoodParams(likelihood="gaussian", sigma=0.3), (3, 4, 4)).double()
    mu = 1 / (1 + torch.exp(-raw))
    # closed form written out: -0.5 log(2 pi sigma^2) - (x - mu)^2 / (2 sigma^2)
    expected = (-0.5 * math.log(2 * math.pi * 0.09) - (x - mu) ** 2 / (2 * 0.09)).sum((1, 2, 3))
    torch.testing.assert_close(lik.log_prob(raw, x), expected)
    assert not list(lik.parameters()), "a fixed sigma must not be trained"


@pytest.mark.parametrize("sigma_shape, param_shape", [("scalar", ()), ("pixel", (2, 3, 3))])
def test_gaussian_learned_sigma_matches_torch_normal_and_is_trained(sigma_shape, param_shape):
    shape = (2, 3, 3)
    lik = make_likelihood(LikelihoodParams(likelihood="gaussian", sigma="learned",
                                           sigma_shape=sigma_shape), shape).double()
    assert isinstance(lik, GaussianLikelihood)
    assert tuple(lik.log_sigma.shape) == param_shape
    with torch.no_grad():
        lik.log_sigma.copy_(torch.empty(param_shape, dtype=torch.float64).uniform_(-2, 0.5))
    raw = torch.randn(7, *shape, dtype=torch.float64)
    x = torch.rand(7, *shape, dtype=torch.float64)
    normal = torch.distributions.Normal(torch.sigmoid(raw), torch.exp(lik.log_sigma))
    got = lik.log_prob(raw, x)
    torch.testing.assert_close(got, normal.log_prob(x).sum((1, 2, 3)))
    got.sum().backward()
    assert lik.log_sigma.grad is not None and lik.log_sigma.grad.abs().sum() > 0


def test_gaussian_learned_sigma_is_floored_at_min_sigma():
    lik = make_likelihood(LikelihoodParams(likelihood="gaussian", sigma="learned", min_sigma=0.05),
                          (1, 2, 2)).double()
    with torch.no_grad():
        lik.log_sigma.fill_(-30.0)
    raw = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    x = torch.full_like(raw, 0.5)  # equals the mean sigmoid(0): only the normaliser remains
    torch.testing.assert_close(lik.log_prob(raw, x),
                               torch.full((3,), 4 * -0.5 * math.log(2 * math.pi * 0.05 ** 2),
                                          dtype=torch.float64))


def test_gaussian_samples_have_the_model_mean_and_sigma():
    lik = make_likelihood(LikelihoodParams(likelihood="gaussian", sigma=0.2), (1, 1, 1))
    raw = torch.zeros(20000, 1, 1, 1)
    s = lik.sample(raw, generator=torch.Generator().manual_seed(3))
    assert abs(s.mean().item() - 0.5) < 0.01
    assert abs(s.std().item() - 0.2) < 0.01


def test_sigma_must_be_positive_or_learned():
    with pytest.raises(ValidationError):
        LikelihoodParams(sigma=0.0)
    with pytest.raises(ValidationError):
        LikelihoodParams(sigma="fixed")


# ------------------------------------------------------------------- registry


def test_builtin_architectures_are_registered_with_what_they_provide():
    registry = load_registry()
    names = registry.names("architecture")
    assert {"mlp", "wae_conv", "pixelcnn"} <= set(names)
    assert registry.get("architecture", "mlp").cls.provides == {"encoder", "decoder"}
    assert registry.get("architecture", "wae_conv").cls.provides == {"encoder", "decoder"}
    assert registry.get("architecture", "pixelcnn").cls.provides == {"decoder"}
    arch = registry.create("architecture", {"name": "wae_conv", "width": 0.125, "posterior": "deterministic"})
    assert arch.params.width == 0.125


def test_unknown_architecture_params_are_rejected():
    with pytest.raises(ValidationError):
        MLP(hiden=[3])
    with pytest.raises(ValidationError):
        WAEConv(width=0)


# ------------------------------------------------------------------------ MLP


def test_mlp_has_vimae_layout_three_hidden_layers_of_256():
    arch = MLP()
    enc, dec = arch.build_encoder(MNIST, 2), arch.build_decoder(MNIST, 2)
    enc_sizes = [(m.in_features, m.out_features) for m in enc.modules() if isinstance(m, nn.Linear)]
    dec_sizes = [(m.in_features, m.out_features) for m in dec.modules() if isinstance(m, nn.Linear)]
    assert enc_sizes == [(784, 256), (256, 256), (256, 256), (256, 4)]  # mean and logvar
    assert dec_sizes == [(2, 256), (256, 256), (256, 256), (256, 784)]
    # 784*256+256 + 2*(256*256+256) + 256*4+4, by hand
    assert n_params(enc) == 784 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 4 + 4


def test_mlp_activation_param_picks_the_nonlinearity():
    enc = MLP(activation="tanh", hidden=[8]).build_encoder(MNIST, 2)
    assert any(isinstance(m, nn.Tanh) for m in enc.modules())
    assert not any(isinstance(m, nn.ReLU) for m in enc.modules())


def test_mlp_bernoulli_decoder_log_prob_is_bernoulli_of_its_output_logits():
    dec = MLP(hidden=[16]).build_decoder(MNIST, 3)
    z = torch.randn(4, 3)
    x = torch.bernoulli(torch.rand(4, *MNIST))
    layers = [m for m in dec.modules() if isinstance(m, nn.Linear)]
    logits = layers[1](torch.relu(layers[0](z))).reshape(4, *MNIST)  # the net by hand
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(dec.log_prob(x, z), expected)
    torch.testing.assert_close(dec.mean(z), torch.sigmoid(logits))


# --------------------------------------------------------------- both: shapes


CASES = [
    ("mlp", {"hidden": [32, 32]}, MNIST),
    ("mlp", {"hidden": [32]}, CELEBA),
    ("wae_conv", {"width": 0.125}, MNIST),
    ("wae_conv", {"width": 0.125}, CELEBA),
]


@pytest.mark.parametrize("name, params, shape", CASES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_networks_give_one_value_per_example_and_pictures_of_the_input_shape(name, params, shape,
                                                                             likelihood):
    arch = load_registry().create("architecture", {"name": name, "likelihood": likelihood, **params})
    latent = 5
    enc, dec = arch.build_encoder(shape, latent), arch.build_decoder(shape, latent)
    assert enc.latent_dim == latent and dec.latent_dim == latent
    x = torch.rand(3, *shape)
    post = enc(x)
    assert isinstance(post, GaussianPosterior)
    assert post.mean.shape == (3, latent) and post.logvar.shape == (3, latent)
    z = post.rsample()
    lp = dec.log_prob(x, z)
    assert lp.shape == (3,) and torch.isfinite(lp).all()
    mean = dec.mean(z)
    assert mean.shape == (3, *shape) and mean.min() >= 0 and mean.max() <= 1
    assert dec.sample(z, generator=torch.Generator().manual_seed(0)).shape == (3, *shape)
    lp.sum().backward()  # the whole pipeline is differentiable back to the encoder
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize("arch", [MLP(posterior="deterministic", hidden=[8]),
                                  WAEConv(posterior="deterministic", width=0.125)])
def test_deterministic_encoder_gives_a_point_mass_whose_sample_is_its_mean(arch):
    enc = arch.build_encoder(MNIST, 4)
    post = enc(torch.rand(2, *MNIST))
    assert isinstance(post, DeterministicPosterior)
    assert post.mean.shape == (2, 4)
    assert torch.equal(post.rsample(torch.Generator().manual_seed(5)), post.mean)
    assert torch.equal(post.rsample_n(3)[2], post.mean)
    with pytest.raises(ValueError):
        post.log_prob(post.mean)


# ------------------------------------------------------------------ wae_conv


def feature_sides(module: nn.Module, x: torch.Tensor, kind: type) -> list[tuple[int, int, int]]:
    """(channels, H, W) after every layer of ``kind``."""
    out = []
    handles = [m.register_forward_hook(lambda m, i, o: out.append(tuple(o.shape[1:])))
               for m in module.modules() if isinstance(m, kind)]
    module(x)
    for h in handles:
        h.remove()
    return out


def test_wae_conv_mnist_layout_follows_the_wae_paper():
    arch = WAEConv(width=0.125)
    enc, dec = arch.build_encoder(MNIST, 8), arch.build_decoder(MNIST, 8)
    # 128-256-512-1024 channels (/8), stride 2 with TF 'SAME' padding: 28 -> 14 -> 7 -> 4 -> 2
    assert feature_sides(enc, torch.rand(2, *MNIST), nn.Conv2d) == [
        (16, 14, 14), (32, 7, 7), (64, 4, 4), (128, 2, 2)]
    assert all(m.kernel_size == (4, 4) for m in enc.modules() if isinstance(m, nn.Conv2d))
    # FC to 7x7x1024 (/8), deconvs to 512, 256 (/8): 7 -> 14 -> 28, then to 1 channel
    assert feature_sides(dec.net, torch.randn(2, 8), nn.ConvTranspose2d) == [(64, 14, 14), (32, 28, 28)]
    linear = [m for m in dec.modules() if isinstance(m, nn.Linear)]
    assert linear[0].out_features == 7 * 7 * 128
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == 4


def test_wae_conv_celeba_layout_follows_the_wae_paper():
    arch = WAEConv(width=0.125)
    enc, dec = arch.build_encoder(CELEBA, 8), arch.build_decoder(CELEBA, 8)
    assert feature_sides(enc, torch.rand(2, *CELEBA), nn.Conv2d) == [
        (16, 32, 32), (32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert all(m.kernel_size == (5, 5) for m in enc.modules() if isinstance(m, nn.Conv2d))
    assert feature_sides(dec.net, torch.randn(2, 8), nn.ConvTranspose2d) == [
        (64, 16, 16), (32, 32, 32), (16, 64, 64)]
    assert [m for m in dec.modules() if isinstance(m, nn.Linear)][0].out_features == 8 * 8 * 128


@pytest.mark.parametrize("shape", [MNIST, CELEBA])
def test_wae_conv_width_scales_conv_parameters_quadratically(shape):
    full = WAEConv(width=1.0)
    eighth = WAEConv(width=0.125)
    for build in ("build_encoder", "build_decoder"):
        ratio = (conv_weight_count(getattr(eighth, build)(shape, 8))
                 / conv_weight_count(getattr(full, build)(shape, 8)))
        # only the image-side layers scale linearly, so the ratio is 1/64 up to a few percent
        assert ratio == pytest.approx(1 / 64, rel=0.05)


def test_wae_conv_rejects_unsupported_shapes_naming_the_supported_ones():
    with pytest.raises(ValueError, match=r"28, 28.*64, 64"):
        WAEConv(width=0.125).build_encoder((1, 32, 32), 4)
    with pytest.raises(ValueError, match=r"28, 28.*64, 64"):
        WAEConv(width=0.125).build_decoder((3, 48, 48), 4)


def test_wae_conv_in_eval_mode_scores_each_example_independently_of_its_batch():
    arch = WAEConv(width=0.125)
    enc, dec = arch.build_encoder(MNIST, 4), arch.build_decoder(MNIST, 4)
    x = torch.rand(6, *MNIST)
    loss = -dec.log_prob(x, enc(x).rsample()).mean()  # a training pass moves batch-norm statistics
    loss.backward()
    with torch.no_grad():  # one plain SGD step (torch.optim's first import is slow)
        for p in [*enc.parameters(), *dec.parameters()]:
            p -= 0.01 * p.grad
    enc.eval(), dec.eval()
    with torch.no_grad():
        z = enc(x).mean
        whole = dec.log_prob(x, z)
        one_by_one = torch.cat([dec.log_prob(x[i:i + 1], enc(x[i:i + 1]).mean) for i in range(6)])
    torch.testing.assert_close(whole, one_by_one, rtol=1e-4, atol=1e-3)
