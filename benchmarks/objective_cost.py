"""Per-step cost of every built-in objective relative to the plain ELBO.

One training step = objective.loss on a batch of 100 MNIST-sized images,
backward, an Adam step of the autoencoder, and, for objectives with an
adversary (AAE), re-encoding the batch without gradient and taking the
adversary's steps, as the trainer does. The model is the default "mlp"
architecture (VIMAE's 3 x 256 hidden layers, Gaussian encoder, Bernoulli
pixels) at each latent size. The cost of a step does not depend on the pixel
values, so the batch is random.

Variants alternate within every round (ELBO first, then each objective for
the same number of steps) in one process, so machine load hits them alike;
each round gives a ratio variant / ELBO, and the table reports the median
ratio over rounds. Times are the process's CPU time (``time.process_time``),
which ignores time spent waiting for a core on a loaded machine; with more
than one thread they add up the threads' time.

    python benchmarks/objective_cost.py                       # z in 2 8 32, 7 rounds
    python benchmarks/objective_cost.py --repeats 3 --steps 10 --latent-dims 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchbed.run.model import Autoencoder
from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.architectures.mlp import MLP
from benchbed_plugins.priors import NormalPrior

SHAPE = (1, 28, 28)
WAE_SCALES = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]

# label -> (objective spec, divergence spec or "default")
VARIANTS: dict[str, tuple[dict, dict | str | None]] = {
    "elbo": ({"name": "elbo"}, "default"),
    "beta_vae": ({"name": "beta_vae"}, "default"),
    "ae": ({"name": "ae"}, "default"),
    "vimae (mmd imq, 1 scale)": ({"name": "vimae"}, "default"),
    "vimae (mmd imq, 7 scales)": ({"name": "vimae"}, {"name": "mmd", "kernel": "imq",
                                                      "scales": WAE_SCALES}),
    "vimae (mmd rbf, median)": ({"name": "vimae"}, {"name": "mmd", "kernel": "rbf",
                                                    "bandwidth": "median"}),
    "mmd_vae (rbf dim^2, biased)": ({"name": "mmd_vae"}, "default"),
    "infovae (a=0.5: kl + mmd)": ({"name": "infovae", "alpha": 0.5}, "default"),
    "stein_vae": ({"name": "stein_vae"}, "default"),
    "aae (256-256 disc.)": ({"name": "aae"}, "default"),
    "aae (512-512 disc.)": ({"name": "aae"}, {"name": "adversarial", "hidden": [512, 512]}),
}


class Runner:
    """One variant's model, objective and optimisers, ready to take steps."""

    def __init__(self, registry, objective_spec, divergence_spec, latent_dim: int, seed: int = 0):
        torch.manual_seed(seed)
        arch = MLP()
        self.model = Autoencoder(arch.build_encoder(SHAPE, latent_dim),
                                 arch.build_decoder(SHAPE, latent_dim), NormalPrior(), latent_dim)
        self.objective = registry.create("objective", objective_spec)
        if divergence_spec == "default":
            divergence_spec = self.objective.default_divergence
        divergence = registry.create("divergence", divergence_spec) if divergence_spec else None
        self.objective.bind(divergence, latent_dim)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.adversaries = [(a, torch.optim.Adam(a.module.parameters(), lr=a.lr, betas=a.betas))
                            for a in self.objective.adversaries()]

    def step(self, x: torch.Tensor) -> None:
        loss = self.objective.loss(self.model, x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        self.optimizer.step()
        if self.adversaries:
            with torch.no_grad():
                codes = self.model.codes(x)
            for adversary, optimizer in self.adversaries:
                for _ in range(adversary.steps_per_batch):
                    optimizer.zero_grad(set_to_none=True)
                    adversary.loss(codes).backward()
                    optimizer.step()

    def time_steps(self, batches: list[torch.Tensor]) -> float:
        # CPU time of this process, not wall time: on a shared machine the time
        # spent descheduled by other jobs' load would swamp differences of 10%
        start = time.process_time()
        for x in batches:
            self.step(x)
        return time.process_time() - start


def measure(latent_dim: int, repeats: int, steps: int, batch: int) -> dict[str, tuple[float, float]]:
    """label -> (median ratio of its time to ELBO's, median ms per step)."""
    registry = load_registry()
    runners = {label: Runner(registry, obj, div, latent_dim) for label, (obj, div) in VARIANTS.items()}
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(batch, *SHAPE, generator=g) for _ in range(steps)]
    for runner in runners.values():  # warm-up: allocator, lazy imports, Adam state
        runner.time_steps(batches[:3])
    ratios: dict[str, list[float]] = {label: [] for label in runners}
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(repeats):
        base = runners["elbo"].time_steps(batches)
        for label, runner in runners.items():
            t = base if label == "elbo" else runner.time_steps(batches)
            ratios[label].append(t / base)
            times[label].append(1000 * t / steps)
    return {label: (statistics.median(ratios[label]), statistics.median(times[label])) for label in runners}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds (median taken)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per variant per round")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {z: measure(z, args.repeats, args.steps, args.batch) for z in args.latent_dims}
    width = max(len(label) for label in VARIANTS)
    header = f"{'objective':<{width}} " + " ".join(f"{'z=' + str(z):>14}" for z in args.latent_dims)
    print(f"per-step cost / ELBO (median of {args.repeats} alternating rounds of {args.steps} steps, "
          f"batch {args.batch}, {args.threads} thread(s)); CPU ms/step in brackets")
    print(header)
    print("-" * len(header))
    for label in VARIANTS:
        cells = " ".join(f"{results[z][label][0]:>6.2f}x ({results[z][label][1]:>4.1f})"
                         for z in args.latent_dims)
        print(f"{label:<{width}} {cells}")


if __name__ == "__main__":
    main()
