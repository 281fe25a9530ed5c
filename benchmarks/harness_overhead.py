"""Harness overhead: benchbed's training loop against a bare PyTorch loop.

Trains the quick suite's MMD-VAE (MLP 3x256, z = 8, batch 100) on MNIST,
alternating in one process: one epoch through ``benchbed.run.train.train`` (with
its objective plugin, checkpoints, logging and NaN checks) and one epoch of a
hand-written loop with the same networks, data, batch order and the same
MMD-VAE loss written out by hand. Prints the median ratio harness/bare as the
last line (target <= 1.05). Times are CPU seconds of this process, which
other load on a shared machine disturbs far less than wall time.

    python benchmarks/harness_overhead.py [--repeats 5] [--examples 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchbed.run.worker import build_run
from benchbed.plan.runs import plan
from benchbed.plugin_api.registry import get_registry
from benchbed.run.worker import configure_torch
from benchbed.suite.protocol import Training
from benchbed.run.train import epoch_generator, train
from benchbed.suite.load import load_suite

SUITE = Path(__file__).resolve().parent.parent / "suites" / "quick.yaml"


def bare_epoch(model, x: torch.Tensor, optimiser, epoch: int, seed: int, batch: int, lam: float) -> None:
    """MMD-VAE by hand: Bernoulli reconstruction + lambda * biased RBF MMD
    with bandwidth dim^2 (the InfoVAE authors' kernel)."""
    order = torch.randperm(x.shape[0], generator=epoch_generator(seed, epoch))
    for b in range(x.shape[0] // batch):
        xb = x[order[b * batch:(b + 1) * batch]]
        posterior = model.encoder(xb)
        z = posterior.mean + torch.exp(0.5 * posterior.logvar) * torch.randn_like(posterior.mean)
        rec = model.decoder.log_prob(xb, z).mean()
        prior = torch.randn_like(z)
        d = z.shape[1]

        def k(a, c):
            d2 = (a * a).sum(1, keepdim=True) + (c * c).sum(1) - 2 * a @ c.T
            return torch.exp(-d2.clamp_min(0) / (d * d))

        mmd = k(z, z).mean() + k(prior, prior).mean() - 2 * k(z, prior).mean()
        loss = -rec + lam * mmd
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_torch(args.threads)

    registry = get_registry()
    suite, _ = load_suite(SUITE)
    run = next(r for r in plan(suite, registry) if r.method == "mmd_vae" and r.latent_dim == 8)
    built = build_run(run.config, registry)
    x = built.dataset.load("train").x[:args.examples]
    training = Training.model_validate({**run.config["training"], "epochs": 1, "track": []})
    lam = built.objective.params.lambda_

    harness_model = built
    bare_model = build_run(run.config, registry).model
    harness_times, bare_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in range(args.repeats + 1):  # the first pair warms up
            run_dir = Path(tmp) / f"r{epoch}"
            run_dir.mkdir()
            # Alternate which goes first, so neither always meets a cold cache.
            order = ("harness", "bare") if epoch % 2 else ("bare", "harness")
            seconds = {}
            for which in order:
                start = time.process_time()
                if which == "harness":
                    train(harness_model.model, harness_model.objective, x, built.dataset.train_view,
                          training, seed=epoch, run_dir=run_dir, device=torch.device("cpu"))
                else:
                    # Each timed call is a one-epoch run, so both arms build their
                    # optimiser inside the timer (train() does, once per run).
                    bare_optimiser = torch.optim.Adam(bare_model.parameters(), lr=training.optimiser.lr,
                                                      betas=training.optimiser.betas)
                    bare_epoch(bare_model, x, bare_optimiser, 0, epoch, training.batch_size, lam)
                seconds[which] = time.process_time() - start
            harness, bare = seconds["harness"], seconds["bare"]
            if epoch:
                harness_times.append(harness)
                bare_times.append(bare)
                print(f"epoch pair {epoch}: harness {harness:.2f}s, bare {bare:.2f}s, "
                      f"ratio {harness / bare:.3f}")
    ratios = [h / b for h, b in zip(harness_times, bare_times)]
    print(f"median CPU time: harness {statistics.median(harness_times):.2f}s, "
          f"bare {statistics.median(bare_times):.2f}s over {len(x)} examples")
    print(f"harness/bare = {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
