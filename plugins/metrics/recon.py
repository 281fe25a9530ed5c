"""Reconstruction error of the test set, from clean and corrupted inputs (VIMAE Fig. 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed_plugins.metrics.encoding import (CLEAN, check_conditions, condition_batches, evaluating,
                                       input_batches, subset_indices, validate_condition_list)

_SUBSET_SALT = 0x52454331
_BCE_CLAMP = 1e-6  # keeps log r finite for decoders whose mean touches 0 or 1


class Reconstruction(Metric):
    """Reconstruction error between the clean test image and the reconstruction of its (corrupted) input.

    For each condition (``clean`` or a corruption the suite defines, applied
    with a generator seeded from the run seed and the condition name) and
    r_i = model.reconstruct(corrupt(x_i)) (the decoder's mean at the
    posterior mean):

        mse/<c> = 1/(N P) sum_i ||r_i - x_i||^2            (per pixel)
        bce/<c> = -1/N sum_i sum_p [x log r + (1 - x) log(1 - r)]   (nats per image)

    The target is always the CLEAN x: VIMAE asks whether the model recovers
    the digit, not the noise. bce needs x in [0, 1] and is nan (undefined)
    otherwise; r is clamped to [1e-6, 1 - 1e-6] inside the logs.

    Values: ``mse/<c>`` and ``bce/<c>`` for every condition.

    Params: conditions, test_subset, batch_size.
    """

    class Params(Params):
        conditions: list[str] = Field([CLEAN], description="'clean' and/or the suite's "
                                      "corruption names")
        test_subset: int | None = Field(None, gt=0, description="test points (drawn from the "
                                        "run seed); None: the full test set")
        batch_size: int = Field(500, gt=0, description="inputs per batch")

        @field_validator("conditions")
        @classmethod
        def _distinct_conditions(cls, v):
            return validate_condition_list(v)

    def produces(self) -> list[str]:
        # bce is defined only for data in [0, 1], which a suite cannot know: both are declared,
        # and bce is nan outside it (a declared value left out fails the whole metric, mse too).
        return [f"{kind}/{c}" for c in self.params.conditions for kind in ("mse", "bce")]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        check_conditions(p.conditions, ctx.corruptions)
        x = ctx.test.x[subset_indices(len(ctx.test), p.test_subset, ctx.generator(_SUBSET_SALT))]
        with_bce = bool(x.min() >= 0 and x.max() <= 1)
        values: dict[str, float] = {}
        with evaluating(ctx.model) as model:
            for condition in p.conditions:
                sq_err = torch.zeros((), dtype=torch.float64)
                bce = torch.zeros((), dtype=torch.float64)
                pairs = zip(input_batches(x, p.batch_size, ctx.device),
                            condition_batches(ctx, condition, x, p.batch_size))
                for clean, seen in pairs:
                    r = model.reconstruct(seen)
                    sq_err += (r - clean).pow(2).sum().double().cpu()
                    if with_bce:
                        r = r.clamp(_BCE_CLAMP, 1 - _BCE_CLAMP)
                        bce += F.binary_cross_entropy(r, clean, reduction="sum").double().cpu()
                values[f"mse/{condition}"] = float(sq_err / x.numel())
                values[f"bce/{condition}"] = float(bce / x.shape[0]) if with_bce else math.nan
        return MetricResult(values=values)


@hookimpl
def register_metrics(register):
    register("recon", Reconstruction)
