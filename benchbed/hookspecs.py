"""The hooks a benchbed plugin implements.

Every hook receives a ``register(name, cls)`` callback. Call it once per
component the plugin provides; ``cls`` subclasses the matching base in
``benchbed.components``. The built-in plugins (``benchbed_plugins``) use
exactly these hooks. A plugin implements only the hooks it needs::

    from benchbed import hookimpl

    @hookimpl
    def register_divergences(register):
        register("energy", EnergyDistance)
"""

import pluggy

hookspec = pluggy.HookspecMarker("benchbed")
hookimpl = pluggy.HookimplMarker("benchbed")


@hookspec
def register_objectives(register):
    """Register training objectives (``benchbed.components.Objective``).

    An objective turns a minibatch into the loss the autoencoder minimises,
    e.g. ELBO, beta-VAE, InfoVAE, VIMAE."""


@hookspec
def register_divergences(register):
    """Register divergences between q(z) and p(z) (``Divergence``).

    They are estimated on a minibatch of codes, e.g. MMD, Stein, adversarial
    Jensen-Shannon, KL."""


@hookspec
def register_priors(register):
    """Register priors p(z) (``Prior``) with sample, log_prob and score."""


@hookspec
def register_architectures(register):
    """Register encoder/decoder builders (``Architecture``), e.g. MLP,
    DCGAN-style convolutions, conditional PixelCNN."""


@hookspec
def register_corruptions(register):
    """Register input corruptions (``Corruption``) applied at evaluation,
    e.g. Gaussian noise or Bernoulli masking."""


@hookspec
def register_metrics(register):
    """Register metrics (``Metric``) that evaluate a trained run, e.g. NLL,
    SVM accuracy, FID, figures."""


@hookspec
def register_datasets(register):
    """Register datasets (``Dataset``) that load each split as tensors."""


@hookspec
def register_executors(register):
    """Register executors (``Executor``) that run a suite's tasks, e.g. in
    local processes or on a cluster."""


HOOK_FOR_KIND = {
    "objective": "register_objectives",
    "divergence": "register_divergences",
    "prior": "register_priors",
    "architecture": "register_architectures",
    "corruption": "register_corruptions",
    "metric": "register_metrics",
    "dataset": "register_datasets",
    "executor": "register_executors",
}
