"""Time the "nll" metric against a bare vectorised PyTorch loop on the same MLP.

Both estimate the importance-sampled NLL (K samples from q(z|x) per point)
of the same untrained "mlp" encoder/decoder (Bernoulli pixels, 28x28,
latent 5, InfoVAE's log-likelihood setting), with the same batch and chunk
sizes. They alternate in one process so machine load hits both alike. The
last line printed is the ratio of the best times plugin / bare (target <= 1.15).

    python benchmarks/nll.py                     # 1000 points, K = 5000
    python benchmarks/nll.py --points 200 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchbed.plugin_api.components import Split
from benchbed.run.model import Autoencoder, EvalContext
from benchbed_plugins.architectures.mlp import MLP
from benchbed_plugins.metrics.nll import ImportanceSampledNLL
from benchbed_plugins.priors import NormalPrior

LOG_2PI = math.log(2 * math.pi)
SHAPE = (1, 28, 28)


@torch.no_grad()
def bare_nll(model: Autoencoder, x: torch.Tensor, k: int, batch: int, max_rows: int,
             generator: torch.Generator) -> float:
    """The same estimator written out by hand: Gaussian q, N(0, I) prior,
    Bernoulli pixels log p(x|z) = -sum BCEWithLogits(l, x), x broadcast over the K axis."""
    per_point = []
    for xb in x.split(batch):
        post = model.encoder(xb)
        mu, logvar = post.mean, post.logvar
        std = torch.exp(0.5 * logvar)
        flat_x = xb.flatten(1)
        chunk = max(1, min(k, max_rows // xb.shape[0]))
        lse = []
        for start in range(0, k, chunk):
            kc = min(chunk, k - start)
            eps = torch.randn((kc, *mu.shape), generator=generator)
            z = mu + std * eps
            log_q = -0.5 * (LOG_2PI + logvar + eps ** 2).sum(-1)
            log_pz = -0.5 * (LOG_2PI + z ** 2).sum(-1)
            logits = model.decoder.net(z.reshape(-1, z.shape[-1])).view(kc, xb.shape[0], -1)
            # fused BCE against a broadcast view of x: no copy of x per sample
            log_px = -F.binary_cross_entropy_with_logits(
                logits, flat_x.expand_as(logits), reduction="none").sum(-1)
            lse.append(torch.logsumexp(log_px + log_pz - log_q, dim=0))
        per_point.append(torch.logsumexp(torch.stack(lse), dim=0) - math.log(k))
    return float(-torch.cat(per_point).mean())


def build(points: int, latent: int, seed: int):
    torch.manual_seed(seed)
    arch = MLP()
    model = Autoencoder(arch.build_encoder(SHAPE, latent), arch.build_decoder(SHAPE, latent),
                        NormalPrior(), latent).eval()
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(points, *SHAPE, generator=g) < 0.13).float()  # MNIST-like ink density
    return model, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--latent", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each, alternating")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, x = build(args.points, args.latent, seed=0)
    metric = ImportanceSampledNLL(k=args.k, batch_size=args.batch_size, max_rows=args.max_rows)
    with tempfile.TemporaryDirectory() as tmp:
        split = Split(x=x, y=torch.zeros(len(x), dtype=torch.int64))
        ctx = EvalContext(model=model, dataset=None, train=split, test=split,
                          device=torch.device("cpu"), seed=0, run_dir=Path(tmp), cache_dir=Path(tmp))

        def plugin() -> float:
            return metric.evaluate(ctx).values["nll"]

        def bare() -> float:
            return bare_nll(model, x, args.k, args.batch_size, args.max_rows, torch.Generator().manual_seed(1))

        print(f"points={args.points} K={args.k} latent={args.latent} batch={args.batch_size} "
              f"max_rows={args.max_rows} threads={torch.get_num_threads()}")
        times = {"plugin": [], "bare": []}
        for rep in range(args.repeats):
            for name, fn in (("plugin", plugin), ("bare", bare)):
                start = time.perf_counter()
                value = fn()
                times[name].append(time.perf_counter() - start)
                print(f"  run {rep}: {name:6s} {times[name][-1]:8.2f} s   nll = {value:.3f}", flush=True)
    print(f"median: plugin {statistics.median(times['plugin']):.2f} s, "
          f"bare {statistics.median(times['bare']):.2f} s")
    # best-of: on a shared machine other load only ever adds time
    plugin_s, bare_s = min(times["plugin"]), min(times["bare"])
    print(f"best:   plugin {plugin_s:.2f} s, bare {bare_s:.2f} s")
    print(f"ratio plugin/bare (best of {args.repeats}): {plugin_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
