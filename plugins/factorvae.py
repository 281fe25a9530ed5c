"""FactorVAE (Kim & Mnih 2018): the ELBO plus gamma times a total correlation
estimated by a discriminator between q(z) and its dimension-permuted copy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn
from torch.func import functional_call

from benchbed import hookimpl
from benchbed.components import Adversary, Codes, Loss
from benchbed_plugins.divergences.adversarial import Adversarial
from benchbed_plugins.divergences.kl import per_example_kl
from benchbed_plugins.objectives import _finish, _ReconstructionObjective


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each column shuffled across the batch on its own (Kim & Mnih, Algorithm 1):
    a sample of prod_d q(z_d) that keeps every marginal and breaks the joint."""
    m, dim = z.shape
    keys = torch.rand(m, dim, generator=generator, device="cpu").to(z.device)
    order = keys.argsort(dim=0)
    return torch.gather(z, 0, order)


def tc_discriminator(latent_dim: int, hidden: list[int]) -> nn.Sequential:
    """z -> one logit f(z) = log D(z) / (1 - D(z)), LeakyReLU(0.2) as Kim & Mnih."""
    layers: list[nn.Module] = []
    width = latent_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class FactorVAE(_ReconstructionObjective):
    """FactorVAE (Kim & Mnih 2018, eq. 2): ELBO - gamma TC(z), TC by the density-ratio trick.

        loss = mean_i [ -log p(x_i|z_i) + KL(q(z|x_i) || p(z)) ] + gamma TC_hat
        TC_hat = mean_i f(z_i) ~= E_q(z) log q(z) / prod_d q(z_d)

    where D = sigmoid(f) is a discriminator trained, as the ``Adversary``
    "tc_discriminator" after each autoencoder step (the interface the
    adversarial autoencoder uses), to tell codes z ~ q(z) (label 1) from
    ``permute_dims(z)`` (label 0), each latent shuffled across the batch:

        L_D = -1/2 [ E log D(z) + E log(1 - D(permute_dims(z))) ].

    At its optimum f = log q(z) / prod_d q(z_d), so the mean logit on codes
    is the total correlation. The autoencoder's term uses the discriminator's
    weights detached, so only L_D trains it. Kim & Mnih permute a second
    minibatch; here the same detached batch is permuted (one encoder pass).
    Defaults: gamma = 40, one of the values Kim & Mnih study on dSprites
    (disentanglement_lib sweeps 10, 20, 30, 40, 50, 100); discriminator of
    6 layers, 1000 LeakyReLU(0.2) units, Adam lr 1e-4, betas (0.5, 0.9), as
    the paper.

    Logged: ``rec``, ``kl``, ``tc`` (the discriminator's estimate), ``loss``.
    Params: gamma, hidden, lr, betas, steps_per_batch.
    """

    class Params(Adversarial.Params):
        """The TC discriminator's settings are the adversarial autoencoder's, with the paper's network."""

        gamma: PositiveFloat = Field(40.0, description="weight of the total correlation")
        hidden: list[PositiveInt] = Field([1000] * 5, description="discriminator hidden layer sizes")

    def __init__(self, params: Params | None = None, **overrides):
        super().__init__(params, **overrides)
        self.discriminator: nn.Module | None = None

    def bind(self, divergence, latent_dim: int) -> None:
        super().bind(divergence, latent_dim)
        self.discriminator = tc_discriminator(latent_dim, list(self.params.hidden))

    def _require_bound(self) -> nn.Module:
        if self.discriminator is None:
            raise RuntimeError("FactorVAE.bind(None, latent_dim) must be called before use")
        return self.discriminator

    def tc_estimate(self, z: Tensor) -> Tensor:
        """mean f(z) with the discriminator's weights detached: gradients reach z only."""
        disc = self._require_bound()
        frozen = {name: p.detach() for name, p in disc.named_parameters()}
        return functional_call(disc, frozen, (z,)).mean()

    def discriminator_loss(self, codes: Codes) -> Tensor:
        """BCE: codes are 1, dimension-permuted codes 0."""
        disc = self._require_bound()
        z = codes.z.detach()
        logits = disc(torch.cat([z, permute_dims(z)])).squeeze(-1)
        labels = torch.cat([torch.ones(len(z)), torch.zeros(len(z))]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def loss(self, model, x: Tensor) -> Loss:
        codes, rec = self.codes_and_rec(model, x)
        kl = per_example_kl(codes)
        tc = self.tc_estimate(codes.z)
        total = (-rec + kl).mean() + self.params.gamma * tc
        return _finish(total, rec, codes, kl=kl.mean(), tc=tc)

    def adversaries(self) -> list[Adversary]:
        p = self.params
        return [Adversary(name="tc_discriminator", module=self._require_bound(),
                          loss=self.discriminator_loss, lr=p.lr, betas=tuple(p.betas),
                          steps_per_batch=p.steps_per_batch)]


@hookimpl
def register_objectives(register):
    register("factor_vae", FactorVAE)
