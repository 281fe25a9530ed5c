"""Markdown leaderboards built from run records alone.

Each table row is a method (and latent size, when asked), each cell the
mean ± std over seeds with n, the best value per column in bold, and the
paper's value with our difference beside it. Below the tables: figures,
deviations from the paper's protocol, findings, and a provenance footer.
Nothing here reads the clock or the machine, so the output is a function
of the suite and the records.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchbed.findings import render_findings
from benchbed.selection import matches as _matches
from benchbed.suite import Column, Suite, Table

# (method key, latent size or None, the grid values that vary across runs)
Row = tuple[str, int | None, tuple[tuple[str, str], ...]]


def _value(record: dict[str, Any], column: Column) -> float | None:
    value = record["metrics"].get(column.metric, {}).get(column.value)
    if value is None or not math.isfinite(value):
        return None
    return value * column.scale


class Cell:
    def __init__(self, values: list[float], failed: int):
        self.values, self.failed = values, failed

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    def text(self, digits: int, best: bool) -> str:
        if not self.values:
            return "failed" if self.failed else "—"
        mean = f"{self.mean:.{digits}f}"
        if best:
            mean = f"**{mean}**"
        if len(self.values) > 1:
            spread = f" ± {statistics.stdev(self.values):.{digits}f}"
        else:
            spread = ""
        extra = f", {self.failed} failed" if self.failed else ""
        return f"{mean}{spread} (n={len(self.values)}{extra})"


def _best(cells: list[Cell], better: str) -> float | None:
    means = [c.mean for c in cells if c.mean is not None]
    if not means or better == "none" or len(means) < 2:
        return None
    if better == "higher":
        return max(means)
    if better == "lower":
        return min(means)
    return min(means, key=abs)


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _grid_items(record: dict[str, Any], keys: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, json.dumps(record["grid"].get(k))) for k in keys)


def _layout(table: Table, records: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """Whether rows split by latent size, and by which grid keys: never pool
    runs that differ in anything but the seed."""
    matching = [r for r in records if _matches(r, table.where)]
    by_dim = table.by_latent_dim or any(
        len({r["latent_dim"] for r in matching if r["method"] == m}) > 1
        for m in {r["method"] for r in matching})
    keys = sorted({k for r in matching for k in r["grid"] if k not in table.where})
    varying = [k for k in keys if len({json.dumps(r["grid"].get(k)) for r in matching}) > 1]
    return by_dim, varying


def _rows(table: Table, suite: Suite, records: list[dict[str, Any]], by_dim: bool,
          varying: list[str]) -> list[Row]:
    methods = table.methods or list(suite.methods)
    matching = [r for r in records if _matches(r, table.where)]
    rows: list[Row] = []
    for method in methods:
        present = sorted({(r["latent_dim"] if by_dim else None, _grid_items(r, varying))
                          for r in matching if r["method"] == method},
                         key=lambda t: (t[0] or 0, t[1]))
        if present:
            rows += [(method, dim, grid) for dim, grid in present]
        elif by_dim:
            spec = suite.methods.get(method)
            dims = table.where.get("latent_dim") or (spec.latent_dims if spec and spec.latent_dims
                                                     else suite.grid.latent_dim)
            rows += [(method, d, ()) for d in (dims if isinstance(dims, list) else [dims])]
        else:
            rows.append((method, None, ()))
    return rows


def _records_for(row: Row, records: list[dict[str, Any]], where: dict[str, Any],
                 varying: list[str] = ()) -> list[dict[str, Any]]:
    method, dim, grid = row
    return [r for r in records if r["method"] == method and _matches(r, where)
            and (dim is None or r["latent_dim"] == dim)
            and (not grid or _grid_items(r, list(varying)) == grid)]


def _missing_values(table: Table, records: list[dict[str, Any]]) -> list[str]:
    """Columns naming a value the metric never reports: say what it does report."""
    notes = []
    for column in table.columns:
        reported = {k for r in records if _matches(r, table.where)
                    for k in r["metrics"].get(column.metric, {})}
        if reported and column.value not in reported:
            notes.append(f"- column {column.header!r}: metric {column.metric!r} reports no value "
                         f"{column.value!r} (it reports: {', '.join(sorted(reported))})")
    return notes


def render_table(table: Table, suite: Suite, records: list[dict[str, Any]],
                 figure_root: str) -> str:
    lines = [f"### {table.title}", ""]
    if table.reference:
        ref = table.reference
        page = (f", {ref.section}" if ref.section else "") + (f", p. {ref.page}" if ref.page else "")
        lines += [f"Source: {ref.paper}, {ref.where}{page}.", ""]
    if table.where:
        lines += ["Runs: " + ", ".join(f"{k} = {v}" for k, v in table.where.items()) + ".", ""]
    by_dim, varying = _layout(table, records)
    rows = _rows(table, suite, records, by_dim, varying)
    not_run = table.not_run if not any(
        suite.methods[m].enabled for m, _, _ in rows if m in suite.methods) else None
    header = ["method"] + (["z"] if by_dim else []) + varying
    cells: dict[tuple[Row, int], Cell] = {}
    for row in rows:
        group = _records_for(row, records, table.where, varying)
        finished = [r for r in group if r["status"] == "finished"]
        failed = len(group) - len(finished)
        for c, column in enumerate(table.columns):
            values = [v for v in (_value(r, column) for r in finished) if v is not None]
            broken = sum(1 for r in finished if column.metric in r.get("metric_errors", {}))
            cells[(row, c)] = Cell(values, failed + broken)
    best = [_best([cells[(row, c)] for row in rows], col.better) for c, col in enumerate(table.columns)]
    for column in table.columns:
        header.append(column.header)
        if column.paper:
            header += [f"{column.header} (paper)", "Δ"]
    body = []
    for row in rows:
        method, dim, grid = row
        line: list[str] = [suite.methods[method].label or method] if method in suite.methods else [method]
        if by_dim:
            line.append(str(dim))
        line += [value for _, value in grid]
        for c, column in enumerate(table.columns):
            cell = cells[(row, c)]
            is_best = best[c] is not None and cell.mean is not None and math.isclose(cell.mean, best[c])
            line.append("not run" if not_run else cell.text(column.digits, is_best))
            if column.paper:
                paper = column.paper.get(method)
                if isinstance(paper, (int, float)):
                    line.append(_fmt(float(paper), column.digits).rstrip("0").rstrip(".")
                                if float(paper) != int(paper) else str(int(paper)))
                    diff = None if cell.mean is None or not_run else cell.mean - float(paper)
                    line.append(_fmt(diff, column.digits, signed=True))
                else:
                    line += [paper or "", ""]
        body.append(line)
    lines.append(tabulate(body, headers=header, tablefmt="github", disable_numparse=True))
    lines.append("")
    directions = {"higher": "higher is better", "lower": "lower is better",
                  "closer_to_zero": "closer to 0 is better"}
    legend = "; ".join(f"{c.header}: {directions[c.better]}" for c in table.columns
                       if c.better in directions)
    if legend:
        lines += [f"Bold: best of ours per column ({legend}). Cells: mean ± std over seeds (n runs).", ""]
    if not_run:
        lines += [f"**Not run:** {not_run}", ""]
    failures = set()
    for row in rows:
        for r in _records_for(row, records, table.where, varying):
            if r["status"] == "failed":
                failures.add((r["label"], r["latent_dim"], r["seed"], r["reason"]))
            for column in table.columns:
                error = r.get("metric_errors", {}).get(column.metric)
                if error and r["status"] == "finished":
                    failures.add((r["label"], r["latent_dim"], r["seed"], f"metric {column.metric}: {error}"))
    for label, dim, seed, reason in sorted(failures):
        lines.append(f"- failed: {label} z={dim} seed={seed}: {reason}")
    missing = _missing_values(table, records)
    lines += missing
    if failures or missing:
        lines.append("")
    for note in table.notes:
        lines.append(f"- {note}")
    if table.notes:
        lines.append("")
    lines += _figures(table, rows, records, figure_root, varying)
    return "\n".join(lines)


def _figures(table: Table, rows: list[Row], records: list[dict[str, Any]], figure_root: str,
             varying: list[str]) -> list[str]:
    if not table.figures:
        return []
    header = ["method"] + [Path(f).stem.replace("_", " ") for f in table.figures]
    body = []
    for row in rows:
        group = sorted(_records_for(row, records, table.where, varying), key=lambda r: r["seed"])
        if not group:
            continue
        first = group[0]
        slug = Path(record_slug(first))
        line = [f"{first['label']} z={first['latent_dim']}" + "".join(f" {k}={v}" for k, v in row[2])]
        for fig in table.figures:
            have = any(Path(f).name == fig for f in first.get("figures", []))
            line.append(f"![{first['label']} {fig}]({figure_root}/{slug}/{fig})" if have else "—")
        body.append(line)
    if not body:
        return []
    return ["Figures (first seed of each row):", "",
            tabulate(body, headers=header, tablefmt="github", disable_numparse=True), ""]


def record_slug(record: dict[str, Any]) -> str:
    """The run's folder name under records/ and figures/ (stored since 0.1)."""
    if record.get("slug"):
        return record["slug"]
    extra = "".join(f"__{k.replace('.', '-')}={v}" for k, v in record["grid"].items())
    return f"{record['method']}__z{record['latent_dim']}__s{record['seed']}{extra}"


def _provenance(records: list[dict[str, Any]], profile: str | None) -> list[str]:
    def values(field: str) -> str:
        found = sorted({str(r["provenance"].get(field)) for r in records if r["provenance"].get(field)})
        return ", ".join(found) if found else "unknown"

    finished = [r for r in records if r["status"] == "finished"]
    dates = sorted(r["provenance"].get("finished", "") for r in records if r["provenance"].get("finished"))
    train = sum(r.get("train_seconds") or 0 for r in records)
    evaluate = sum(r.get("eval_seconds") or 0 for r in records)
    return [
        "## Provenance", "",
        f"- profile: {profile or 'default'}",
        f"- runs: {len(finished)} finished, {len(records) - len(finished)} failed",
        f"- benchbed {values('benchbed')}; torch {values('torch')}; Python {values('python')}",
        f"- platform: {values('platform')}",
        f"- hardware: {values('hardware')}",
        f"- git commit: {values('git_commit')}",
        f"- trained: {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}",
        f"- wall time: {train / 60:.1f} min training + {evaluate / 60:.1f} min evaluation "
        "(summed over runs)",
        "",
    ]


def render(suite: Suite, records: list[dict[str, Any]], figure_root: str,
           deviations: list[str], run_command: str, leaderboard_command: str,
           stale: list[str] = ()) -> str:
    title = suite.title or suite.name
    lines = [f"# {title}", "", f"Reproduces: {suite.citation}", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [f"Profile **{suite.profile or 'default'}**. Repeat every run with `{run_command} --rerun` "
              f"(without `--rerun`, runs whose records are committed count as done); rebuild this page "
              f"from the committed records with `{leaderboard_command}`.", ""]
    if stale:
        lines += [f"**{len(stale)} stale record(s) ignored**: their config no longer matches the suite "
                  f"({', '.join(stale)}); run the suite again to replace them.", ""]
    for table in suite.leaderboards:
        lines.append(render_table(table, suite, records, figure_root))
    findings = render_findings(suite, records)
    if findings:
        lines += findings
    lines += ["## Deviations from the paper's protocol", ""]
    lines += [f"- {d}" for d in deviations] or ["- none"]
    lines.append("")
    lines += _provenance(records, suite.profile)
    return "\n".join(lines).rstrip() + "\n"
