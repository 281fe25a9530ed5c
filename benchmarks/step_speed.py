"""Training-step speed of the CPU profiles' networks, and what makes it faster.

One step = ELBO loss on a batch of 100 MNIST-sized binary images, backward and
an Adam step (lr 1e-3, betas 0.5/0.999), as ``benchbed.run.train`` takes it. The
networks are the suites' CPU choices:

    conv_bern    VIMAE Table 1 cpu profile: wae_conv width 0.125, z = 8, Bernoulli pixels
    conv_gauss   the same with Gaussian pixels (sigma 0.1)
    conv_paper   VIMAE's paper width (wae_conv width 1.0, z = 8, Bernoulli); few steps
    pixelcnn     InfoVAE cpu profile: wae_conv width 0.125 encoder, PixelCNN 5 x 16 decoder, z = 5
    mlp          VIMAE Fig. 1: MLP 3 x 256, z = 2

Every variant is a change to the step against ``base`` (the code as it stands,
with the trainer's torch settings: flush denormals on; conv feature maps
channels-last, ``benchbed_plugins.architectures.layout``; fused Adam, ``benchbed.run.train``),
or undoes one of its speed-ups. Variants alternate
within each round in one process, so machine load hits them alike; each round
gives a ratio variant / base, and the table shows the median over rounds (below
1 is faster). Times are CPU seconds of this process (``time.process_time``), so
waiting for a core on a loaded machine does not count; with 2 threads they add
up both threads' time. On a loaded machine set OMP_WAIT_POLICY=PASSIVE with 2
threads: otherwise OpenMP threads spin while they wait for each other and the
CPU time measures the load, not the work (``--wall`` for wall time).

``same`` compares the loss of step 3 (after two Adam updates, from the same
weights, batches and noise) with base's: "bitwise" (identical), "reorder" (the
same math with float sums in another order: a relative difference near float
rounding, printed as "rel dloss @3"), or "no" (the variant computes in a lower
precision: at most a declared option, never a default).
torch.compile's first calls are timed apart (wall seconds, as compilation also
runs in worker processes) and turned into the number of steps it takes to pay
off.

    python benchmarks/step_speed.py --configs conv_bern pixelcnn mlp   # 1 thread
    OMP_WAIT_POLICY=PASSIVE python benchmarks/step_speed.py --threads 2 --configs conv_bern
    python benchmarks/step_speed.py --configs conv_bern --variants "compile default"
    python benchmarks/step_speed.py --configs pixelcnn --variants "NCHW (channels_last off)"
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from benchbed.run.model import Autoencoder
from benchbed.plugins import load_registry
from benchbed.suite.protocol import Optimiser
from benchbed.run.train import make_optimiser
from benchbed_plugins.priors import NormalPrior

SHAPE = (1, 28, 28)
BATCH = 100
OPTIMISER = Optimiser(name="adam", lr=1e-3, betas=(0.5, 0.999))  # VIMAE's (WAE's) settings

CONFIGS: dict[str, tuple[dict, dict, int]] = {
    "conv_bern": ({"name": "wae_conv", "width": 0.125}, {"name": "wae_conv", "width": 0.125}, 8),
    "conv_gauss": ({"name": "wae_conv", "width": 0.125},
                   {"name": "wae_conv", "width": 0.125, "likelihood": "gaussian", "sigma": 0.1}, 8),
    "conv_paper": ({"name": "wae_conv", "width": 1.0}, {"name": "wae_conv", "width": 1.0}, 8),
    "pixelcnn": ({"name": "wae_conv", "width": 0.125},
                 {"name": "pixelcnn", "n_layers": 5, "channels": 16}, 5),
    "mlp": ({"name": "mlp", "hidden": [256, 256, 256]}, {"name": "mlp", "hidden": [256, 256, 256]}, 2),
}
# the paper-width net takes seconds per step on one core: fewer steps per round
STEP_SCALE = {"conv_paper": 0.2, "mlp": 5.0}


@dataclass
class Variant:
    """A change to the step: ``setup`` edits the runner before its first step;
    ``flags`` wraps every timed call (global torch settings)."""

    changes_precision: bool = False  # computes in a lower precision: an option, never a default
    setup: Callable[["Runner"], None] = lambda r: None
    flags: Callable[[], object] | None = None
    compiles: bool = False
    applies: Callable[[str], bool] = lambda config: True


@contextmanager
def _flush_denormal(on: bool):
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(True)


@contextmanager
def _mkldnn_precision(value: str):
    before = torch.backends.mkldnn.fp32_precision
    torch.backends.mkldnn.fp32_precision = value
    try:
        yield
    finally:
        torch.backends.mkldnn.fp32_precision = before


@contextmanager
def _matmul_precision(value: str):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@contextmanager
def _layout(channels_last: bool):
    """The conv architectures' feature-map layout (``benchbed_plugins.architectures.layout``)."""
    from benchbed_plugins.architectures import layout
    before = layout.CHANNELS_LAST
    layout.CHANNELS_LAST = channels_last
    try:
        yield
    finally:
        layout.CHANNELS_LAST = before


def _adam(**kwargs) -> Callable[["Runner"], None]:
    def setup(r: "Runner") -> None:
        r.optimiser = torch.optim.Adam(r.model.parameters(), lr=OPTIMISER.lr, betas=OPTIMISER.betas,
                                       **kwargs)
    return setup


def _compile(mode: str) -> Callable[["Runner"], None]:
    """Compile the networks (the encoder's and decoder's forward), not the objective,
    whose logging turns tensors into floats (graph breaks)."""
    def setup(r: "Runner") -> None:
        enc, dec = r.model.encoder, r.model.decoder
        enc.body = torch.compile(enc.body, mode=mode)
        if hasattr(dec, "net"):
            dec.net = torch.compile(dec.net, mode=mode)
        else:  # PixelCNN: its logits
            dec.logits = torch.compile(dec.logits, mode=mode)
    return setup


def _pixelcnn_nonzero_rows(r: "Runner") -> None:
    """Convolve with the top c + 1 kernel rows only (the mask zeroes the rest):
    pad c rows above and none below. The same function with fewer taps."""
    import torch.nn.functional as F
    from benchbed_plugins.architectures.pixelcnn import MaskedConv2d

    def forward(self, x):
        c = self.kernel_size[0] // 2
        weight = (self.weight * self.mask)[:, :, : c + 1]
        return F.conv2d(F.pad(x, (0, 0, c, 0)), weight, self.bias, padding=(0, c))
    for module in r.model.modules():
        if isinstance(module, MaskedConv2d):
            module.forward = forward.__get__(module)


VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    "denormals kept (flush off)": Variant(flags=lambda: _flush_denormal(False)),
    "NCHW (channels_last off)": Variant(flags=lambda: _layout(False), applies=lambda c: c != "mlp"),
    "adam for-loop (unfused)": Variant(setup=_adam(foreach=False, fused=False)),
    "adam foreach (unfused)": Variant(setup=_adam(foreach=True, fused=False)),
    "pixelcnn nonzero kernel rows": Variant(setup=_pixelcnn_nonzero_rows,
                                     applies=lambda c: c == "pixelcnn"),
    "compile default": Variant(setup=_compile("default"), compiles=True),
    "compile max-autotune-no-cudagraphs": Variant(setup=_compile("max-autotune-no-cudagraphs"),
                                                  compiles=True),
    "mkldnn bf16 (not fp32)": Variant(changes_precision=True, flags=lambda: _mkldnn_precision("bf16")),
    "float32 matmul precision medium": Variant(changes_precision=True,
                                               flags=lambda: _matmul_precision("medium")),
    "mkldnn off": Variant(flags=lambda: torch.backends.mkldnn.flags(enabled=False)),
}
# compilation takes minutes on 2 loaded cores: asked for by name only
DEFAULT_VARIANTS = [name for name, v in VARIANTS.items() if not v.compiles]


@contextmanager
def variant_flags(variant: Variant):
    if variant.flags is None:
        yield
    else:
        with variant.flags():
            yield


@dataclass
class Runner:
    config: str
    variant: Variant
    seed: int = 0

    def __post_init__(self) -> None:
        registry = load_registry()
        enc_spec, dec_spec, z = CONFIGS[self.config]
        torch.manual_seed(self.seed)
        encoder = registry.create("architecture", enc_spec).build_encoder(SHAPE, z)
        decoder = registry.create("architecture", dec_spec).build_decoder(SHAPE, z)
        self.model = Autoencoder(encoder, decoder, NormalPrior(), z).train()
        self.objective = registry.create("objective", {"name": "elbo"})
        self.objective.bind(None, z)
        self.optimiser = make_optimiser(OPTIMISER, list(self.model.parameters()))  # as the trainer
        self.variant.setup(self)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        loss = self.objective.loss(self.model, x)
        self.optimiser.zero_grad(set_to_none=True)
        loss.total.backward()
        self.optimiser.step()
        return loss.total.detach()

    def flags(self):
        return variant_flags(self.variant)

    def run(self, batches: list[torch.Tensor], clock: Callable[[], float]) -> float:
        with self.flags():
            start = clock()
            for x in batches:
                self.step(x)
            return clock() - start


def measure(config: str, names: list[str], repeats: int, steps: int, clock) -> dict:
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(BATCH, *SHAPE, generator=g) > 0.5).float() for _ in range(steps)]
    runners: dict[str, Runner] = {}
    out: dict[str, dict] = {}
    for name in names:
        variant = VARIANTS[name]
        if not variant.applies(config):
            continue
        with variant_flags(variant):  # some flags act when the networks are built
            runner = Runner(config, variant)
        # Warm-up (allocator, Adam state, compilation): 3 steps from the same
        # weights, batches and noise as base, so the loss of step 3 (after two
        # Adam updates) shows any float-level difference.
        torch.manual_seed(2)
        with runner.flags():
            wall = time.perf_counter()
            runner.step(batches[0])
            first_wall = time.perf_counter() - wall
            for x in batches[1:2]:
                runner.step(x)
            third = float(runner.step(batches[2 % len(batches)]))
        out[name] = {"third": third, "first_wall": first_wall}
        runners[name] = runner
    ratios = {name: [] for name in runners}
    ms = {name: [] for name in runners}
    for _ in range(repeats):
        base = runners["base"].run(batches, clock)
        for name, runner in runners.items():
            t = base if name == "base" else runner.run(batches, clock)
            ratios[name].append(t / base)
            ms[name].append(1000 * t / steps)
    base_third = out["base"]["third"]
    for name in runners:
        row = out[name]
        row["ratio"] = statistics.median(ratios[name])
        row["ms"] = statistics.median(ms[name])
        row["dloss"] = abs(row["third"] - base_third) / abs(base_third)
        row["same"] = ("no" if VARIANTS[name].changes_precision
                       else "bitwise" if row["dloss"] == 0 else "reorder")
        if VARIANTS[name].compiles:
            compile_s = row["first_wall"] - row["ms"] / 1000
            saved_ms = out["base"]["ms"] - row["ms"] if "ms" in out["base"] else 0.0
            row["compile_s"] = compile_s
            row["payoff_steps"] = compile_s * 1000 / saved_ms if saved_ms > 0 else float("inf")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                        help="default: all but the torch.compile ones")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds (median taken)")
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round "
                        "(scaled per config: conv_paper x0.2, mlp x5)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as benchbed.run.worker.configure_torch
    names = ["base"] + [n for n in args.variants if n != "base"]
    clock = time.perf_counter if args.wall else time.process_time
    print(f"step time / base: median of {args.repeats} alternating rounds, batch {BATCH}, "
          f"{args.threads} thread(s), {'wall' if args.wall else 'CPU'} time; torch {torch.__version__}")
    for config in args.configs:
        steps = max(2, round(args.steps * STEP_SCALE.get(config, 1.0)))
        result = measure(config, names, args.repeats, steps, clock)
        print(f"\n{config} ({steps} steps per round)")
        print(f"  {'variant':<36} {'ratio':>7} {'ms/step':>9}  {'same':<8} {'rel dloss @3':>12}  compile")
        for name, row in result.items():
            extra = ""
            if "compile_s" in row:
                extra = f"{row['compile_s']:.1f} s, pays off after {row['payoff_steps']:.0f} steps"
            print(f"  {name:<36} {row['ratio']:>6.3f}x {row['ms']:>9.1f}  {row['same']:<8} "
                  f"{row['dloss']:>12.2g}  {extra}")


if __name__ == "__main__":
    main()
