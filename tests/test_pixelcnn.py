"""The conditional PixelCNN decoder: causality, conditioning, exact likelihood, sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.architectures.pixelcnn import PixelCNN

LATENT = 4


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def small_decoder(side: int = 6, **params):
    params = {"n_layers": 3, "channels": 8, **params}
    return PixelCNN(**params).build_decoder((1, side, side), LATENT).double()


def raster(i: int, side: int) -> tuple[int, int]:
    return divmod(i, side)


# ------------------------------------------------------------------ causality


def test_logit_of_a_pixel_ignores_that_pixel_and_all_later_ones_by_jacobian():
    side = 6
    dec = small_decoder(side, kernel_size=3, first_kernel_size=5)
    n = side * side
    dependence = torch.zeros(n, n, dtype=torch.float64)
    for seed in range(3):  # several inputs, so a dead ReLU cannot hide a path
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(1, 1, side, side, generator=g, dtype=torch.float64)
        z = torch.randn(1, LATENT, generator=g, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: dec.logits(v.reshape(1, 1, side, side), z)
                                                 .reshape(n), x.reshape(n))
        dependence += jac.abs()
    # row i = logit of pixel i (raster order), column j = input pixel j
    on_or_after = torch.triu(torch.ones(n, n, dtype=torch.bool))
    assert dependence[on_or_after].abs().max() == 0.0
    # ... and it does look back: at the left neighbour and at the pixel above
    for i in range(n):
        r, c = raster(i, side)
        if c > 0:
            assert dependence[i, i - 1] > 0, f"pixel {i} ignores its left neighbour"
        if r > 0:
            assert dependence[i, i - side] > 0, f"pixel {i} ignores the pixel above"


def test_logits_up_to_a_pixel_do_not_move_when_that_pixel_and_later_ones_are_perturbed():
    dec = PixelCNN().build_decoder((1, 28, 28), LATENT)  # the default 5 x 32 network
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.rand(2, 1, 28, 28, generator=g))
    z = torch.randn(2, LATENT, generator=g)
    with torch.no_grad():
        base = dec.logits(x, z).reshape(2, -1)
        for i in [0, 29, 405, 783]:
            perturbed = x.reshape(2, -1).clone()
            perturbed[:, i:] = torch.bernoulli(torch.rand(2, 784 - i, generator=g))
            perturbed[:, i] = 1 - x.reshape(2, -1)[:, i]  # surely changes pixel i itself
            out = dec.logits(perturbed.reshape(2, 1, 28, 28), z).reshape(2, -1)
            assert torch.equal(out[:, : i + 1], base[:, : i + 1]), f"logits <= {i} saw the future"
            if i + 1 < 784:
                assert (out[:, i + 1] - base[:, i + 1]).abs().max() > 0, \
                    f"pixel {i + 1} does not depend on pixel {i}"


@pytest.mark.parametrize("layer", range(3))
def test_z_conditions_every_layer(layer):
    dec = small_decoder(6)
    with torch.no_grad():  # keep only this layer's conditioning
        for k, cond in enumerate(dec.conditions):
            if k != layer:
                cond.weight.zero_()
        dec.out_condition.weight.zero_()
    x = torch.bernoulli(torch.rand(3, 1, 6, 6, dtype=torch.float64))
    z1 = torch.randn(3, LATENT, dtype=torch.float64)
    z2 = torch.randn(3, LATENT, dtype=torch.float64)
    with torch.no_grad():
        change = (dec.logits(x, z1) - dec.logits(x, z2)).abs()
        assert change.max() > 1e-6
        for cond in dec.conditions:
            cond.weight.zero_()
        assert torch.equal(dec.logits(x, z1), dec.logits(x, z2))  # and the change came from z alone


# ---------------------------------------------------- exact likelihood, sampling


def pixel_by_pixel_log_prob(dec, x, z):
    """log p(x|z) from H*W separate passes, each seeing only the already 'generated'
    pixels (later ones zero, as when sampling) and scoring one Bernoulli pixel."""
    n, _, h, w = x.shape
    total = torch.zeros(n, dtype=x.dtype)
    for i in range(h * w):
        r, c = divmod(i, w)
        seen = x.reshape(n, -1).clone()
        seen[:, i:] = 0
        logit = dec.logits(seen.reshape(n, 1, h, w), z)[:, 0, r, c]
        p1 = 1 / (1 + torch.exp(-logit))
        total += torch.where(x[:, 0, r, c] == 1, torch.log(p1), torch.log(1 - p1))
    return total


def test_teacher_forced_log_prob_equals_the_autoregressive_chain_rule():
    dec = small_decoder(7)
    x = torch.bernoulli(torch.rand(3, 1, 7, 7, dtype=torch.float64))
    z = torch.randn(3, LATENT, dtype=torch.float64)
    with torch.no_grad():
        got = dec.log_prob(x, z)
        expected = pixel_by_pixel_log_prob(dec, x, z)
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected)


def test_log_prob_normalises_over_all_binary_images_of_a_tiny_grid():
    dec = PixelCNN(n_layers=2, channels=4, first_kernel_size=3).build_decoder((1, 2, 3), LATENT).double()
    # every binary 2x3 image (64 of them): the probabilities must sum to one for each z
    bits = torch.tensor([[(k >> b) & 1 for b in range(6)] for k in range(64)], dtype=torch.float64)
    x = bits.reshape(64, 1, 2, 3)
    for _ in range(2):
        z = torch.randn(1, LATENT, dtype=torch.float64).expand(64, LATENT)
        with torch.no_grad():
            total = torch.logsumexp(dec.log_prob(x, z), 0)
        assert abs(total.item()) < 1e-10


def test_samples_are_binary_of_the_image_shape_and_reproducible_with_a_generator():
    dec = PixelCNN(n_layers=2, channels=8).build_decoder((1, 28, 28), LATENT)
    z = torch.randn(2, LATENT)
    a = dec.sample(z, generator=torch.Generator().manual_seed(7))
    b = dec.sample(z, generator=torch.Generator().manual_seed(7))
    c = dec.sample(z, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, 1, 28, 28)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_samples_follow_the_model_pixel_frequencies():
    """With every weight zero the model is i.i.d. Bernoulli(sigmoid(b)) for the output bias b."""
    dec = small_decoder(6)
    with torch.no_grad():
        for p in dec.parameters():
            p.zero_()
        dec.out.bias.fill_(-0.7)
    s = dec.sample(torch.zeros(200, LATENT, dtype=torch.float64),
                   generator=torch.Generator().manual_seed(2))
    expected = 1 / (1 + math.exp(0.7))
    assert abs(s.mean().item() - expected) < 0.02  # 7200 pixels: ~4 standard errors


def test_sampling_follows_the_autoregressive_logits_it_scores():
    """A near-deterministic model: each pixel is the negation of its left neighbour
    (logit +6 after a 0, -6 after a 1; the padding left of a row counts as 0), so
    samples should be rows 1 0 1 0 1, and log_prob should prefer them to their negation."""
    dec = small_decoder(5, n_layers=1, channels=1, first_kernel_size=3)
    with torch.no_grad():
        for p in dec.parameters():
            p.zero_()
        dec.convs[0].weight[0, 0, 1, 0] = -1.0  # feature = 1 - left neighbour
        dec.convs[0].bias.fill_(1.0)
        dec.out.weight.fill_(12.0)
        dec.out.bias.fill_(-6.0)
    z = torch.zeros(40, LATENT, dtype=torch.float64)
    s = dec.sample(z, generator=torch.Generator().manual_seed(0))
    pattern = torch.tensor([1.0, 0, 1, 0, 1], dtype=torch.float64).expand(5, 5)
    agreement = (s[:, 0] == pattern).double().mean()
    assert agreement > 0.98  # each pixel errs with probability sigmoid(-6) = 0.25%
    assert (dec.log_prob(s, z) > dec.log_prob(1 - s, z)).all()


def test_mean_is_the_greedy_decode_or_a_seeded_sample():
    greedy = small_decoder(5, mean_decode="greedy")
    with torch.no_grad():
        for p in greedy.parameters():
            p.zero_()
        greedy.out.bias.fill_(0.5)  # every pixel p = sigmoid(0.5) > 1/2
    z = torch.zeros(2, LATENT, dtype=torch.float64)
    assert torch.equal(greedy.mean(z), torch.ones(2, 1, 5, 5, dtype=torch.float64))
    seeded = small_decoder(5, mean_decode="sample", mean_seed=3)
    z = torch.randn(2, LATENT, dtype=torch.float64)
    m1, m2 = seeded.mean(z), seeded.mean(z)
    assert torch.equal(m1, m2)
    assert torch.equal(m1, seeded.sample(z, generator=torch.Generator().manual_seed(3)))


def test_ancestral_samples_and_chain_states_are_draws_not_greedy_decodes():
    """E[x|z] is intractable for a PixelCNN and its greedy decode is mostly
    blank, so ancestral samples (class_ce, FID, sample grids) and InfoVAE's
    Markov chain show draws x ~ p(x|z), made with the caller's generator."""
    from benchbed.distributions import DeterministicPosterior
    from benchbed.run.model import Autoencoder
    from benchbed_plugins.priors import NormalPrior

    decoder = small_decoder(5).float()
    assert decoder.shows_samples and not small_decoder(5, mean_decode="greedy").shows_samples

    class Identity(torch.nn.Module):  # x -> a fixed code, so the chain is easy to replay
        latent_dim = LATENT

        def forward(self, x):
            return DeterministicPosterior(x.flatten(1)[:, :LATENT])

    model = Autoencoder(Identity(), decoder, NormalPrior(), LATENT)
    drawn = model.sample_prior(4, generator=torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    z = NormalPrior().sample(4, LATENT, generator=replay)
    assert torch.equal(drawn, decoder.sample(z, generator=replay))

    x0 = torch.zeros(3, 1, 5, 5)
    states = model.markov_chain(x0, 2, generator=torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    x1 = decoder.sample(x0.flatten(1)[:, :LATENT], generator=replay)
    x2 = decoder.sample(x1.flatten(1)[:, :LATENT], generator=replay)
    assert [torch.equal(a, b) for a, b in zip(states, [x0, x1, x2])] == [True, True, True]


# ------------------------------------------------------------------- contract


def test_pixelcnn_is_a_decoder_only_architecture_for_single_channel_images():
    arch = load_registry().create("architecture", {"name": "pixelcnn"})
    assert arch.provides == {"decoder"}
    with pytest.raises(NotImplementedError):
        arch.build_encoder((1, 28, 28), LATENT)
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        arch.build_decoder((3, 28, 28), LATENT)
    with pytest.raises(ValidationError):
        PixelCNN(kernel_size=4)
    with pytest.raises(ValidationError):
        PixelCNN(n_layers=0)


def test_pixelcnn_log_prob_trains_the_conditioning():
    dec = PixelCNN(n_layers=2, channels=8).build_decoder((1, 28, 28), LATENT)
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    z = torch.randn(4, LATENT, requires_grad=True)
    lp = dec.log_prob(x, z)
    assert lp.shape == (4,) and (lp < 0).all()
    lp.sum().backward()
    assert z.grad.abs().sum() > 0
    assert all(c.weight.grad.abs().sum() > 0 for c in dec.conditions)
    # the masked-out kernel entries never receive gradient
    first = dec.convs[0]
    assert (first.weight.grad * (1 - first.mask)).abs().max() == 0
    assert F.binary_cross_entropy_with_logits(dec.logits(x, z), x, reduction="sum").item() == \
        pytest.approx(-lp.sum().item(), rel=1e-5)


def test_a_pixels_logit_depends_only_on_its_receptive_window_so_decoding_on_it_is_exact():
    """reach = 7 // 2 + 2 * (3 // 2) = 5 rows above and columns either side for 3 layers (7x7 A, 3x3 B)."""
    side = 12
    dec = PixelCNN(n_layers=3, channels=8).build_decoder((1, side, side), LATENT).double()
    assert dec.reach == 5
    x = torch.bernoulli(torch.rand(4, 1, side, side, dtype=torch.float64))
    z = torch.randn(4, LATENT, dtype=torch.float64)
    with torch.no_grad():
        full = dec.logits(x, z)
        for i in range(side):
            for j in range(side):
                top, left, right = max(0, i - dec.reach), max(0, j - dec.reach), min(side, j + dec.reach + 1)
                window = dec.logits(x[:, :, top:i + 1, left:right], z)[:, :, i - top, j - left]
                torch.testing.assert_close(window, full[:, :, i, j], rtol=1e-12, atol=1e-12)
        # a window one row or column short would miss part of the field: the check can fail
        i, j = side - 1, side // 2
        short = dec.logits(x[:, :, i - dec.reach + 1:i + 1, j - dec.reach + 1:j + dec.reach], z)
        assert not torch.allclose(short[:, :, -1, dec.reach - 1], full[:, :, i, j])


def test_decoding_on_receptive_windows_gives_the_same_samples_as_on_all_rows():
    dec = small_decoder(10, n_layers=2, first_kernel_size=3)
    z = torch.randn(6, LATENT, dtype=torch.float64)
    windowed = dec.sample(z, generator=torch.Generator().manual_seed(4))
    dec.crop_to_reach = False
    assert torch.equal(dec.sample(z, generator=torch.Generator().manual_seed(4)), windowed)
