"""beta-TCVAE (Chen et al. 2018): the ELBO's KL split into index-code MI, total
correlation and dimension-wise KL, each weighted, estimated on the minibatch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import Tensor

from benchbed import hookimpl
from benchbed.components import Codes, Loss, Params
from benchbed.distributions import GaussianPosterior
from benchbed_plugins.objectives import _finish, _ReconstructionObjective

LOG_2PI = math.log(2 * math.pi)


@dataclass
class DensityTerms:
    """Per-example log densities at z_i ~ q(z|x_i), each (M,)."""

    log_q_z_given_x: Tensor  # log q(z_i | x_i)
    log_q_z: Tensor  # log q(z_i), the aggregate posterior
    log_prod_q_zd: Tensor  # sum_d log q(z_id)
    log_p_z: Tensor  # log p(z_i)

    @property
    def mutual_info(self) -> Tensor:
        return (self.log_q_z_given_x - self.log_q_z).mean()

    @property
    def total_correlation(self) -> Tensor:
        return (self.log_q_z - self.log_prod_q_zd).mean()

    @property
    def dimwise_kl(self) -> Tensor:
        return (self.log_prod_q_zd - self.log_p_z).mean()


def gaussian_log_density_matrix(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_i,d; mean_j,d, exp(logvar_j,d)) for every i, j, d: (M, M, D)."""
    zi, mj, lj = z[:, None, :], mean[None, :, :], logvar[None, :, :]
    return -0.5 * (LOG_2PI + lj + (zi - mj) ** 2 * torch.exp(-lj))


def minibatch_weighted_terms(codes: Codes, dataset_size: int | None = None) -> DensityTerms:
    """Minibatch estimates of the log densities at a batch of M codes (Chen et al. §4.1):

        log q(z_i)  ~= logsumexp_j log q(z_i | x_j)  - c
        log q(z_id) ~= logsumexp_j log q(z_id | x_j) - c

    c = log M by default: q(z) is then estimated by the mixture of the batch's
    posteriors, a density, and the logged MI, TC and dimension-wise KL
    estimate those quantities (tests check them against closed forms).
    Chen et al.'s minibatch weighted sampling subtracts c = log(N M) with N
    the data-set size (give ``dataset_size`` to reproduce their logged
    values); the two differ by log N per density, a constant that moves the
    logged TC by (D - 1) log N and leaves every gradient unchanged.
    """
    posterior = codes.posterior
    if not isinstance(posterior, GaussianPosterior):
        raise ValueError(f"btcvae needs a Gaussian posterior q(z|x) (its densities at other "
                         f"codes), got {type(posterior).__name__}; use posterior: gaussian")
    z = codes.z
    m, dim = z.shape
    log_nm = math.log(m) if dataset_size is None else math.log(dataset_size * m)
    matrix = gaussian_log_density_matrix(z, posterior.mean, posterior.logvar)  # (M, M, D)
    own = matrix.diagonal(dim1=0, dim2=1).sum(0)  # log q(z_i | x_i): the i = j terms, summed over d
    log_q_z = torch.logsumexp(matrix.sum(2), dim=1) - log_nm
    log_prod = (torch.logsumexp(matrix, dim=1) - log_nm).sum(1)
    # the prior is factorised with one marginal for every dimension: log p(z_id) per entry
    log_p_z = codes.prior.log_prob(z.reshape(-1, 1)).reshape(m, dim).sum(1)
    return DensityTerms(own, log_q_z, log_prod, log_p_z)


class BetaTCVAE(_ReconstructionObjective):
    """beta-TCVAE (Chen et al. 2018, eq. 2 and 4): rec - alpha MI - beta TC - gamma dimension-wise KL.

        E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || prod_d q(z_d)) + sum_d KL(q(z_d) || p(z_d))
        loss = mean_i -log p(x_i|z_i) + alpha MI + beta TC + gamma dimKL

    each term estimated on the minibatch as in Chen et al.'s minibatch
    weighted sampling (§4.1): log q(z_i) ~= logsumexp_j log q(z_i|x_j) - c,
    and the same per dimension for q(z_id), with z_i ~ q(z|x_i); c = log M
    (a proper density, default) or Chen et al.'s log(N M) when
    ``dataset_size`` N is given. c moves the logged values, never the
    gradients (see ``minibatch_weighted_terms``). Defaults alpha = gamma = 1, beta = 6 (Chen et al. keep
    alpha = gamma = 1 and tune beta). alpha = beta = gamma = 1 is the ELBO with
    a one-sample KL. Needs a Gaussian encoder and a factorised prior with the
    same marginal in every dimension (the built-in normal and logistic).

    Logged: ``rec``, ``mi``, ``tc``, ``dim_kl``, ``kl`` (their sum), ``loss``.
    Params: alpha, beta, gamma, dataset_size.
    """

    class Params(Params):
        alpha: NonNegativeFloat = Field(1.0, description="weight of the index-code MI I_q(x; z)")
        beta: NonNegativeFloat = Field(6.0, description="weight of the total correlation")
        gamma: NonNegativeFloat = Field(1.0, description="weight of the dimension-wise KL")
        dataset_size: PositiveInt | None = Field(None, description="None: q(z) estimated as the "
                                                 "batch mixture (log M); N: Chen et al.'s log(N M) constant")

    def loss(self, model, x: Tensor) -> Loss:
        p = self.params
        codes, rec = self.codes_and_rec(model, x)
        terms = minibatch_weighted_terms(codes, p.dataset_size)
        mi, tc, dim_kl = terms.mutual_info, terms.total_correlation, terms.dimwise_kl
        total = -rec.mean() + p.alpha * mi + p.beta * tc + p.gamma * dim_kl
        return _finish(total, rec, codes, mi=mi, tc=tc, dim_kl=dim_kl, kl=mi + tc + dim_kl)


@hookimpl
def register_objectives(register):
    register("btcvae", BetaTCVAE)
