"""Shared helpers for the evaluation metrics (no hooks, so not a plugin).

Batched encoding of a split, the deterministic choice of test subsets and
label sets, corrupted test inputs for the robustness conditions, and the
check that an encoder has a density q(z|x) when a metric needs one.

Conventions used by every metric that builds on these helpers:

* inputs stay on the CPU until a batch is encoded; corruptions run on the
  CPU with the run's CPU generator, so a condition sees the same corrupted
  inputs on every device and in every metric (the generator salt is derived
  from the condition's name);
* random draws on the evaluation device use a device generator seeded from
  the run's CPU generator (:func:`device_generator`), so results depend on
  the run seed only.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from benchbed.plugin_api.components import Corruption
from benchbed.distributions import DeterministicPosterior, Posterior
from benchbed.errors import BenchbedError, did_you_mean

CLEAN = "clean"


# ------------------------------------------------------------ evaluation mode


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` and ``torch.no_grad()`` for the block; the previous
    train/eval mode is restored afterwards (the trainer probes mid-training)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def device_generator(generator: torch.Generator, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded by one draw from ``generator`` (CPU).

    torch refuses a CPU generator for CUDA sampling; this keeps device draws
    a function of the run seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


# ------------------------------------------------------------------ subsets


def subset_indices(n: int, size: int | None, generator: torch.Generator) -> Tensor:
    """Sorted indices of ``size`` rows out of ``n`` (all rows when ``size`` is
    None or not smaller than ``n``), drawn without replacement."""
    if size is None or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size].sort().values


def balanced_label_indices(y: Tensor, labels: int, generator: torch.Generator) -> Tensor:
    """Indices of ``labels`` rows of ``y``, as many per class as possible.

    Each class present in ``y`` gets ``labels // n_classes`` rows; the
    remainder goes one each to the lowest class ids. Raises when a class has
    too few rows."""
    classes = torch.unique(y)
    per_class = labels // len(classes)
    extra = labels % len(classes)
    if per_class == 0:
        raise BenchbedError(f"{labels} labels cannot cover {len(classes)} classes; "
                            f"use at least one label per class")
    chosen = []
    for rank, c in enumerate(classes.tolist()):
        rows = torch.nonzero(y == c, as_tuple=True)[0]
        want = per_class + (1 if rank < extra else 0)
        if len(rows) < want:
            raise BenchbedError(f"class {c} has only {len(rows)} training examples; "
                                f"{want} labelled examples were asked for")
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:want]])
    return torch.cat(chosen).sort().values


# --------------------------------------------------------------- conditions


def condition_salt(condition: str) -> int:
    """A stable per-condition generator salt (``hash`` is randomised per process)."""
    return zlib.crc32(condition.encode("utf-8"))


def check_conditions(conditions: Sequence[str], corruptions: dict[str, Corruption]) -> None:
    """Every condition is "clean" or a corruption the suite defines."""
    for name in conditions:
        if name != CLEAN and name not in corruptions:
            known = [CLEAN, *corruptions]
            raise BenchbedError(f"unknown condition {name!r}{did_you_mean(name, known)}; "
                                f"the suite defines: {', '.join(known)}")


def validate_condition_list(conditions: list[str]) -> list[str]:
    """Pydantic helper: non-empty, no duplicates."""
    if not conditions:
        raise ValueError("give at least one condition (e.g. ['clean'])")
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"conditions repeat a name: {conditions}")
    return conditions


# ------------------------------------------------------------------ batching


def iter_batches(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size]


def input_batches(x: Tensor, batch_size: int, device: torch.device | str,
                  corruption: Corruption | None = None,
                  generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Batches of ``x`` on ``device``, corrupted on the CPU first when a
    corruption is given (one generator consumed batch after batch)."""
    if corruption is not None and generator is None:
        raise ValueError("a corruption needs a generator")
    for batch in iter_batches(x, batch_size):
        if corruption is not None:
            batch = corruption(batch.cpu().clone(), generator)  # a copy: the clean data stays clean
        yield batch.to(device)


def condition_batches(ctx, condition: str, x: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Input batches of ``x`` under ``condition`` ("clean": unchanged)."""
    if condition == CLEAN:
        return input_batches(x, batch_size, ctx.device)
    return input_batches(x, batch_size, ctx.device, ctx.corruptions[condition],
                         ctx.generator(condition_salt(condition)))


# ------------------------------------------------------------------ encoding


@dataclass
class Encoded:
    """Codes of a whole split, on the CPU: the posterior means and, when
    asked for, one sample z ~ q(z|x) per row (the mean itself for a
    deterministic encoder)."""

    mean: Tensor
    sample: Tensor | None = None


def encode_batches(model, batches: Iterable[Tensor],
                   generator: torch.Generator | None = None, sample: bool = False) -> Encoded:
    """Push batches through the encoder; keep means (and samples if ``sample``).

    Samples come from ``posterior.rsample(generator)``, so any posterior
    family works; ``generator`` must live on the batches' device."""
    means, samples = [], []
    for batch in batches:
        posterior = model.encoder(batch)
        means.append(posterior.mean.detach().cpu())
        if sample:
            samples.append(posterior.rsample(generator).detach().cpu())
    return Encoded(torch.cat(means), torch.cat(samples) if sample else None)


def encode(model, x: Tensor, device: torch.device | str, batch_size: int = 500,
           generator: torch.Generator | None = None, sample: bool = False) -> Encoded:
    """Encode clean ``x`` in batches."""
    return encode_batches(model, input_batches(x, batch_size, device), generator, sample)


def require_density(posterior: Posterior, metric: str) -> None:
    """Raise a clear error when ``posterior`` has no density q(z|x)."""
    if isinstance(posterior, DeterministicPosterior):
        raise BenchbedError(
            f"metric {metric!r} needs the density q(z|x), but the encoder is deterministic "
            f"(it returns a point mass). Use a Gaussian encoder (posterior: gaussian) or "
            f"drop {metric!r} from this method's metrics.")


def posterior_log_prob(posterior: Posterior, z: Tensor, metric: str) -> Tensor:
    """``posterior.log_prob(z)``, turning a missing density into a BenchbedError."""
    require_density(posterior, metric)
    try:
        return posterior.log_prob(z)
    except (ValueError, NotImplementedError) as exc:
        raise BenchbedError(f"metric {metric!r} needs the density q(z|x): {exc}") from exc
