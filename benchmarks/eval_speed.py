"""Evaluation speed: PixelCNN decoding on receptive windows, and evaluation batch sizes.

Three measurements on the suites' CPU networks, variants alternating within
each round in one process, medians over rounds, CPU time of this process:

* PixelCNN decoding (InfoVAE cpu decoder: 5 layers x 16 channels, z = 5):
  ancestral samples of a batch of codes with each pixel's step run on its
  receptive window (the default) against all rows decoded so far. Both give
  the same samples from the same generator; the script checks it.
* wae_conv 1/8 encoder in eval mode (SVM, MMD, MI, recon codes): test images
  per second at encoder batches of 100, 500 (the metrics' default) and 2000.
* PixelCNN log p(x|z) without gradients (importance-sampled NLL): rows per
  second at decoder chunks of 1000, 2000 and 5000 (nll's max_rows default is
  10,000; larger chunks only add memory traffic).

    python benchmarks/eval_speed.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchbed.plugins import load_registry

SHAPE = (1, 28, 28)


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def decoding(registry, repeats: int, n: int) -> None:
    torch.manual_seed(0)
    dec = registry.create("architecture", {"name": "pixelcnn", "n_layers": 5, "channels": 16}) \
        .build_decoder(SHAPE, 5).eval()
    z = torch.randn(n, 5)
    samples, times = {}, {True: [], False: []}
    for _ in range(repeats):
        for crop in (True, False):
            dec.crop_to_reach = crop

            def draw():
                samples[crop] = dec.sample(z, generator=torch.Generator().manual_seed(0))
            times[crop].append(cpu_seconds(draw))
    same = torch.equal(samples[True], samples[False])
    ratio = statistics.median(f / w for f, w in zip(times[False], times[True]))
    windowed, all_rows = statistics.median(times[True]), statistics.median(times[False])
    print(f"PixelCNN ancestral samples of {n} codes (reach {dec.reach} pixels): "
          f"windowed {windowed:.2f} s, all rows {all_rows:.2f} s; "
          f"all rows / windowed = {ratio:.2f}x; identical samples: {same}")


def throughput(label: str, unit: str, total: int, sizes: list[int], repeats: int, run_chunk) -> None:
    times = {s: [] for s in sizes}
    for size in sizes:  # warm-up
        run_chunk(size)
    for _ in range(repeats):
        for size in sizes:
            times[size].append(cpu_seconds(lambda: [run_chunk(size) for _ in range(total // size)]))
    base = sizes[0]
    cells = ", ".join(f"{s}: {total / statistics.median(times[s]):,.0f} {unit}/s "
                      f"({statistics.median([b / t for b, t in zip(times[base], times[s])]):.2f}x)"
                      for s in sizes)
    print(f"{label}, speed against chunks of {base}: {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codes", type=int, default=32, help="codes decoded per sampling round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    registry = load_registry()
    print(f"{args.threads} thread(s), median of {args.repeats} alternating rounds, CPU time; "
          f"torch {torch.__version__}")
    decoding(registry, args.repeats, args.codes)

    torch.manual_seed(0)
    encoder = registry.create("architecture", {"name": "wae_conv", "width": 0.125}) \
        .build_encoder(SHAPE, 8).eval()
    images = (torch.rand(2000, *SHAPE) > 0.5).float()

    def encode(size):
        with torch.no_grad():
            encoder(images[:size])
    throughput("wae_conv 1/8 encoder (eval)", "images", 4000, [100, 500, 2000], args.repeats, encode)

    decoder = registry.create("architecture", {"name": "pixelcnn", "n_layers": 5, "channels": 16}) \
        .build_decoder(SHAPE, 5).eval()
    rows = (torch.rand(5000, *SHAPE) > 0.5).float()
    codes = torch.randn(5000, 5)

    def log_prob(size):
        with torch.no_grad():
            decoder.log_prob(rows[:size], codes[:size])
    throughput("PixelCNN log p(x|z), no grad", "rows", 10_000, [1000, 2000, 5000], args.repeats, log_prob)


if __name__ == "__main__":
    main()
