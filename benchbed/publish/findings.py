"""Checking a paper's qualitative claims against the records, beyond the seed spread.

Each comparison is a t-test over the runs' seeds at the 5% level: Welch's t-test, one-sided in the
claimed direction, for ``a > b`` and ``a >= b`` (the finding's ``tolerance`` as a non-inferiority
margin); two one-sided tests (TOST) within the tolerance for ``a ~ b``; a one-sample t-test against
a number. Welch (1947), with s^2 the sample variances:

    t  = (mean_a - mean_b - shift) / se,   se^2 = s_a^2 / n_a + s_b^2 / n_b
    df = se^4 / ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1))

and one-sample t = (mean - mu) / (s / sqrt(n)), df = n - 1; ``shift`` moves the null hypothesis, which
is how margins enter. How parts make a verdict: render_findings' introduction, which the page prints.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from scipy.special import stdtr

from benchbed.publish import flags
from benchbed.suite.protocol import Finding, Suite, matches

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
        return TStatistic(-self.estimate, self.se, self.df, -self.shift).p_greater()


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


TERM = r"([A-Za-z_][\w.-]*(?:@z=\d+)?|[-+]?\d+(?:\.\d+)?)"
COMPARISON = re.compile(rf"^\s*{TERM}\s*(<=|>=|<|>|~)\s*{TERM}\s*$")


class BadComparison(ValueError):
    pass


class Ambiguous(ValueError):
    pass


def parse(comparison: str) -> tuple[str, str, str]:
    match = COMPARISON.match(comparison)
    if not match:
        raise BadComparison(f"cannot read {comparison!r}: write TERM OP TERM, e.g. 'vimae_n >= vae' "
                            "or 'stein@z=40 < stein@z=2' or 'mmd_vae ~ 0'")
    left, op, right = match.group(1), match.group(2), match.group(3)
    if left == right:
        raise BadComparison(f"{comparison!r} compares {left!r} with itself: it tests nothing")
    if term_methods(left) is None and term_methods(right) is None:
        raise BadComparison(f"{comparison!r} compares two numbers: it tests no run")
    return left, op, right


def term_methods(term: str) -> str | None:
    try:
        float(term)
        return None
    except ValueError:
        return term.split("@", 1)[0]


@dataclass
class Term:
    """One side of a comparison: a number, or the runs of one method."""

    text: str
    constant: float | None = None
    values: list[float] = field(default_factory=list)  # times the finding's scale
    records: list[dict[str, Any]] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    at_ceiling: bool = False
    undefined: list[tuple[dict[str, Any], flags.Bound]] = field(default_factory=list)  # no number

    def show(self, digits: int, scale: float = 1.0) -> str:
        """As the page shows it: values (and numbers) times ``scale``, the tables' scale."""
        if self.constant is not None:
            return self.text if scale == 1 else f"{self.constant * scale:g}"
        why = self.undefined[0][1].text if self.undefined else ""
        if not self.values:
            return f"{self.text} = {why} (n={len(self.undefined)})"
        left_out = f", {len(self.undefined)} {why} left out" if self.undefined else ""
        mean = statistics.fmean(self.values) * scale
        return f"{self.text} = {mean:.{digits}f} (n={len(self.values)}{left_out})"


def _term(term: str, finding: Finding, records: list[dict[str, Any]]) -> Term | None:
    try:
        return Term(term, constant=float(term))
    except ValueError:
        pass
    method, _, dim = term.partition("@z=")
    out = Term(term)
    settings: set[tuple[int, str]] = set()
    where = {k: v for k, v in finding.where.items() if not (dim and k == "latent_dim")}
    for r in records:
        if (r["method"] != method or r["status"] != "finished" or (dim and r["latent_dim"] != int(dim))
                or not matches(r, where)):
            continue
        value = r["metrics"].get(finding.metric, {}).get(finding.value)
        if (undefined := flags.undefined(r, finding.metric, finding.value)) is not None:
            out.undefined.append((r, undefined))
        elif value is not None and math.isfinite(value):
            out.values.append(value * finding.scale)
            out.raw.append(value)
            out.records.append(r)
        else:
            continue
        settings.add((r["latent_dim"], json.dumps(r["grid"], sort_keys=True)))
    if len(settings) > 1:
        raise Ambiguous(f"{term} pools runs of {len(settings)} different latent sizes or grid values; "
                        "pin one with `where` or `@z=`")
    if not out.values and not out.undefined:
        return None
    b = flags.bound(out.records, finding.metric, finding.value, out.raw)
    out.at_ceiling = b is not None and b.kind == "ceiling"
    return out


@dataclass
class Part:
    outcome: str  # "holds", "fails", "unsure" or "n=1"
    text: str


def _statistic(a: Term, b: Term) -> tuple[TStatistic, str]:
    """t for mean(a) - mean(b), and its test: Welch's, or one-sample against a number."""
    if a.constant is not None and b.constant is not None:
        return TStatistic(a.constant - b.constant, 0.0, math.nan), "exact"
    if b.constant is not None:
        return one_sample(a.values, b.constant), "one-sample"
    if a.constant is not None:
        stat = one_sample(b.values, a.constant)
        return TStatistic(-stat.estimate, stat.se, stat.df), "one-sample"
    return welch(a.values, b.values), "Welch"


def _test(a: Term, op: str, b: Term, margin: float, scale: float = 1.0) -> tuple[str, str]:
    """(outcome, the test's numbers) for 'a op b'; d = mean(a) - mean(b); margins shown times ``scale``."""
    stat, kind = _statistic(a, b)
    if op == "~":  # TOST: equivalent when both d > -margin and d < margin are shown
        p_claim = max(stat.at(-margin).p_greater(), stat.at(margin).p_less())
        p_opposite = min(stat.at(margin).p_greater(), stat.at(-margin).p_less())
        numbers = (f"{kind} TOST, margin ±{margin * scale:g}: {fmt_t(stat.at(0.0))}, "
                   f"{fmt_p(p_claim)} (equivalent; apart: {fmt_p(p_opposite)})")
    else:
        shifted = stat.at(-margin if op == ">=" else margin if op == "<=" else 0.0)
        p_claim, p_opposite = shifted.p_greater(), shifted.p_less()
        if op in ("<", "<="):
            p_claim, p_opposite = p_opposite, p_claim
        shown_margin = f", margin {margin * scale:g}" if op in (">=", "<=") and margin else ""
        numbers = (f"{kind} {fmt_t(shifted)}{shown_margin}, one-sided {fmt_p(p_claim)} "
                   f"(opposite: {fmt_p(p_opposite)})")
    return "holds" if p_claim < ALPHA else "fails" if p_opposite < ALPHA else "unsure", numbers


def _part(a: Term, op: str, b: Term, finding: Finding, k: float, d: int) -> Part:
    shown = f"{a.show(d, k)} {op} {b.show(d, k)}" + (f" (±{finding.tolerance * k:g})" if op == "~" else "")
    empty = [t for t in (a, b) if t.constant is None and not t.values]
    if empty:
        why = empty[0].undefined[0][1].text
        return Part("undefined", f"{shown}: not compared: {', '.join(t.text for t in empty)}: {why}, "
                                 "so the score is undefined, not a number")
    small = [t for t in (a, b) if t.constant is None and len(t.values) < 2]
    if small:
        return Part("n=1", f"{shown}: untested (n=1)")
    outcome, numbers = _test(a, op, b, finding.tolerance, k)
    # A value at the estimator's ceiling may truly be higher: it cannot show
    # that it is the lower (or an equal) side.
    capped = [t.text for t in ((a,) if op in ("<", "<=") else (b,) if op in (">", ">=") else (a, b))
              if t.at_ceiling]
    if capped and outcome == "holds":
        return Part("unsure", f"{shown}: {numbers}: not shown, {', '.join(capped)} at the "
                              "estimator's ceiling (the truth may be higher)")
    word = {"holds": "holds", "fails": "refuted", "unsure": "within the spread"}[outcome]
    return Part(outcome, f"{shown}: {numbers}: {word}")


def shown_as(finding: Finding, suite: Suite) -> tuple[float, int]:
    """(factor, digits) that show a finding's values on the scale of a table column of the same
    metric and value (e.g. 0.220 as 22.0 %), unless the finding sets its own ``scale``; a finding's
    own ``digits`` keep their precision (3 digits of a fraction: 1 of a percentage)."""
    column = next((c for t in suite.leaderboards for c in t.columns
                   if (c.metric, c.value) == (finding.metric, finding.value)), None)
    if column is None or "scale" in finding.model_fields_set or column.scale == finding.scale:
        return 1.0, finding.digits
    k = column.scale / finding.scale
    if "digits" not in finding.model_fields_set:
        return k, column.digits
    return k, max(0, finding.digits - round(math.log10(k))) if k > 0 else finding.digits


def verdict(finding: Finding, records: list[dict[str, Any]],
            shown_scale: tuple[float, int] | None = None) -> tuple[str, list[str]]:
    """The verdict and its parts' lines; ``shown_scale``: (factor, digits) the lines show values with."""
    k, d = shown_scale or (1.0, finding.digits)
    parts: list[Part] = []
    trained: list[bool] = []  # per part: every run it reads converged
    compared: list[str] = []  # per part: its comparison as written
    used: dict[int, dict[str, Any]] = {}
    missing: list[str] = []  # parts with no finished runs on a side
    for comparison in finding.holds:
        left, op, right = parse(comparison)
        if op == "~" and finding.tolerance <= 0:
            return "not checked", [f"{comparison}: '~' needs a tolerance > 0, the margin within which "
                                   "the two count as equal"]
        try:
            a, b = _term(left, finding, records), _term(right, finding, records)
        except Ambiguous as exc:
            return "not checked", [str(exc)]
        if a is None or b is None:
            reported = sorted({k for r in records for k in r["metrics"].get(finding.metric, {})})
            if reported and finding.value not in reported:
                return "not checked", [f"metric {finding.metric!r} reports no value {finding.value!r} "
                                       f"(it reports: {', '.join(reported)})"]
            missing.append(f"{comparison}: no finished runs for {left if a is None else right}")
            continue
        runs = a.records + b.records + [u for u, _ in a.undefined + b.undefined]
        used.update((id(r), r) for r in runs)
        parts.append(_part(a, op, b, finding, k, d))
        trained.append(not any(flags.under_trained(r) for r in runs))
        compared.append(comparison)
    outcomes = {p.outcome for p in parts}
    refuted_trained = [c for p, ok, c in zip(parts, trained, compared) if p.outcome == "fails" and ok]
    if missing and not refuted_trained:  # the rest waits for its runs
        return "not run", missing[:1]
    result = ("refuted" if "fails" in outcomes else "reproduced" if outcomes == {"holds"}
              else "inconclusive (n=1)" if "n=1" in outcomes else "inconclusive")
    shown = [p.text for p in parts] + missing
    under = [r for r in used.values() if flags.under_trained(r)]
    # A part refuted on converged runs alone refutes the claim, whatever its other parts' runs
    # (or their absence).
    if under and refuted_trained:
        others = sum(not ok for p, ok in zip(parts, trained) if p.outcome == "fails")
        where = f"{others} refuted part(s) read some of them" if others else "none of them in a refuted part"
        shown.append(f"{len(under)} of {len(used)} runs stopped on their epoch budget ({where}); "
                     f"{' and '.join(refuted_trained)} is refuted on converged runs alone, which refutes "
                     "the claim")
    elif under:
        n1 = " (n=1)" if "n=1" in outcomes else ""
        alone = "" if n1 else f" (the test alone: {result})"
        shown.append(f"{len(under)} of {len(used)} runs stopped on their epoch budget or had no "
                     f"convergence check, so the verdict waits for converged runs{alone}")
        result = f"inconclusive: under-trained{n1}"
    return result, shown


def render_findings(suite: Suite, records: list[dict[str, Any]]) -> list[str]:
    if not suite.findings:
        return []
    lines = ["## Findings", "",
             "Each claim of the papers, tested over the seeds of the runs above at the 5% level: "
             "Welch's t-test, one-sided in the claimed direction, for `a > b` and `a >= b` (with the "
             "tolerance as the margin a ≥ b − tolerance), two one-sided tests (TOST) within the "
             "tolerance for `a ~ b`, and a one-sample t-test against a number. **Reproduced**: every "
             "part holds beyond the seed spread; **refuted**: some part's opposite does; otherwise "
             "**inconclusive**: always with fewer than 2 seeds on a side (n=1), and whenever a run "
             "stopped on its epoch budget instead of converging (under-trained), unless a part "
             "refuted on converged runs alone refutes the claim.", ""]
    for finding in suite.findings:
        scale = shown_as(finding, suite)
        result, shown = verdict(finding, records, scale)
        where = ", ".join(f"{k} = {v}" for k, v in finding.where.items())
        source = f" ({finding.source})" if finding.source else ""
        times = f" × {scale[0]:g}" if scale[0] != 1 else ""
        lines.append(f"- **{finding.claim}**{source} — **{result}**. "
                     f"{finding.metric} {finding.value}{times}{f' at {where}' if where else ''}: "
                     + "; ".join(shown) + ".")
    lines.append("")
    return lines
