"""t-tests over seeds: is a difference beyond the seed spread?

Welch's t-test compares two groups of runs without assuming equal
variances (Welch 1947):

    t  = (mean_a - mean_b - shift) / se,   se^2 = s_a^2 / n_a + s_b^2 / n_b
    df = se^4 / ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1))

with s^2 the sample variances (n - 1 in the denominator). A one-sample
t-test compares one group with a number: t = (mean - mu) / (s / sqrt(n)),
df = n - 1. ``shift`` moves the null hypothesis, which is how margins
(non-inferiority and equivalence tests) enter. p-values are Student t tail
probabilities from scipy.special.stdtr.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy.special import stdtr

ALPHA = 0.05  # one-sided level of every test


@dataclass(frozen=True)
class TStatistic:
    """t and its degrees of freedom for the difference ``estimate - shift``."""

    estimate: float  # mean_a - mean_b, or mean - mu
    se: float
    df: float
    shift: float = 0.0

    def at(self, shift: float) -> "TStatistic":
        return TStatistic(self.estimate, self.se, self.df, shift)

    @property
    def t(self) -> float:
        diff = self.estimate - self.shift
        if self.se > 0:
            return diff / self.se
        # No spread on either side: the difference is exact.
        return math.copysign(math.inf, diff) if diff else 0.0

    def p_greater(self) -> float:
        """P(T >= t) under the null: the one-sided p for 'difference > shift'."""
        if math.isinf(self.t) or self.se == 0:
            return 0.0 if self.t > 0 else 1.0
        return float(stdtr(self.df, -self.t))

    def p_less(self) -> float:
        """P(T <= t) under the null: the one-sided p for 'difference < shift'."""
        if math.isinf(self.t) or self.se == 0:
            return 0.0 if self.t < 0 else 1.0
        return float(stdtr(self.df, self.t))


def welch(a: list[float], b: list[float]) -> TStatistic:
    """Welch's t for mean(a) - mean(b); each side needs at least 2 values."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs at least 2 values on each side")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se2 = va + vb
    denominator = va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)
    df = se2 ** 2 / denominator if denominator > 0 else math.nan
    return TStatistic(statistics.fmean(a) - statistics.fmean(b), math.sqrt(se2), df)


def one_sample(a: list[float], mu: float) -> TStatistic:
    """One-sample t for mean(a) - mu; needs at least 2 values."""
    if len(a) < 2:
        raise ValueError("a one-sample t-test needs at least 2 values")
    se = statistics.stdev(a) / math.sqrt(len(a))
    return TStatistic(statistics.fmean(a) - mu, se, float(len(a) - 1))


def fmt_p(p: float) -> str:
    """'p = 0.012' or 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_t(stat: TStatistic) -> str:
    t = stat.t
    t_text = ("+∞" if t > 0 else "−∞") if math.isinf(t) else f"{t:.2f}"
    df_text = "—" if math.isnan(stat.df) else f"{stat.df:.1f}"
    return f"t = {t_text}, df = {df_text}"
