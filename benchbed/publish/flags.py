"""What a run or a value can and cannot say, so a leaderboard never rewards it.

Four kinds of flag, all read from the records alone:

* under-trained: the run stopped on its epoch budget, not on convergence
  (records without a ``convergence`` block come from fixed-epoch runs and
  count as stopped on the budget, "no convergence check");
* collapsed: the run's codes carry no information about x, or its samples
  are all of one class; such a run is flagged in every table that shows it
  and never bolded;
* bounded: a cell's value sits at an estimator's ceiling (the MI estimate
  near log M) or below its noise floor (an unbiased MMD^2 below 0 or not
  above 0 at 95% by its estimator's standard error); it is shown as such and never bolded;
* undefined: a run's value is a convention, not a measurement (the FactorVAE
  score's 0.0 when no latent is active); it is shown as such, never bolded,
  averaged or compared.

The rules are keyed by the metric plugin's registered name (the record's
``evaluation.metrics.<key>.name``), so any suite key for the metric works.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

# A code with under 0.1 nats of information about x tells apart fewer than
# e^0.1 = 1.1 "kinds" of input: for a posterior that is the prior, the MI
# estimator's own scatter is about 1e-4 nats (quick's collapsed MMD-VAE: -7e-6).
COLLAPSED_MI_NATS = 0.1
# The minibatch MI estimate never exceeds log M; within 0.05 nats of it
# (about 5% of the M points confusable with one other) it measures M, not the
# codes, and cannot rank methods.
MI_CEILING_NATS = 0.05
# A sampler that draws one class only scores l_ce = KL(c || one-hot + eps),
# 5.99 nats for uniform c over 10 classes; on MNIST's own frequencies
# (0.090-0.112) 5.88-6.08. 0.2 nats covers that and stays clear of a
# sampler with two classes (5.11 at half and half, 5.24 at 9:1).
ONE_CLASS_TOLERANCE_NATS = 0.2
# Every labelled data set benchbed ships (MNIST, binarised MNIST,
# Fashion-MNIST, digits) has 10 classes; the class_ce record does not say.
# A mean MMD^2 under 1.645 standard errors is not above 0 by a one-sided test at 95%, the level
# of the findings' tests.
MMD_FLOOR_Z = 1.645
CLASSES = 10
CLASS_CE_EPS = 1e-4  # class_ce's default eps


def metric_params(record: dict[str, Any], key: str) -> dict[str, Any]:
    return record.get("evaluation", {}).get("metrics", {}).get(key) or {}


def metric_name(record: dict[str, Any], key: str) -> str:
    """The plugin name behind the suite's metric ``key`` in this record."""
    return metric_params(record, key).get("name", key)


# ------------------------------------------------------------ under-trained


def under_trained(record: dict[str, Any]) -> bool:
    """True unless the run's record says it converged."""
    convergence = record.get("convergence")
    return not (isinstance(convergence, dict) and convergence.get("converged") is True)


# ------------------------------------------------------------------ collapse


def one_class_ce(classes: int = CLASSES, eps: float = CLASS_CE_EPS) -> float:
    """class_ce's value for a sampler whose samples are all of one class, with
    uniform class frequencies c = 1/K: -sum_k c_k (log c_hat'_k - log c_k),
    c_hat' = (one-hot + eps) / (1 + K eps)."""
    c = 1.0 / classes
    hit = (1.0 + eps) / (1.0 + classes * eps)
    miss = eps / (1.0 + classes * eps)
    return -(c * math.log(hit / c) + (classes - 1) * c * math.log(miss / c))


def _mi_collapse(values: dict[str, float], params: dict[str, Any]) -> str | None:
    mi = values.get("mutual_info")
    if mi is not None and math.isfinite(mi) and mi < COLLAPSED_MI_NATS:
        return f"I(x; z) = {mi:.2f} nats < {COLLAPSED_MI_NATS}: the codes carry no information about x"
    return None


def _class_ce_collapse(values: dict[str, float], params: dict[str, Any]) -> str | None:
    ce = values.get("class_ce")
    reference = one_class_ce(CLASSES, params.get("eps", CLASS_CE_EPS))
    if ce is not None and math.isfinite(ce) and ce >= reference - ONE_CLASS_TOLERANCE_NATS:
        return (f"class CE = {ce:.2f} nats, a one-class sampler's {reference:.2f} "
                f"(±{ONE_CLASS_TOLERANCE_NATS}): every sample is of one class")
    return None


COLLAPSE_RULES: dict[str, Callable[[dict[str, float], dict[str, Any]], str | None]] = {
    "mutual_info": _mi_collapse,
    "class_ce": _class_ce_collapse,
}


# Metrics on which a collapsed code (q(z|x) = p(z)) scores best: the fit of q(z) to p(z),
# and the total correlation of codes that carry nothing.
COLLAPSE_WINS = ("mmd", "logdet_cov", "gaussian_tc")


def collapse_checked(record: dict[str, Any]) -> bool:
    """Whether the run measured anything a collapse rule reads (MI, class CE)."""
    return any(metric_name(record, key) in COLLAPSE_RULES for key in record.get("metrics", {}))


def collapsed(record: dict[str, Any]) -> list[str]:
    """Why the run is collapsed (empty: it is not), from any metric with a rule."""
    if record.get("status") != "finished":
        return []
    rules = {key: COLLAPSE_RULES.get(metric_name(record, key)) for key in sorted(record.get("metrics", {}))}
    return [why for key, rule in rules.items()
            if rule and (why := rule(record["metrics"][key], metric_params(record, key)))]


# ---------------------------------------------------------- ceiling / floor


@dataclass(frozen=True)
class Bound:
    """A value the estimator cannot resolve. ``kind`` says which side is hidden:
    'ceiling' (the truth may be higher) or 'floor' (the truth may be lower
    than the noise lets us see, down to the metric's minimum)."""

    kind: str
    text: str  # shown in the cell instead of the bare mean
    why: str  # the legend line


def _mi_ceiling(values: list[float], raw: list[dict[str, float]], params: dict[str, Any]) -> Bound | None:
    ceilings = [r["log_m"] for r in raw if isinstance(r.get("log_m"), (int, float))]
    if not values or not ceilings:
        return None
    log_m = min(ceilings)
    if statistics.fmean(values) >= log_m - MI_CEILING_NATS:
        return Bound("ceiling", "≥ log M",
                     f"≥ log M: the MI estimate is within {MI_CEILING_NATS} nats of its ceiling "
                     f"log M = {log_m:.2f} (M test points); the codes may hold more, and such "
                     "values do not rank")
    return None


def _mmd_floor(values: list[float], raw: list[dict[str, float]], params: dict[str, Any]) -> Bound | None:
    if not values or params.get("estimator", "unbiased") != "unbiased":
        return None  # the biased (V-statistic) MMD^2 is never negative
    mean = statistics.fmean(values)
    # The estimator's own noise, not the seeds' spread: runs that differ widely but each sit far above
    # their noise are no floor, and three runs that agree by chance within it are one.
    ses = [se for r in raw if isinstance(se := r.get("mmd_se"), (int, float)) and math.isfinite(se)]
    se = math.sqrt(sum(s * s for s in ses)) / len(ses) if ses else 0.0
    if mean < 0:
        text = "< 0: floor"
    elif mean < MMD_FLOOR_Z * se:
        text = "≈ 0: floor"
    else:
        return None
    return Bound("floor", text,
                 f"{text}: the unbiased MMD² estimate is below 0 or not above 0 at 95% (under "
                 f"{MMD_FLOOR_Z} of its estimator's standard errors, √(Σ se²)/n over the runs): "
                 "q(z) and p(z) are indistinguishable at this sample size, and such values do not rank")


BOUND_RULES: dict[tuple[str, str], Callable[[list[float], list[dict[str, float]], dict[str, Any]],
                                            Bound | None]] = {
    ("mutual_info", "mutual_info"): _mi_ceiling,
    ("mmd", "mmd"): _mmd_floor,
}


def bound(records: list[dict[str, Any]], metric_key: str, value: str,
          values: list[float]) -> Bound | None:
    """The bound the mean of ``values`` (raw, unscaled, one per record in
    ``records``) sits at, if any."""
    if not records:
        return None
    rule = BOUND_RULES.get((metric_name(records[0], metric_key), value))
    if rule is None:
        return None
    raw = [r["metrics"].get(metric_key, {}) for r in records]
    return rule(values, raw, metric_params(records[0], metric_key))


def hides_best(b: Bound, better: str) -> bool:
    """Whether a bounded value could be the column's best: then no cell is bold."""
    return better == "higher" if b.kind == "ceiling" else better in ("lower", "closer_to_zero")


# ----------------------------------------------------------------- undefined


def _no_active_dims(values: dict[str, Any]) -> Bound | None:
    if values.get("active_dims") != 0:
        return None
    return Bound("undefined", "no active dims",
                 "no active dims: no latent's spread reached the FactorVAE score's prune_threshold, "
                 "so the score is undefined (disentanglement_lib records 0.0, below chance); such "
                 "runs are neither averaged, bolded nor compared")


UNDEFINED_RULES: dict[tuple[str, str], Callable[[dict[str, Any]], Bound | None]] = {
    ("factorvae_score", "eval_accuracy"): _no_active_dims,
    ("factorvae_score", "train_accuracy"): _no_active_dims,
}


def undefined(record: dict[str, Any], metric_key: str, value: str) -> Bound | None:
    """Why the record's ``value`` of ``metric_key`` is no number to compare (None: it is one)."""
    rule = UNDEFINED_RULES.get((metric_name(record, metric_key), value))
    return rule(record.get("metrics", {}).get(metric_key) or {}) if rule else None
