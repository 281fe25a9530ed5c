"""Training objectives: losses against independent arithmetic, InfoVAE's special cases,
and short real-MNIST runs in which every objective's loss falls."""

import math
import re

import pytest
import torch

from benchbed import testing
from benchbed.plugin_api.registry import load_registry
from conftest import mnist_images

SHAPE = (1, 28, 28)
OBJECTIVES = ["elbo", "beta_vae", "ae", "infovae", "vimae", "mmd_vae", "stein_vae", "aae"]
WITH_DIVERGENCE = ["infovae", "vimae", "mmd_vae", "stein_vae", "aae"]
DIVERGENCES = ["mmd", "stein", "adversarial", "kl"]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def mnist_train():
    """3000 real MNIST training images, pixel/256 grey levels, shape (N, 1, 28, 28)."""
    return mnist_images("train", 3000)[0]


def make_model(latent_dim=8, prior=None, posterior="gaussian", seed=0):
    return testing.tiny_model(SHAPE, latent_dim, hidden=128, prior=prior, seed=seed, posterior=posterior)


def make_objective(registry, name, latent_dim=8, divergence="default", **params):
    """Build an objective and bind its divergence the way the trainer does."""
    return testing.objective(name, True if divergence == "default" else divergence, latent_dim, **params)


def small_batch(seed=1, n=32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *SHAPE, generator=g) < 0.3).float()


def loss_with_seed(objective, model, x, seed=7):
    torch.manual_seed(seed)
    return objective.loss(model, x)


# ------------------------------------------------------------- registration


def test_all_objectives_are_registered_with_documented_params(registry):
    assert set(OBJECTIVES) <= set(registry.names("objective"))
    for name in OBJECTIVES:
        cls = registry.get("objective", name).cls
        assert cls.__doc__ and "loss" in cls.__doc__
        for field in cls.Params.model_fields.values():
            assert field.description


def test_lambda_is_spelled_lambda_in_suites(registry):
    for name in WITH_DIVERGENCE:
        objective = registry.create("objective", {"name": name, "lambda": 3.5})
        assert objective.params.lambda_ == 3.5


# ------------------------------------------------- losses by independent maths


def independent_rec_and_kl(model, x, seed=7):
    """log p(x|z) by the Bernoulli formula and the Gaussian KL in closed form, same draws."""
    torch.manual_seed(seed)
    posterior = model.encoder(x)
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape)
    logits = model.decoder.raw(z).flatten(1)
    xf = x.flatten(1)
    rec = (xf * torch.nn.functional.logsigmoid(logits)
           + (1 - xf) * torch.nn.functional.logsigmoid(-logits)).sum(1)
    var = posterior.std ** 2
    kl = 0.5 * (var + posterior.mean ** 2 - 1 - torch.log(var)).sum(1)
    return rec, kl, z


@pytest.mark.parametrize("name,params,kl_weight", [("elbo", {}, 1.0), ("beta_vae", {}, 10.0),
                                                   ("beta_vae", {"beta": 4.0}, 4.0), ("ae", {}, 0.0)])
def test_kl_objectives_are_minus_rec_plus_weighted_kl(registry, name, params, kl_weight):
    model, x = make_model(), small_batch()
    loss = loss_with_seed(make_objective(registry, name, **params), model, x)
    rec, kl, _ = independent_rec_and_kl(model, x)
    torch.testing.assert_close(loss.total, (-rec + kl_weight * kl).mean())
    assert abs(loss.terms["rec"] - float(rec.mean().detach())) < 1e-3
    assert all(isinstance(v, float) for v in loss.terms.values())


def independent_imq_mmd(z, z0):
    """Unbiased MMD^2 with k = C / (C + |a - b|^2), C = 2 dim, via torch.cdist."""
    n, C = z.shape[0], 2.0 * z.shape[1]
    k = lambda a, b: C / (C + torch.cdist(a, b) ** 2)  # noqa: E731
    off = 1 - torch.eye(n)
    return ((k(z, z) * off).sum() + (k(z0, z0) * off).sum()) / (n * (n - 1)) - 2 * k(z, z0).mean()


def test_vimae_loss_is_minus_rec_plus_lambda_unbiased_imq_mmd(registry):
    model, x = make_model(latent_dim=4), small_batch()
    objective = make_objective(registry, "vimae", latent_dim=4, **{"lambda": 10.0})
    loss = loss_with_seed(objective, model, x)
    rec, _, z = independent_rec_and_kl(model, x)
    mmd = independent_imq_mmd(z, torch.randn(z.shape))  # the prior draw follows the posterior's
    torch.testing.assert_close(loss.total, -rec.mean() + 10.0 * mmd, rtol=1e-4, atol=1e-4)
    assert abs(loss.terms["mmd"] - float(mmd.detach())) < 1e-4


def test_elbo_kl_warmup_rises_linearly_and_is_checkpointed(registry):
    model, x = make_model(), small_batch()
    objective = make_objective(registry, "elbo", warmup_steps=4)
    rec, kl, _ = independent_rec_and_kl(model, x)
    for step, weight in enumerate([0.0, 0.25, 0.5, 0.75, 1.0, 1.0]):
        loss = loss_with_seed(objective, model, x)
        assert loss.terms["kl_weight"] == weight
        torch.testing.assert_close(loss.total, (-rec + weight * kl).mean())
    with torch.no_grad():  # evaluation does not advance the schedule
        loss_with_seed(objective, model, x)
    assert int(objective.state_dict()["step"]) == 6
    resumed = make_objective(registry, "elbo", warmup_steps=4)
    resumed.load_state_dict({"step": torch.tensor(2)})
    assert loss_with_seed(resumed, model, x).terms["kl_weight"] == 0.5


# ----------------------------------------------------- InfoVAE special cases


def test_infovae_with_alpha_0_lambda_1_is_the_elbo(registry):
    model, x = make_model(), small_batch()
    infovae = make_objective(registry, "infovae", alpha=0.0, **{"lambda": 1.0})
    elbo = make_objective(registry, "elbo")
    a, b = loss_with_seed(infovae, model, x), loss_with_seed(elbo, model, x)
    torch.testing.assert_close(a.total, b.total)
    grads_a = torch.autograd.grad(a.total, list(model.parameters()))
    grads_b = torch.autograd.grad(b.total, list(model.parameters()))
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)


def test_infovae_with_alpha_1_minus_beta_lambda_beta_is_beta_vae(registry):
    model, x = make_model(), small_batch()
    infovae = make_objective(registry, "infovae", alpha=1.0 - 10.0, **{"lambda": 10.0})
    beta = make_objective(registry, "beta_vae", beta=10.0)
    torch.testing.assert_close(loss_with_seed(infovae, model, x).total, loss_with_seed(beta, model, x).total)


def test_infovae_with_alpha_1_is_vimae_with_the_same_divergence(registry):
    model, x = make_model(), small_batch()
    infovae = make_objective(registry, "infovae", alpha=1.0, **{"lambda": 10.0})
    vimae = make_objective(registry, "vimae", divergence={"name": "mmd", "kernel": "imq"}, **{"lambda": 10.0})
    torch.testing.assert_close(loss_with_seed(infovae, model, x).total, loss_with_seed(vimae, model, x).total)


def test_infovae_general_case_weights_kl_and_divergence(registry):
    model, x = make_model(), small_batch()
    objective = make_objective(registry, "infovae", alpha=0.5, **{"lambda": 3.0})
    loss = loss_with_seed(objective, model, x)
    rec, kl, z = independent_rec_and_kl(model, x)
    mmd = independent_imq_mmd(z, torch.randn(z.shape))
    torch.testing.assert_close(loss.total, -rec.mean() + 0.5 * kl.mean() + 2.5 * mmd,
                               rtol=1e-4, atol=1e-3)


def test_infovae_with_the_kl_divergence_logs_both_kl_terms(registry):
    model, x = make_model(), small_batch()
    objective = make_objective(registry, "infovae", divergence={"name": "kl"}, alpha=0.5,
                               **{"lambda": 1.5})
    loss = loss_with_seed(objective, model, x)
    rec, kl, _ = independent_rec_and_kl(model, x)
    # (1 - alpha) + (alpha + lambda - 1) = lambda = 1.5 on the same per-example KL
    torch.testing.assert_close(loss.total, (-rec + 1.5 * kl).mean())
    assert abs(loss.terms["kl"] - loss.terms["div_kl"]) < 1e-5


def test_infovae_rejects_weights_that_reward_divergence_from_the_prior(registry):
    with pytest.raises(ValueError, match="beta-VAE"):
        registry.create("objective", {"name": "infovae", "alpha": 10.0, "lambda": 10.0})
    with pytest.raises(ValueError):
        registry.create("objective", {"name": "infovae", "alpha": 0.0, "lambda": 0.5})


def test_mmd_regularised_objectives_work_with_deterministic_encoders(registry):
    # A point-mass posterior: z is the encoder's output itself, and only the MMD's prior
    # draw is random, so the losses are known from the codes alone.
    model, x = make_model(posterior="deterministic"), small_batch()
    with torch.no_grad():
        z = model.encoder(x).mean
        rec = model.decoder.log_prob(x, z)
    torch.manual_seed(7)
    z0 = torch.randn(z.shape)  # the one draw the MMD makes
    mmd = independent_imq_mmd(z, z0)
    with torch.no_grad():
        losses = {name: loss_with_seed(make_objective(registry, name), model, x)
                  for name in ["vimae", "mmd_vae", "infovae", "ae"]}
    torch.testing.assert_close(losses["ae"].total, -rec.mean())
    torch.testing.assert_close(losses["vimae"].total, -rec.mean() + 10.0 * mmd, rtol=1e-4, atol=1e-4)
    # infovae's default: alpha = 1 (no KL, which needs a density), lambda = 100, IMQ MMD
    torch.testing.assert_close(losses["infovae"].total, -rec.mean() + 100.0 * mmd, rtol=1e-4, atol=1e-2)
    # mmd_vae's default lambda = 100 (see its docstring: 1000 collapses a Gaussian encoder)
    assert losses["mmd_vae"].terms["rec"] == pytest.approx(float(rec.mean()), abs=1e-3)
    assert losses["mmd_vae"].total == pytest.approx(-float(rec.mean()) + 100.0 * losses["mmd_vae"].terms["mmd"],
                                                    abs=1e-2)


# ------------------------------------------------------- divergence plumbing


# Each method named after its divergence takes that one; the general InfoVAE takes any.
NAMED_FOR = {"vimae": "mmd", "mmd_vae": "mmd", "stein_vae": "stein", "aae": "adversarial"}


@pytest.mark.parametrize("divergence_name", DIVERGENCES)
def test_infovae_trains_with_any_registered_divergence(registry, divergence_name):
    model, x = make_model(), small_batch()
    objective = make_objective(registry, "infovae", divergence={"name": divergence_name}, alpha=0.5,
                               **{"lambda": 2.0})
    loss = loss_with_seed(objective, model, x)
    loss.total.backward()
    term = objective.divergence.term_name
    logged = f"div_{term}" if term == "kl" else term  # the kl divergence beside the kl term
    # rec - (1 - alpha) KL - (alpha + lambda - 1) D, from the terms the objective logged
    expected = -loss.terms["rec"] + 0.5 * loss.terms["kl"] + 1.5 * loss.terms[logged]
    assert float(loss.total.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-4)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_divergence_without_its_own_term_name_is_logged_as_div(registry):
    from benchbed.plugin_api.components import Divergence

    class Zero(Divergence):
        def forward(self, codes):
            return codes.z.sum() * 0.0

    objective = registry.create("objective", "infovae")
    objective.bind(Zero(), latent_dim=8)
    loss = loss_with_seed(objective, make_model(), small_batch())
    assert loss.terms["div"] == 0.0 and Zero.term_name == "div"


def test_a_divergence_with_one_value_per_example_is_named_instead_of_broadcast(registry):
    from benchbed.plugin_api.components import Divergence

    class PerExample(Divergence):
        def forward(self, codes):
            return (codes.z ** 2).sum(dim=1)  # shape (batch,): would broadcast into the loss

    objective = registry.create("objective", "infovae")
    objective.bind(PerExample(), latent_dim=8)
    with pytest.raises(ValueError, match=r"divergence PerExample returned a tensor of shape \(\d+,\); "
                                         "a divergence returns one number"):
        loss_with_seed(objective, make_model(), small_batch())


def test_a_divergence_that_returns_a_python_number_is_named_instead_of_adding_no_gradient(registry):
    from benchbed.plugin_api.components import Divergence

    class PlainFloat(Divergence):
        def forward(self, codes):
            return float((codes.z ** 2).mean())  # the right value, but no gradient reaches the encoder

    objective = registry.create("objective", "infovae")
    objective.bind(PlainFloat(), latent_dim=8)
    with pytest.raises(ValueError, match="divergence PlainFloat returned float; a divergence returns one "
                                         "number for the batch as a 0-d tensor"):
        loss_with_seed(objective, make_model(), small_batch())


@pytest.mark.parametrize("objective_name", sorted(NAMED_FOR))
@pytest.mark.parametrize("divergence_name", DIVERGENCES)
def test_a_method_named_for_a_divergence_refuses_another(registry, objective_name, divergence_name):
    cls = registry.get("objective", objective_name).cls
    refusal = cls.divergence_refusal(divergence_name)
    if divergence_name == NAMED_FOR[objective_name]:
        assert refusal is None
        make_objective(registry, objective_name, divergence={"name": divergence_name})
    else:
        assert refusal == f"takes only the divergence {NAMED_FOR[objective_name]!r}, not {divergence_name!r}"
    assert cls.default_divergence["name"] == NAMED_FOR[objective_name]


def test_objectives_without_divergence_refuse_one_and_others_need_one(registry):
    with pytest.raises(ValueError, match="ELBO takes no divergence"):
        make_objective(registry, "elbo", divergence={"name": "mmd"})
    with pytest.raises(ValueError, match="VIMAE needs a divergence: 'mmd' only"):
        make_objective(registry, "vimae", divergence=None)


def test_plugins_listing_says_which_divergences_each_objective_takes(registry, capsys):
    from benchbed.cli import main
    assert main(["plugins", "-v"]) == 0
    out = capsys.readouterr().out
    for name, want in [("elbo", "none"), ("infovae", "any (default 'mmd')"),
                       ("vimae", "'mmd' only (default 'mmd')"), ("aae", "'adversarial' only")]:
        block = re.split(r"\n\S|\n  \S", out.split(f"  objective {name}: ", 1)[1])[0]
        assert f"divergence: {want}" in block, (name, block)


def test_aae_exposes_the_discriminator_and_the_autoencoder_step_does_not_train_it(registry):
    model, x = make_model(), small_batch()
    aae = make_objective(registry, "aae")
    (adversary,) = aae.adversaries()
    assert adversary.module is aae.divergence.discriminator
    loss_with_seed(aae, model, x).total.backward()
    assert all(p.grad is None for p in adversary.module.parameters())


# ------------------------------------------------------------- MNIST training


def train(objective, model, data, steps, batch=100, lr=1e-3, seed=0):
    """A bare Adam loop that also steps each adversary as the trainer does; returns the losses."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    adversaries = [(a, torch.optim.Adam(a.module.parameters(), lr=a.lr, betas=a.betas))
                   for a in objective.adversaries()]
    losses = []
    for step in range(steps):
        x = data[torch.randint(0, data.shape[0], (batch,))]
        loss = objective.loss(model, x)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        losses.append(float(loss.total.detach()))
        for adversary, adv_optimizer in adversaries:
            with torch.no_grad():
                codes = model.codes(x)
            for _ in range(adversary.steps_per_batch):
                adv_optimizer.zero_grad()
                adversary.loss(codes).backward()
                adv_optimizer.step()
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name,prior", [(n, "normal") for n in OBJECTIVES] + [("vimae", "logistic")])
def test_training_loss_falls_on_real_mnist(registry, mnist_train, name, prior):
    model = make_model(prior=prior)
    losses = train(make_objective(registry, name), model, mnist_train, steps=100)
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert all(math.isfinite(v) for v in losses)
    # every objective starts near 784 log 2 = 543 nats of reconstruction error; after 60
    # steps all were already below 265
    assert end < start - 200, (start, end)


def test_infovae_default_weight_is_mmd_vae_s_not_the_collapsing_1000(registry):
    # InfoVAE gives no lambda; 1000 with a Gaussian encoder makes q(z|x) = p(z) optimal (see mmd_vae).
    infovae = make_objective(registry, "infovae")
    mmd_vae = make_objective(registry, "mmd_vae")
    assert infovae.kl_weight == 0.0
    assert infovae.divergence_weight == mmd_vae.params.lambda_ == 100.0
