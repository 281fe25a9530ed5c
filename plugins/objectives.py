"""Built-in training objectives: ELBO, beta-VAE, the plain autoencoder, InfoVAE, VIMAE,
MMD-VAE, Stein-VAE and the adversarial autoencoder.

Conventions shared by all of them:
- rec_i = log p(x_i | z_i) from ``model.decoder.log_prob`` (nats per example,
  summed over pixels) at one reparameterised code z_i ~ q(z|x_i);
- ``Loss.total`` is the batch MEAN of per-example nats to minimise,
  -rec + penalties; batch-level divergences (MMD, Stein, adversarial) are
  already batch statistics and are added as they are;
- ``Loss.terms`` logs ``rec`` (mean log p(x|z)), the penalty terms under
  the divergence's ``term_name`` (``kl``, ``mmd``, ``stein``, ``adv``; ``div``
  for a third-party divergence that keeps the base's; ``div_<name>`` where a
  name is taken) and ``loss``.
Which divergences each objective takes is its ``accepts_divergence``: none for
the KL-based ones, any for InfoVAE, and the divergence a method is named after
for VIMAE and MMD-VAE (MMD), Stein-VAE (Stein) and the AAE (adversarial); the
general "infovae" (alpha = 1) is the same loss with any other divergence.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, model_validator
from torch import Tensor

from benchbed import hookimpl
from benchbed.errors import BenchbedError
from benchbed.plugin_api.components import ANY_DIVERGENCE, Codes, Divergence, Loss, Objective, Params
from benchbed_plugins.divergences.kl import per_example_kl


def divergence_term_name(divergence: Divergence, taken: tuple[str, ...] = ("rec", "loss")) -> str:
    """The divergence's ``term_name``, prefixed "div_" if it would clash with
    another logged term (InfoVAE with the "kl" divergence logs both)."""
    name = divergence.term_name
    return f"div_{name}" if name in taken else name


class _ReconstructionObjective(Objective):
    """Common plumbing: codes, reconstruction, the bound divergence."""

    def __init__(self, params: Params | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.divergence = None

    def codes_and_rec(self, model, x: Tensor) -> tuple[Codes, Tensor]:
        """The batch's codes and log p(x_i | z_i) per row."""
        codes = model.codes(x)
        rec = model.decoder.log_prob(x, codes.z)
        if not isinstance(rec, Tensor) or rec.shape != (x.shape[0],):  # per-pixel values would broadcast
            shape = tuple(rec.shape) if isinstance(rec, Tensor) else type(rec).__name__
            raise BenchbedError(f"decoder {type(model.decoder).__name__}.log_prob returned {shape} for a batch of "
                             f"{x.shape[0]}; a decoder gives one log-likelihood per example, shape "
                             f"({x.shape[0]},)")
        return codes, rec

    def divergence_value(self, codes: Codes) -> Tensor:
        if self.divergence is None:
            raise RuntimeError(f"{type(self).__name__} needs a divergence: call bind() first "
                               f"(its default is {self.default_divergence})")
        value = self.divergence(codes)
        if not isinstance(value, Tensor):  # a plain number adds to the loss but carries no gradient
            raise ValueError(f"divergence {type(self.divergence).__name__} returned {type(value).__name__}; a "
                             "divergence returns one number for the batch as a 0-d tensor computed from "
                             "codes.z, so that training differentiates through it")
        if value.numel() != 1:  # a per-example value would broadcast
            raise ValueError(f"divergence {type(self.divergence).__name__} returned a tensor of shape "
                             f"{tuple(value.shape)}; a divergence returns one number for the batch "
                             "(a 0-d tensor)")
        return value


def _finish(total: Tensor, rec: Tensor, codes: Codes, **terms: Tensor | float) -> Loss:
    """The Loss, with the codes handed back so adversaries reuse them."""
    logged = {"rec": float(rec.mean().detach())}
    logged.update({k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in terms.items()})
    logged["loss"] = float(total.detach())
    return Loss(total=total, terms=logged, codes=codes)


# --------------------------------------------------------- KL-based objectives


class ELBO(_ReconstructionObjective):
    """Evidence lower bound (VAE): E_q[log p(x|z)] - KL(q(z|x) || p(z)).

    loss = mean_i [ -log p(x_i|z_i) + w_t KL(q(z|x_i) || p(z)) ], with the KL in
    closed form for a Gaussian posterior and the normal prior, one-sample
    Monte Carlo log q(z|x) - log p(z) otherwise (``benchbed_plugins.divergences.kl``).
    KL warm-up: w_t = min(1, t / warmup_steps) after t training steps
    (w = 1 when warmup_steps = 0). t counts the calls made in training mode
    with gradients enabled and is a buffer, so it is checkpointed and resumes.

    Params: warmup_steps.
    """

    class Params(Params):
        warmup_steps: NonNegativeInt = Field(0, description="steps over which the KL weight rises "
                                                           "linearly from 0 to 1 (0: off)")

    def __init__(self, params: Params | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> float:
        warmup = self.params.warmup_steps
        return 1.0 if warmup == 0 else min(1.0, int(self.step) / warmup)

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        kl = per_example_kl(codes)
        weight = self.kl_weight()
        if self.training and torch.is_grad_enabled():
            self.step += 1
        total = (-rec + weight * kl).mean()
        extra = {"kl_weight": weight} if self.params.warmup_steps else {}
        return _finish(total, rec, codes, kl=kl.mean(), elbo=(rec - kl).mean(), **extra)


class BetaVAE(_ReconstructionObjective):
    """beta-VAE (Higgins et al. 2017): E_q[log p(x|z)] - beta KL(q(z|x) || p(z)).

    loss = mean_i [ -log p(x_i|z_i) + beta KL(q(z|x_i) || p(z)) ]; beta = 1 is
    the ELBO. VIMAE compares against beta = 10 (the default).

    Params: beta.
    """

    class Params(Params):
        beta: PositiveFloat = Field(10.0, description="weight of the KL term (VIMAE: 10)")

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        kl = per_example_kl(codes)
        total = (-rec + self.params.beta * kl).mean()
        return _finish(total, rec, codes, kl=kl.mean())


class AE(_ReconstructionObjective):
    """Unregularised probabilistic autoencoder (InfoVAE eq. 2): L_AE = E_q[log p(x|z)].

    loss = mean_i -log p(x_i|z_i). It maximises the mutual information but
    gives up ancestral sampling; sample with the Markov chain of InfoVAE
    Proposition 1 (``Autoencoder.markov_chain``). No params.
    """

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        return _finish(-rec.mean(), rec, codes)


# ------------------------------------------------ divergence-based objectives


def lambda_field(default: float, why: str) -> Any:
    """The ``lambda_`` weight field (spelled ``lambda`` in suites)."""
    return Field(default, alias="lambda", description=f"weight of the divergence ({why})")


class _DivergenceObjective(_ReconstructionObjective):
    """rec - lambda * D(q(z) || p(z)) for the divergence bound."""

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        div = self.divergence_value(codes)
        total = -rec.mean() + self.params.lambda_ * div
        return _finish(total, rec, codes, **{divergence_term_name(self.divergence): div})


class VIMAE(_DivergenceObjective):
    """Variational InfoMax autoencoder (VIMAE eq. 9): E_q[log p(x|z)] - lambda MMD(q(z) || p(z)).

    loss = mean_i -log p(x_i|z_i) + lambda MMD^2(z, z0), z0 ~ p(z), by default
    with the IMQ kernel C / (C + ||z - z'||^2), C = 2 dim(z), and the unbiased
    estimator (VIMAE eq. 15, cross term corrected to 2/n^2, see "mmd").
    lambda = 10 for MNIST (default); VIMAE uses lambda = 100 for CelebA.
    The prior is the method's: "normal" gives VIMAE-n, "logistic" VIMAE-l.

    The reconstruction term is the decoder's. VIMAE follows WAE, whose cost
    0.05 ||x - x_hat||^2 is a Gaussian decoder with sigma^2 = 10 (decoder
    params ``likelihood: gaussian, sigma: 3.1623``), and lambda = 10 was chosen
    for that scale: suites/vimae.yaml pairs them. With a Bernoulli decoder the
    same lambda weighs the MMD roughly 100 times less against reconstruction.

    Params: lambda (alias of lambda_).
    """

    accepts_divergence = frozenset({"mmd"})
    default_divergence = {"name": "mmd", "kernel": "imq", "sigma2": 1.0, "scales": [1.0],
                          "estimator": "unbiased"}

    class Params(Params):
        lambda_: PositiveFloat = lambda_field(10.0, "VIMAE: 10 on MNIST, 100 on CelebA")


class MMDVAE(_DivergenceObjective):
    """InfoVAE's MMD-VAE: E_q[log p(x|z)] - lambda MMD(q(z) || p(z)).

    loss = mean_i -log p(x_i|z_i) + lambda MMD^2(z, z0), z0 ~ p(z), z ~ q(z|x).
    This is "infovae" with alpha = 1. Where InfoVAE is silent, the authors'
    public MMD-VAE code decides: RBF kernel exp(-||z - z'||^2 / dim^2) and the
    biased (V-statistic) estimator. The encoder is whatever the method gives;
    InfoVAE §4.2 uses a factored Gaussian q(z|x).

    lambda = 100. The paper asks only that the penalty be "on the same order
    of magnitude as the log likelihood". The code's weight (1 against a
    per-pixel MEAN error, about 1000 against log p(x|z) summed over 784
    pixels) was written for a deterministic encoder; with a Gaussian encoder
    and a PixelCNN decoder it makes q(z|x) = p(z) the optimum (MI 0: the
    decoder models x alone and the MMD is exactly matched): at z = 2 MI
    stayed at 0.00 nats for 3 and 10 epochs with every kernel, while 100 and
    below learn informative codes (benchmarks/mmd_vae_lambda.yaml repeats the
    check; the infovae leaderboard flags any collapsed run).

    Params: lambda (alias of lambda_).
    """

    accepts_divergence = frozenset({"mmd"})
    default_divergence = {"name": "mmd", "kernel": "rbf", "bandwidth": "dim_squared",
                          "estimator": "biased"}

    class Params(Params):
        lambda_: PositiveFloat = lambda_field(100.0, "InfoVAE MMD-VAE with a Gaussian encoder: 100 "
                                                     "(1000 collapses it)")


class SteinVAE(_DivergenceObjective):
    """InfoVAE's Stein-VAE: E_q[log p(x|z)] - lambda * (Stein surrogate of KL(q(z) || p(z))).

    loss = mean_i -log p(x_i|z_i) + lambda D_hat, where D_hat's gradient is
    the Stein variational gradient of KL(q(z)||p(z)) (see "stein"). That KL
    is in nats like the reconstruction, the same quantity VIMAE eq. 9 weighs
    by lambda, so lambda defaults to VIMAE's MNIST value 10.

    Params: lambda (alias of lambda_).
    """

    accepts_divergence = frozenset({"stein"})
    default_divergence = {"name": "stein"}

    class Params(Params):
        lambda_: PositiveFloat = lambda_field(10.0, "as VIMAE eq. 9 on MNIST")


class AAE(_DivergenceObjective):
    """Adversarial autoencoder: E_q[log p(x|z)] - lambda * (-E_q log D(z)).

    loss = mean_i -log p(x_i|z_i) + lambda mean_i softplus(-f(z_i)), the
    encoder's non-saturating side of the Jensen-Shannon game; the
    discriminator D = sigmoid(f) is the divergence's adversary, trained by the
    trainer after each autoencoder step (see "adversarial"). AAE alternates
    separate reconstruction and regularisation phases, which fixes no relative
    weight; lambda defaults to VIMAE's 10 so the ~0.7-nat game is not drowned
    by a ~100-nat reconstruction.

    Params: lambda (alias of lambda_).
    """

    accepts_divergence = frozenset({"adversarial"})
    default_divergence = {"name": "adversarial"}

    class Params(Params):
        lambda_: PositiveFloat = lambda_field(10.0, "AAE fixes none; VIMAE's 10")


class InfoVAE(_ReconstructionObjective):
    """General InfoVAE: rec - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) D(q(z) || p(z)).

    Zhao et al.'s family, with rec = E_q[log p(x|z)] and the KL averaged over x.

    loss = mean_i [ -log p(x_i|z_i) + (1 - alpha) KL(q(z|x_i)||p(z)) ]
           + (alpha + lambda - 1) D(z, z0);
    a term whose weight is 0 is not computed (alpha = 1 needs no posterior
    density, so deterministic encoders work; alpha + lambda = 1 needs no
    divergence). Requires alpha <= 1 and alpha + lambda >= 1 so that neither
    weight rewards divergence from the prior.

    Special cases (InfoVAE's parametrisation, used here):
      - ELBO: alpha = 0, lambda = 1 (the D weight vanishes);
      - MMD-VAE / VIMAE eq. 9: alpha = 1 with D = MMD;
      - beta-VAE: alpha = 1 - beta, lambda = beta (the D weight vanishes and
        the KL weight is beta).
    VIMAE's eq. 4 reads InfoVAE as -alpha' I_q(X;Z) - lambda KL(q(z)||p(z)) + rec
    and calls beta-VAE the case alpha' = lambda = beta. The two readings
    differ in alpha: by VIMAE eq. 3, E_x KL(q(z|x)||p(z)) = I_q(X;Z) + KL(q(z)||p(z)),
    so with D = KL(q(z)||p(z)) InfoVAE's objective is
    rec - (1 - alpha) I_q - lambda KL(q(z)||p(z)), i.e. alpha' = 1 - alpha
    and lambda is the same. Plugging alpha = lambda = beta into THIS class
    would give (1 - beta) KL(q(z|x)||p(z)) + (2 beta - 1) D, i.e.
    (1 - beta) I_q + beta KL(q(z)||p(z)) when D is the marginal KL: it rewards
    information for beta > 1 and is not beta-VAE (and is rejected here, since
    alpha > 1). Use alpha = 1 - beta, lambda = beta instead; with another D
    (MMD, ...) the cases hold only in the sense that D stands in for the KL.

    Defaults alpha = 1 (InfoVAE's recommended regime: no information
    penalty) and D = MMD (IMQ, C = 2 dim, unbiased). InfoVAE gives no lambda,
    only that the penalty be on the order of the log-likelihood; the default
    is 100, as for mmd_vae: with a Gaussian encoder a weight of 1000 makes
    q(z|x) = p(z) the optimum (see MMDVAE).

    Params: alpha, lambda (alias of lambda_).
    """

    accepts_divergence = ANY_DIVERGENCE
    default_divergence = {"name": "mmd", "kernel": "imq"}

    class Params(Params):
        alpha: float = Field(1.0, description="information preference; the per-example KL "
                                              "weight is 1 - alpha (alpha <= 1)")
        lambda_: float = Field(100.0, alias="lambda", description="divergence weight is "
                                                                  "alpha + lambda - 1 (100: see mmd_vae)")

        @model_validator(mode="after")
        def _weights_not_negative(self):
            if self.alpha > 1.0:
                raise ValueError(f"alpha = {self.alpha:g} > 1 would reward KL(q(z|x)||p(z)); "
                                 "for beta-VAE use alpha = 1 - beta, lambda = beta")
            if self.alpha + self.lambda_ - 1.0 < 0:
                raise ValueError(f"alpha + lambda - 1 = {self.alpha + self.lambda_ - 1.0:g} < 0 "
                                 "would reward divergence from the prior")
            return self

    @property
    def kl_weight(self) -> float:
        return 1.0 - self.params.alpha

    @property
    def divergence_weight(self) -> float:
        return self.params.alpha + self.params.lambda_ - 1.0

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        total = -rec.mean()
        terms: dict[str, Tensor] = {}
        if self.kl_weight != 0.0:
            kl = per_example_kl(codes).mean()
            total = total + self.kl_weight * kl
            terms["kl"] = kl
        if self.divergence_weight != 0.0:
            div = self.divergence_value(codes)
            total = total + self.divergence_weight * div
            terms[divergence_term_name(self.divergence, ("rec", "loss", "kl"))] = div
        return _finish(total, rec, codes, **terms)


@hookimpl
def register_objectives(register):
    register("elbo", ELBO)
    register("beta_vae", BetaVAE)
    register("ae", AE)
    register("infovae", InfoVAE)
    register("vimae", VIMAE)
    register("mmd_vae", MMDVAE)
    register("stein_vae", SteinVAE)
    register("aae", AAE)
