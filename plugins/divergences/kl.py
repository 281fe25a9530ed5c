"""The "kl" divergence: the per-example rate E_x KL(q(z|x) || p(z)) on a minibatch."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Codes, Divergence, Params
from benchbed.distributions import GaussianPosterior
from benchbed_plugins.priors import NormalPrior


def has_analytic_kl(codes: Codes) -> bool:
    """A factored Gaussian posterior against the standard normal prior has a closed form."""
    return isinstance(codes.posterior, GaussianPosterior) and isinstance(codes.prior, NormalPrior)


def per_example_kl(codes: Codes, analytic: bool = True) -> Tensor:
    """KL(q(z|x_i) || p(z)) for each row i: shape (N,), nats.

    Closed form when ``analytic`` and ``has_analytic_kl(codes)``; otherwise the
    one-sample Monte-Carlo estimate log q(z_i|x_i) - log p(z_i) at the
    reparameterised code z_i (unbiased, differentiable through z_i).
    A deterministic encoder has no density and raises ``ValueError``.
    """
    if analytic and has_analytic_kl(codes):
        return codes.posterior.kl_to_standard_normal()
    return codes.posterior.log_prob(codes.z) - codes.prior.log_prob(codes.z)


class KL(Divergence):
    """Per-example KL: (1/N) sum_i KL(q(z|x_i) || p(z)), the ELBO's rate term.

    Analytic for a Gaussian posterior and the "normal" prior:
        KL = 1/2 sum_d (sigma_d^2 + mu_d^2 - 1 - log sigma_d^2);
    otherwise Monte Carlo at the batch's codes: log q(z|x) - log p(z).
    Note this is E_x KL(q(z|x)||p(z)) = I_q(X;Z) + KL(q(z)||p(z)) (VIMAE eq. 3),
    an upper bound on the marginal KL(q(z)||p(z)), not the marginal itself.

    Params: analytic (use the closed form where it exists; False forces the
    Monte-Carlo estimate).
    """

    term_name = "kl"

    class Params(Params):
        analytic: bool = Field(True, description="use the closed form for a Gaussian posterior "
                                                 "and the normal prior; False forces Monte Carlo")

    def forward(self, codes: Codes) -> Tensor:
        return per_example_kl(codes, self.params.analytic).mean()


@hookimpl
def register_divergences(register):
    register("kl", KL)
