"""The "adversarial" divergence: the adversarial autoencoder's Jensen-Shannon game on z."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt, field_validator
from torch import Tensor, nn
from torch.func import functional_call

from benchbed import hookimpl
from benchbed.plugin_api.components import Adversary, Codes, Divergence, Params


def discriminator_mlp(latent_dim: int, hidden: list[int]) -> nn.Sequential:
    """z -> one logit (the log-odds that z came from the prior)."""
    layers: list[nn.Module] = []
    width = latent_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class Adversarial(Divergence):
    """Adversarial autoencoder regulariser (Makhzani et al. 2016; InfoVAE section 4.1.1).

    A discriminator D(z) = sigmoid(f(z)), an MLP on codes, is trained as the
    ``Adversary`` "discriminator" to tell prior samples (label 1) from codes
    (label 0, detached) by binary cross-entropy:

        L_D = -1/2 [ E_p log D(z0) + E_q log(1 - D(z)) ],

    whose optimum estimates 2 JS(q(z) || p(z)) - log 4. The encoder (the
    generator) minimises the non-saturating loss returned by ``forward``:

        D_adv(q, p) = -E_q log D(z) = mean softplus(-f(z)),

    which is log 2 ~ 0.693 when D cannot tell q from p. ``forward`` evaluates
    f with detached copies of the discriminator's weights, so the autoencoder's
    backward pass leaves no gradient on them; only the adversary's own loss
    trains the discriminator.

    Params: hidden (discriminator layer sizes; AAE used 1000-1000 on MNIST;
    the default 256-256 matches the width of the 256-unit MLP autoencoder,
    and a 512-512 one makes a training step of that MLP roughly twice as
    dear, see benchmarks/objective_cost.py), lr / betas (its Adam optimiser;
    InfoVAE stresses a small discriminator learning rate for stability),
    steps_per_batch (discriminator steps after each autoencoder step).
    """

    term_name = "adv"

    class Params(Params):
        hidden: list[PositiveInt] = Field([256, 256], description="discriminator hidden layer sizes")
        lr: PositiveFloat = Field(1e-4, description="discriminator Adam learning rate")
        betas: tuple[float, float] = Field((0.5, 0.9), description="discriminator Adam betas")
        steps_per_batch: PositiveInt = Field(1, description="discriminator steps per autoencoder step")

        @field_validator("betas")
        @classmethod
        def _betas_in_unit_interval(cls, v):
            if not all(0.0 <= b < 1.0 for b in v):
                raise ValueError("Adam betas must lie in [0, 1)")
            return v

    def __init__(self, params: Params | None = None, **overrides):
        super().__init__(params, **overrides)
        self.discriminator: nn.Module | None = None

    def setup(self, latent_dim: int) -> None:
        self.discriminator = discriminator_mlp(latent_dim, list(self.params.hidden))

    def _require_setup(self) -> nn.Module:
        if self.discriminator is None:
            raise RuntimeError("Adversarial.setup(latent_dim) must be called before use "
                               "(Objective.bind does it)")
        return self.discriminator

    def logits(self, z: Tensor) -> Tensor:
        """f(z), shape (N,): positive means 'looks like a prior sample'."""
        return self._require_setup()(z).squeeze(-1)

    def discriminator_loss(self, codes: Codes) -> Tensor:
        """BCE of the discriminator: prior samples are 1, (detached) codes are 0."""
        z = codes.z.detach()
        z0 = codes.prior.sample(z.shape[0], z.shape[1], device=z.device).to(z.dtype)
        logits = self.logits(torch.cat([z0, z]))
        labels = torch.cat([torch.ones(z0.shape[0]), torch.zeros(z.shape[0])]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def forward(self, codes: Codes) -> Tensor:
        disc = self._require_setup()
        frozen = {name: p.detach() for name, p in disc.named_parameters()}
        logits = functional_call(disc, frozen, (codes.z,)).squeeze(-1)
        return F.softplus(-logits).mean()  # -log sigmoid(f(z))

    def adversaries(self) -> list[Adversary]:
        p = self.params
        return [Adversary(name="discriminator", module=self._require_setup(),
                          loss=self.discriminator_loss, lr=p.lr, betas=tuple(p.betas),
                          steps_per_batch=p.steps_per_batch)]


@hookimpl
def register_divergences(register):
    register("adversarial", Adversarial)
