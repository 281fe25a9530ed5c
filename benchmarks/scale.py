"""Scale-out with the ray executor: throughput on 1 and 2 workers, and Ray's
per-run overhead against the local executor.

The workload is a 16-run grid of the quick suite's MLP (3 x 256 hidden,
Bernoulli pixels) on MNIST: ELBO-VAE and VIMAE-n, z in {2, 4, 8, 16}, seeds
{0, 1}, each trained for ``--steps`` Adam steps of batch 100 on one torch
thread, then one cheap metric (log-det of the code covariance). The same grid
runs three times, each in a fresh store:

1. ``local``: the local executor, one run after another in this process, with
   one torch thread per run (patched here so it matches a Ray worker with
   num_cpus=1);
2. ``ray x1``: a local Ray cluster with 1 CPU (one worker, runs in turn);
3. ``ray x2``: a local Ray cluster with 2 CPUs (two workers side by side).

Each Ray cluster is started before its timer starts (its start-up time is
reported on its own line); the workers' process start and MNIST load, the
object-store transfers of each run folder (shared_filesystem=false, the
multi-machine path) and the driver's recording are all inside the timer.

Reported: the makespan of each configuration; the throughput ratio
(ray x1 makespan / ray x2 makespan; target >= 1.8 with two free cores); and
Ray's per-run overhead, (ray x1 makespan - local makespan) / 16 runs, in
seconds and as a share of the local per-run time, plus what that many seconds
would be on a 30-second run. As the load of other processes can change between
configurations, also the time spent outside the runs (makespan / 16 minus the
mean wall time of a run inside its worker), for local and ray x1. The 1-minute load average is printed before and
after each configuration: on a shared machine, other processes' load makes
two workers slower than two free cores would be.

    python benchmarks/scale.py                  # 1000 steps per run (~12 s): ~10 min on 2 cores
    python benchmarks/scale.py --steps 100      # a quicker look
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

SUITE = """
name: scale
citation: "benchmarks/scale.py"
dataset: {{name: mnist}}
methods:
  elbo:
    label: ELBO-VAE
    objective: {{name: elbo}}
    encoder: &mlp {{name: mlp, hidden: [256, 256, 256]}}
    decoder: *mlp
  vimae_n:
    label: VIMAE-n
    objective: {{name: vimae, lambda: 10}}
    encoder: *mlp
    decoder: *mlp
grid: {{latent_dim: [2, 4, 8, 16], seed: [0, 1]}}
training: {{steps: {steps}, batch_size: 100, device: cpu, log_every: 100}}
metrics:
  logdet: {{name: logdet_cov}}
leaderboards:
  - id: t
    title: Log-det of the code covariance
    columns:
      - {{header: log-det/dim, metric: logdet, value: logdet_cov, better: closer_to_zero}}
"""


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def run_grid(suite: Path, root: Path, name: str, executor: dict) -> tuple[float, list[float]]:
    """Makespan of the grid and each run's own wall time (inside its worker)."""
    from benchbed.plan.loaded import load
    from benchbed.run.progress import PlainProgress
    from benchbed.run.store import Store
    from benchbed.run.driver import run_suite

    store = root / name
    started = time.perf_counter()
    report = run_suite(load(suite), store, executor, PlainProgress(io.StringIO()), root / f"{name}-boards")
    makespan = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"{name}: runs failed: {report.failed}")
    index = Store(store)
    walls = [row[3] for row in index.rows() if row[1] == "finished"]
    index.close()
    assert len(walls) == report.total == report.finished, (len(walls), report)
    return makespan, walls


def start_ray(cpus: int) -> float:
    import ray
    started = time.perf_counter()
    ray.init(num_cpus=cpus, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per run")
    args = parser.parse_args()

    import ray

    from benchbed_plugins.executors.local import LocalExecutor

    # One torch thread per run for the local baseline too, as a Ray worker with num_cpus=1 gets.
    LocalExecutor.threads_per_task = lambda self: 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster

    with tempfile.TemporaryDirectory(prefix="benchbed-scale-") as tmp:
        root = Path(tmp)
        suite = root / "scale.yaml"
        suite.write_text(SUITE.format(steps=args.steps).lstrip())
        print(f"16 runs x {args.steps} steps (batch 100, 1 torch thread per run); "
              f"{os.cpu_count()} cores; ray {ray.__version__}")
        results: dict[str, tuple[float, list[float]]] = {}
        for name, cpus in (("local", None), ("ray x1", 1), ("ray x2", 2)):
            before = load()
            if cpus is None:
                results[name] = run_grid(suite, root, "local", {"name": "local", "jobs": 1})
            else:
                startup = start_ray(cpus)
                try:
                    results[name] = run_grid(suite, root, f"ray{cpus}",
                                             {"name": "ray", "shared_filesystem": False})
                finally:
                    ray.shutdown()
                print(f"  (ray cluster with {cpus} CPU(s) started in {startup:.1f}s, not counted)")
            makespan, walls = results[name]
            print(f"{name:7s} makespan {makespan:7.1f}s  per run {makespan / len(walls):5.2f}s  "
                  f"(mean run wall inside its worker {sum(walls) / len(walls):5.2f}s)  "
                  f"load avg {before} -> {load()}")

        local, one, two = (results[k][0] for k in ("local", "ray x1", "ray x2"))
        n = len(results["local"][1])
        per_run = local / n
        overhead = (one - local) / n
        print(f"throughput ratio (ray x2 / ray x1): {one / two:.2f}  (target >= 1.8)")
        print(f"ray per-run overhead vs local: {overhead:+.2f}s per run = {100 * overhead / per_run:+.1f}% "
              f"of a {per_run:.1f}s run; on a 30s run that is {100 * overhead / 30:+.1f}%  (target <= 10%)")
        # Less sensitive to other processes' load: the time each configuration spends
        # outside the runs themselves (scheduling, worker start, shipping, recording).
        outside = {k: makespan / len(walls) - sum(walls) / len(walls)
                   for k, (makespan, walls) in results.items() if k != "ray x2"}
        extra = outside["ray x1"] - outside["local"]
        print(f"time outside the runs, per run: local {outside['local']:.2f}s, ray x1 {outside['ray x1']:.2f}s; "
              f"ray's share {extra:+.2f}s = {100 * extra / 30:+.1f}% of a 30s run")


if __name__ == "__main__":
    main()
