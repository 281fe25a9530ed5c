"""Checking a paper's qualitative claims against the records."""

from __future__ import annotations

import json
import math
import operator
import re
import statistics
from typing import Any

from benchbed.selection import matches as _matches
from benchbed.suite import Finding, Suite

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
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
    return match.group(1), match.group(2), match.group(3)


def term_methods(term: str) -> str | None:
    try:
        float(term)
        return None
    except ValueError:
        return term.split("@", 1)[0]


def _term_value(term: str, finding: Finding, records: list[dict[str, Any]]) -> float | None:
    try:
        return float(term)
    except ValueError:
        pass
    method, _, dim = term.partition("@z=")
    values: list[float] = []
    settings: set[tuple[int, str]] = set()
    for r in records:
        if r["method"] != method or r["status"] != "finished":
            continue
        if dim and r["latent_dim"] != int(dim):
            continue
        where = {k: v for k, v in finding.where.items() if not (dim and k == "latent_dim")}
        if not _matches(r, where):
            continue
        value = r["metrics"].get(finding.metric, {}).get(finding.value)
        if value is not None and math.isfinite(value):
            values.append(value * finding.scale)
            settings.add((r["latent_dim"], json.dumps(r["grid"], sort_keys=True)))
    if len(settings) > 1:
        raise Ambiguous(f"{term} pools runs of {len(settings)} different latent sizes or grid values; "
                        "pin one with `where` or `@z=`")
    return statistics.fmean(values) if values else None


def verdict(finding: Finding, records: list[dict[str, Any]]) -> tuple[str, list[str]]:
    shown, outcomes = [], []
    for comparison in finding.holds:
        left, op, right = parse(comparison)
        try:
            a, b = _term_value(left, finding, records), _term_value(right, finding, records)
        except Ambiguous as exc:
            return "not checked", [str(exc)]
        if a is None or b is None:
            missing = left if a is None else right
            reported = sorted({k for r in records for k in r["metrics"].get(finding.metric, {})})
            if reported and finding.value not in reported:
                return "not checked", [f"metric {finding.metric!r} reports no value {finding.value!r} "
                                       f"(it reports: {', '.join(reported)})"]
            return "not run", [f"{comparison}: no finished runs for {missing}"]
        ok = abs(a - b) <= finding.tolerance if op == "~" else OPS[op](a, b)
        outcomes.append(ok)
        d = finding.digits
        shown.append(f"{left} = {a:.{d}f} {op} {right} = {b:.{d}f}"
                     f"{f' (±{finding.tolerance})' if op == '~' else ''}: {'yes' if ok else 'no'}")
    return ("reproduced" if all(outcomes) else "not reproduced"), shown


def render_findings(suite: Suite, records: list[dict[str, Any]]) -> list[str]:
    if not suite.findings:
        return []
    lines = ["## Findings", "",
             "Each claim of the papers, checked on the means over seeds of the runs above.", ""]
    for finding in suite.findings:
        result, shown = verdict(finding, records)
        where = ", ".join(f"{k} = {v}" for k, v in finding.where.items())
        source = f" ({finding.source})" if finding.source else ""
        lines.append(f"- **{finding.claim}**{source} — **{result}**. "
                     f"{finding.metric} {finding.value}{f' at {where}' if where else ''}: "
                     + "; ".join(shown) + ".")
    lines.append("")
    return lines
