"""The channels-last feature-map layout is a speed choice only: every network computes the same values."""

from __future__ import annotations

import pytest
import torch

from benchbed_plugins.architectures import layout
from benchbed_plugins.architectures.conv import WAEConv
from benchbed_plugins.architectures.pixelcnn import PixelCNN

MNIST = (1, 28, 28)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def in_layout(channels_last: bool, fn):
    before = layout.CHANNELS_LAST
    layout.CHANNELS_LAST = channels_last
    try:
        return fn()
    finally:
        layout.CHANNELS_LAST = before


def test_the_conv_layout_is_channels_last_by_default_and_keeps_values():
    h = torch.randn(2, 3, 5, 5)
    out = layout.conv_layout(h)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, h)
    assert layout.conv_layout(torch.randn(4, 3)).shape == (4, 3)  # not a feature map: untouched


@pytest.mark.parametrize("decoder", [{"likelihood": "bernoulli"}, {"likelihood": "gaussian", "sigma": 0.1}])
def test_wae_conv_computes_the_same_codes_log_probs_and_gradients_in_either_layout(decoder):
    x = (torch.rand(16, *MNIST, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    def build_and_run():
        torch.manual_seed(0)
        enc = WAEConv(WAEConv.Params(width=0.125)).build_encoder(MNIST, 8)
        dec = WAEConv(WAEConv.Params(width=0.125, **decoder)).build_decoder(MNIST, 8)
        posterior = enc(x)
        log_p = dec.log_prob(x, posterior.mean)
        log_p.sum().backward()
        grads = [p.grad for p in [*enc.parameters(), *dec.parameters()]]
        return posterior.mean.detach(), log_p.detach(), grads

    mean_cl, log_p_cl, grads_cl = in_layout(True, build_and_run)
    mean, log_p, grads = in_layout(False, build_and_run)
    # the same function: only the order of float additions inside the convs differs
    torch.testing.assert_close(mean_cl, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(log_p_cl, log_p, rtol=1e-5, atol=1e-3)
    # Relative to the largest gradient: a conv bias before batch norm has gradient 0
    # in exact arithmetic, so its float value is rounding noise in either layout.
    scale = max(g.abs().max() for g in grads)
    for g_cl, g in zip(grads_cl, grads):
        assert (g_cl - g).abs().max() <= 1e-5 * scale


def test_pixelcnn_computes_the_same_logits_in_either_layout():
    x = (torch.rand(8, *MNIST, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))

    def build_and_run():
        torch.manual_seed(0)
        dec = PixelCNN(PixelCNN.Params(n_layers=3, channels=8)).build_decoder(MNIST, 4)
        return dec.logits(x, z).detach()

    torch.testing.assert_close(in_layout(True, build_and_run), in_layout(False, build_and_run),
                               rtol=1e-5, atol=1e-5)


def test_conv_weights_are_stored_in_the_layout_and_a_state_dict_loads_across_layouts():
    nchw = in_layout(False, lambda: WAEConv(WAEConv.Params(width=0.125)).build_decoder(MNIST, 8))
    nhwc = WAEConv(WAEConv.Params(width=0.125)).build_decoder(MNIST, 8)
    conv_weights = [p for p in nhwc.parameters() if p.dim() == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    nhwc.load_state_dict(nchw.state_dict())
    z = torch.randn(4, 8)
    nchw.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc.mean(z), nchw.mean(z), rtol=1e-5, atol=1e-6)
