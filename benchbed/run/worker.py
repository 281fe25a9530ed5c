"""One run, in a worker: train (or resume), then evaluate the missing metrics.

Everything is written into the run folder; failures become a ``failed``
outcome with a reason, never an exception, so the rest of a suite goes on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from benchbed.plugin_api.components import Dataset, DatasetInfo, Objective, Split
from benchbed.errors import BenchbedError, RunDiverged
from benchbed.run.model import Autoencoder, EvalContext
from benchbed.events import Done, Evaluating, OnEvent, RunEvent, Started, ignore
from benchbed.files import (as_no_space, atomic_torch_save, atomic_write, file_lock, is_no_space,
                            load_error, remove_stale_temps, set_aside)
from benchbed.plugin_api.registry import Registry, get_registry
from benchbed.publish.provenance import git_commit, provenance, utc_minute
from benchbed.run.store import LOCK, metric_hashes, read_object, write_json
from benchbed.suite.protocol import Training
from benchbed.run.tasks import RunTask, TaskOutcome
from benchbed.run.train import CHECKPOINT, train

WEIGHTS = "model.pt"


@dataclass
class BuiltRun:
    model: Autoencoder
    objective: Objective
    dataset: Dataset
    info: DatasetInfo


def resolve_device(spec: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def build_run(config: dict[str, Any], registry: Registry) -> BuiltRun:
    """Networks are initialised from the run seed, so a run is repeatable."""
    method = config["method"]
    latent_dim = int(config["latent_dim"])
    dataset = registry.create("dataset", config["dataset"])
    info = dataset.info()
    torch.manual_seed(int(config["seed"]))
    prior = registry.create("prior", method["prior"])
    encoder = registry.create("architecture", method["encoder"]).build_encoder(info.shape, latent_dim)
    decoder = registry.create("architecture", method["decoder"]).build_decoder(info.shape, latent_dim)
    model = Autoencoder(encoder, decoder, prior, latent_dim)
    objective = registry.create("objective", method["objective"])
    refusal = objective.divergence_refusal(method["divergence"]["name"] if method.get("divergence") else None)
    if refusal is not None:  # plan refuses this first; a hand-made config may not have been planned
        raise ValueError(f"objective {method['objective']['name']!r} {refusal}")
    divergence = (registry.create("divergence", method["divergence"])
                  if method.get("divergence") else None)
    objective.bind(divergence, latent_dim)
    return BuiltRun(model=model, objective=objective, dataset=dataset, info=info)


def configure_torch(threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    # numpy/scipy BLAS too (SVM, FID): parallel runs must not oversubscribe cores.
    from threadpoolctl import threadpool_limits
    threadpool_limits(max(1, threads))
    # Denormals make MLP epochs ~45% slower on this kind of CPU.
    torch.set_flush_denormal(True)


def _log(run_dir: Path, message: str) -> None:
    with contextlib.suppress(OSError):  # a full disk must not turn a message into a second failure
        with open(run_dir / "log.txt", "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def _subset(split: Split, n: int | None) -> Split:
    if n is None or n >= len(split):
        return split
    return Split(split.x[:n], None if split.y is None else split.y[:n])


def _checked_split(split: Split, name: str, info: DatasetInfo, dataset: str) -> Split:
    """A split as the dataset's ``info()`` describes it; a plugin's data that is not (images of another
    shape, values outside its value range, where a Bernoulli decoder would quietly train on nonsense)
    fails the run, naming the dataset."""
    where = f"dataset {dataset!r}, {name} split"
    if tuple(split.x.shape[1:]) != tuple(info.shape):
        raise BenchbedError(f"{where}: images of shape {tuple(split.x.shape[1:])}, but its info() says "
                            f"{tuple(info.shape)}")
    if len(split) and split.x.is_floating_point():
        low, high = split.x.min().item(), split.x.max().item()
        if low < info.value_range[0] or high > info.value_range[1]:
            raise BenchbedError(f"{where}: values from {low:g} to {high:g}, outside the value_range "
                                f"{tuple(info.value_range)} its info() declares")
    return split


def write_curves(path: Path, curves: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(k for row in curves for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(curves)
    atomic_write(path, text.getvalue())


def read_curves(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]


def _train_run(task: RunTask, built: BuiltRun, registry: Registry, run_dir: Path,
               train_split: Split, test_split: Split, device: torch.device,
               on_event: OnEvent) -> None:
    training = Training.model_validate(task.config["training"])
    evaluation = task.config.get("evaluation", {})
    probes = {key: registry.create("metric", evaluation["metrics"][key]) for key in training.track}
    corruption = (registry.create("corruption", evaluation["corruptions"][training.corruption])
                  if training.corruption else None)
    result = train(
        built.model, built.objective, train_split.x, built.dataset.train_view, training,
        int(task.config["seed"]), run_dir, device, on_event=on_event, probes=probes,
        probe_x=test_split.x[:training.probe_size], corruption=corruption)
    atomic_torch_save({"model": built.model.state_dict(), "objective": built.objective.state_dict()},
                      run_dir / WEIGHTS)
    write_curves(run_dir / "curves.csv", result.curves)
    write_json(run_dir / "provenance.json", provenance(device, task.threads))
    write_json(run_dir / "status.json", {"status": "trained", "reason": None, "steps": result.steps,
                                         "train_seconds": result.seconds,
                                         "convergence": result.convergence})
    (run_dir / CHECKPOINT).unlink(missing_ok=True)  # model.pt supersedes it
    _log(run_dir, f"trained {result.steps} steps in {result.seconds:.1f}s"
                  + (f" ({result.convergence['stop']} after {result.convergence['epochs']} epochs)"
                     if result.convergence else ""))


def _evaluate(task: RunTask, built: BuiltRun, registry: Registry, run_dir: Path,
              train_split: Split, test_split: Split, device: torch.device,
              on_event: OnEvent) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    evaluation = task.config.get("evaluation", {})
    corruptions = {k: registry.create("corruption", spec) for k, spec in evaluation.get("corruptions", {}).items()}
    done: dict[str, Any] = read_object(run_dir / "metrics.json")
    built.model.to(device).eval()
    # Metrics see the training data as training did (e.g. one fixed binarisation),
    # drawn once with a seeded generator so every metric sees the same draw.
    view = torch.Generator().manual_seed(int(task.config["seed"]))
    train_view = Split(built.dataset.train_view(train_split.x, view), train_split.y)
    ctx = EvalContext(model=built.model, dataset=built.dataset, train=train_view, test=test_split,
                      device=device, seed=int(task.config["seed"]), run_dir=run_dir,
                      cache_dir=Path(task.cache_dir), corruptions=corruptions,
                      config=task.config, curves=read_curves(run_dir / "curves.csv"))
    values: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    hashes = metric_hashes(evaluation)
    commit = git_commit()  # a metric evaluated after training names the code that evaluated it
    for key, spec in evaluation.get("metrics", {}).items():
        entry = done.get(hashes[key])
        if isinstance(entry, dict) and "error" not in entry and "values" in entry:
            values[key] = entry["values"]
            continue
        on_event(Evaluating(metric=key))
        started = time.perf_counter()
        entry = {"spec": spec, "values": {}, "figures": [], "commit": commit}
        try:
            metric = registry.create("metric", spec)
            with torch.no_grad():
                result = metric.evaluate(ctx)
            entry.update(values=_numbers(result.values, metric.produces()), figures=list(result.figures))
        except Exception as exc:  # one broken metric must not hide the others
            if is_no_space(exc):  # but a full disk stops the run (it resumes later)
                raise
            entry["error"] = errors[key] = _reason(exc, run_dir)
        seconds = time.perf_counter() - started
        done[hashes[key]] = {**entry, "seconds": round(seconds, 3), "finished": utc_minute()}
        write_json(run_dir / "metrics.json", done)
        if key in errors:
            _log(run_dir, f"metric {key} ({spec['name']}) FAILED: {errors[key]}")
        else:
            values[key] = entry["values"]
            _log(run_dir, f"metric {key} ({spec['name']}) in {seconds:.1f}s: {values[key]}")
    return values, errors


def _numbers(values: dict[str, Any], declared: list[str] | None) -> dict[str, float]:
    """A metric's values as floats; one that is not a number, or a declared one missing, fails that
    metric alone."""
    missing = [key for key in declared or [] if key not in values]
    if missing:
        raise BenchbedError(f"the metric declares {', '.join(map(repr, missing))} in produces() but "
                            f"returned {'only ' + ', '.join(map(repr, values)) if values else 'no values'}")
    out = {}
    for key, value in values.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"the metric returned {key!r} = {value!r}, not a number") from None
    return out


def execute(task: RunTask, on_event: "OnEvent | None" = None) -> TaskOutcome:
    """Train (or resume) and evaluate one run, sending ``benchbed.events`` to ``on_event``: what an
    executor calls in a worker for each task. Every failure becomes a ``failed`` outcome, never an
    exception. The run folder is locked meanwhile (``.lock``, an flock freed by the kernel however
    the process ends); a run another process is running is ``skipped``, untouched."""
    run_dir = Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / LOCK, wait=False) as held:
        if not held:
            return TaskOutcome(task.key, "skipped", "another process is running this run")
        return _run_task_locked(task, on_event or ignore)


CHECKPOINT_KEYS = ("model", "objective", "optimiser", "adversaries", "epoch", "batch", "step",
                   "curves", "seconds", "rng")


def _loads(path: Path, use: Callable[[Any], None], then: str) -> bool:
    """Load ``path`` for ``use``; a file that does not load (truncated, not a zip, wrong keys or
    shapes, foreign) is set aside, so the run trains again instead of failing for good."""
    try:
        use(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        set_aside(path, load_error(exc), lambda text: _log(path.parent, f"{text}; {then}"))
        return False
    return True


def _status(run_dir: Path) -> str | None:
    """The run's status; a status.json that does not read is set aside, so the run trains again
    (its training record is in that file) and the log says why."""
    path = run_dir / "status.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict):
            raise ValueError(f"holds a JSON {type(state).__name__}, not an object")
    except (OSError, ValueError) as exc:
        set_aside(path, load_error(exc), lambda text: _log(run_dir, f"{text}; training again"))
        return None
    return state.get("status")


def _load_weights(built: BuiltRun, state: Any) -> None:
    built.model.load_state_dict(state["model"])
    built.objective.load_state_dict(state["objective"])


def _check_checkpoint(state: Any) -> None:
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"not a benchbed checkpoint (no {', '.join(missing)})")


def _reason(exc: BaseException, run_dir: Path) -> str:
    """A failure in words (a plugin's bug also logs its traceback); never torch's advice to load
    a file with weights_only=False."""
    if isinstance(exc, BenchbedError):
        return str(exc)
    _log(run_dir, traceback.format_exc())
    if "Weights only load failed" in str(exc):
        return f"a file {load_error(exc)}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:  # one line for the summary and the page (a newline breaks its list); all of it in log.txt
        # a message that quotes a traceback (scikit-learn's failed fits) ends with the error, named
        quoted = any(line.startswith("Traceback (most recent call last)") for line in lines)
        line = lines[-1] if quoted else f"{type(exc).__name__}: {lines[0]}"
        return f"{line} (the whole message is in the run's log.txt)"
    return f"{type(exc).__name__}: {exc}".strip()


def _run_task_locked(task: RunTask, on_event: OnEvent) -> TaskOutcome:
    started = time.perf_counter()
    configure_torch(task.threads)
    run_dir = Path(task.run_dir)
    remove_stale_temps(run_dir)  # ours alone now (we hold the lock)

    def emit(event: RunEvent) -> None:
        on_event(event.of(task.key, task.label))

    status = _status(run_dir)
    trained = (run_dir / WEIGHTS).exists() and status in ("trained", "finished", "failed")
    try:
        registry = get_registry()
        built = build_run(task.config, registry)
        device = resolve_device(task.config["training"]["device"])
        if device.type == "cuda":
            # The GPU does the work; a couple of CPU threads feed it, and cuDNN
            # picks its fastest kernels for our fixed batch shapes.
            configure_torch(min(task.threads, 2))
            torch.backends.cudnn.benchmark = True
        dataset = task.config["dataset"]["name"]
        train_split = _subset(_checked_split(built.dataset.load("train"), "train", built.info, dataset),
                              task.config["training"].get("train_subset"))
        test_split = _checked_split(built.dataset.load("test"), "test", built.info, dataset)
        if trained and not _loads(run_dir / WEIGHTS, lambda state: _load_weights(built, state),
                                  "training again"):
            trained = False
            built = build_run(task.config, registry)  # fresh weights, not half-loaded ones
        if not trained and (run_dir / CHECKPOINT).exists():
            _loads(run_dir / CHECKPOINT, _check_checkpoint, "training from scratch")
        emit(Started(resume=(run_dir / CHECKPOINT).exists() and not trained))
        if not trained:
            _log(run_dir, f"training {task.label} on {device}")
            _train_run(task, built, registry, run_dir, train_split, test_split, device, emit)
        metrics, metric_errors = _evaluate(task, built, registry, run_dir, train_split, test_split,
                                           device, emit)
        wall = time.perf_counter() - started
        write_json(run_dir / "status.json", {"status": "finished", "reason": None,
                                             **_train_stats(run_dir)})
    except RunDiverged as exc:
        # A checkpoint from a diverging run would only diverge again on retry.
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
        return _failed(task, run_dir, f"diverged: {exc}", started, trained=False)
    except Exception as exc:  # a bug in a plugin must not stop the suite
        if is_no_space(exc):
            return _no_space(task, run_dir, exc, started)
        return _failed(task, run_dir, _reason(exc, run_dir), started, trained=(run_dir / WEIGHTS).exists())
    emit(Done(status="finished"))
    # Trained and evaluated; a failed metric is reported but leaves the run finished.
    reason = "; ".join(f"metric {k} failed: {v}" for k, v in metric_errors.items()) or None
    return TaskOutcome(task.key, "finished", reason, metrics, wall)


def _train_stats(run_dir: Path) -> dict[str, Any]:
    previous = read_object(run_dir / "status.json")
    return {k: previous[k] for k in ("steps", "train_seconds", "convergence") if k in previous}


def _failed(task: RunTask, run_dir: Path, reason: str, started: float, trained: bool) -> TaskOutcome:
    _log(run_dir, f"FAILED: {reason}")
    try:
        write_json(run_dir / "status.json", {"status": "failed", "reason": reason, "trained": trained,
                                             **_train_stats(run_dir)})
    except Exception as exc:  # the failure handler must not fail in turn
        if is_no_space(exc):
            return _no_space(task, run_dir, exc, started)
        reason = f"{reason} (and its status could not be written: {load_error(exc)})"
    return TaskOutcome(task.key, "failed", reason, {}, time.perf_counter() - started)


def _no_space(task: RunTask, run_dir: Path, exc: BaseException, started: float) -> TaskOutcome:
    """A full disk is the machine's failure, not the run's: nothing is marked
    failed, so the same command resumes the run once there is space."""
    reason = str(as_no_space(exc, run_dir))
    _log(run_dir, f"stopped: {reason}")
    return TaskOutcome(task.key, "failed", reason, {}, time.perf_counter() - started, stopped=True)
