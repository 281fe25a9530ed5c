"""Time the full-data "mmd" metric (blockwise MMD^2 of N codes against N prior samples).

The codes are N draws from a slightly shifted and squeezed Gaussian (a
plausible q(z)), fed through a deterministic encoder so the timing is the
metric as a run sees it: encoding, N prior samples, and the three tiled
kernel sums (about 2 N^2 kernel entries, the symmetric ones computed once).

    python benchmarks/full_mmd.py                 # N = 10k
    python benchmarks/full_mmd.py --sizes 10000,70000 --block-sizes 1024,4096
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchbed.plugin_api.components import Decoder, Encoder, Split
from benchbed.distributions import DeterministicPosterior
from benchbed.run.model import Autoencoder, EvalContext
from benchbed_plugins.metrics.latent_metrics import FullDataMMD
from benchbed_plugins.priors import NormalPrior


class CodesAsInput(Encoder):
    """The 'image' is the code itself: encoding costs nothing measurable."""

    def __init__(self, dim: int):
        super().__init__()
        self.latent_dim = dim
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return DeterministicPosterior(x.reshape(x.shape[0], -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000", help="comma-separated N (70000 takes minutes on a CPU)")
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--block-sizes", default="auto", help="comma-separated tile sizes to compare "
                    "('auto': the metric's default for the device)")
    ap.add_argument("--kernel", default="rbf", choices=["rbf", "imq"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"dim={args.dim} kernel={args.kernel} device={device} threads={torch.get_num_threads()}")

    for n in (int(s) for s in args.sizes.split(",")):
        g = torch.Generator().manual_seed(n)
        codes = 0.9 * torch.randn(n, args.dim, generator=g) + 0.1
        split = Split(x=codes.view(n, 1, 1, args.dim), y=torch.zeros(n, dtype=torch.int64))
        model = Autoencoder(CodesAsInput(args.dim), Decoder(), NormalPrior(), args.dim).to(device)
        with tempfile.TemporaryDirectory() as tmp:
            ctx = EvalContext(model=model, dataset=None, train=split, test=split, device=device,
                              seed=0, run_dir=Path(tmp), cache_dir=Path(tmp))
            for block in (None if b == "auto" else int(b) for b in args.block_sizes.split(",")):
                metric = FullDataMMD(kernel=args.kernel, block_size=block, batch_size=10_000)
                start, cpu_start = time.perf_counter(), time.process_time()
                values = metric.evaluate(ctx).values
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                # CPU time next to wall time: on a shared machine the gap is other people's load
                print(f"N={n:>6d} block={block or 'auto':>5}: wall {elapsed:8.2f} s  cpu {cpu:8.2f} s   "
                      f"mmd = {values['mmd']:.6f}", flush=True)


if __name__ == "__main__":
    main()
