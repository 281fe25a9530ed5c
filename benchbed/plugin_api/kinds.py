"""The kinds of component, in one table (hook, base class, description) from which the
hook specs, the bases' registry and every listing derive. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # as suites and listings spell it: "divergence"
    hook: str  # the plugin hook that registers components of this kind
    base: str  # the base class in benchbed.components
    does: str  # one line: what a component of this kind does
    examples: str  # the built-in ones, for the hook's documentation


TABLE: tuple[Kind, ...] = (
    Kind("objective", "register_objectives", "Objective",
         "the autoencoder's training loss: a minibatch in, the loss to minimise out",
         "ELBO, beta-VAE, InfoVAE, VIMAE"),
    Kind("divergence", "register_divergences", "Divergence",
         "D(q(z) || p(z)), estimated on a minibatch of codes",
         "MMD, Stein, adversarial Jensen-Shannon, KL"),
    Kind("prior", "register_priors", "Prior",
         "p(z) with sample, log_prob and score",
         "the normal and the logistic prior"),
    Kind("architecture", "register_architectures", "Architecture",
         "builds encoder and/or decoder networks for a data shape and a latent size",
         "MLP, DCGAN-style convolutions, conditional PixelCNN"),
    Kind("corruption", "register_corruptions", "Corruption",
         "x -> corrupted x, seeded, applied at evaluation",
         "Gaussian noise, Bernoulli masking"),
    Kind("metric", "register_metrics", "Metric",
         "evaluates a trained run: numbers and figures",
         "NLL, SVM accuracy, FID, figures"),
    Kind("dataset", "register_datasets", "Dataset",
         "loads each split as tensors, with its shape and labels",
         "MNIST, Fashion-MNIST, CelebA, 8x8 digits"),
    Kind("executor", "register_executors", "Executor",
         "runs a suite's run tasks somewhere and yields their outcomes",
         "local processes, a Ray cluster"),
)

KINDS: tuple[str, ...] = tuple(k.name for k in TABLE)
HOOKS: tuple[str, ...] = tuple(k.hook for k in TABLE)
