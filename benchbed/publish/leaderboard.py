"""Markdown leaderboards from run records alone, so a page rebuilds byte for byte.

Cells are mean ± std over seeds; the best per column is bold, never a value that
benchbed.publish.flags marks (under-trained, collapsed, at an estimator's bound).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchbed.publish import curves, flags
from benchbed.publish.findings import render_findings
from benchbed.publish.provenance import provenance_footer
from benchbed.publish.records import not_finite_values
from benchbed.suite.protocol import Column, Suite, Table, matches

# (method key, latent size or None, the grid values that vary across runs)
Row = tuple[str, int | None, tuple[tuple[str, str], ...]]
Groups = list[tuple[Row, list[dict[str, Any]]]]  # each row with its records, in the table's order


UNDER_TRAINED = "†"
COLLAPSED = "⊘"


def _table(body: list[list[Any]], header: list[str]) -> str:
    """A Markdown table; a '|' or a line break inside a label would otherwise break its row."""
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return tabulate([[cell(c) for c in row] for row in body], headers=[cell(h) for h in header],
                    tablefmt="github", disable_numparse=True)


def _number(value: float, digits: int) -> str:
    """Fixed point with the column's digits; a magnitude of 1e9 or more in powers of ten, not 300 digits."""
    return f"{value:.{digits}f}" if abs(value) < 1e9 else f"{value:.{max(digits, 2)}e}"


def _raw(record: dict[str, Any], column: Column) -> float | None:
    value = record["metrics"].get(column.metric, {}).get(column.value)
    return value if value is not None and math.isfinite(value) else None


def _not_finite(record: dict[str, Any], column: Column) -> str | None:
    """Why a run's value for the column is missing when its metric returned nan or inf."""
    value = not_finite_values(record).get((column.metric, column.value))
    return None if value is None else f"returned {value} for {column.value!r}, not a finite number"


@dataclass
class Cell:
    values: list[float]
    failed: int
    bound: flags.Bound | None
    collapsed: bool
    unchecked: bool  # no metric could tell whether the run collapsed
    undefined: list[flags.Bound]  # runs whose value is no number (flags.undefined)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def ranks(self) -> bool:
        """Whether the cell may be the column's best: a mean neither collapsed, bounded nor undefined."""
        return self.mean is not None and not (self.bound or self.collapsed or self.undefined)

    def text(self, digits: int, best: bool) -> str:
        extra = (f", {self.failed} failed" if self.failed else "") + (
            f", {len(self.undefined)} {self.undefined[0].text}" if self.undefined and self.values else "")
        if not self.values:
            if self.undefined:
                return f"{self.undefined[0].text} (n={len(self.undefined)}{extra})"
            return "failed" if self.failed else "—"
        mean = _number(self.mean, digits)
        if best:
            mean = f"**{mean}**"
        spread = f" ± {_number(statistics.stdev(self.values), digits)}" if len(self.values) > 1 else ""
        if self.bound:
            return f"{self.bound.text} ({mean}{spread}, n={len(self.values)}{extra})"
        return f"{mean}{spread} (n={len(self.values)}{extra})"


def _shown(mean: float, digits: int, better: str) -> float:
    """The mean as the table shows it (the distance to 0 for closer_to_zero)."""
    shown = float(f"{mean:.{digits}f}")
    return abs(shown) if better == "closer_to_zero" else shown


def _best(cells: list[Cell], column: Column) -> tuple[float | None, str | None]:
    """The best mean of the column among the cells that may rank (neither
    collapsed nor at a bound), and why there is none when a bound could hide
    the best or the best ties at the shown precision."""
    better = column.better
    if better == "none" or sum(c.mean is not None for c in cells) < 2:
        return None, None
    hidden = [c for c in cells if c.mean is not None and c.bound and not c.collapsed
              and flags.hides_best(c.bound, better)]
    if hidden:
        return None, (f"no bold in {column.header}: {len(hidden)} value(s) at the estimator's "
                      f"{hidden[0].bound.kind} could be the best")
    unchecked = [c for c in cells if c.mean is not None and c.unchecked]
    if unchecked and better in ("lower", "closer_to_zero"):
        # An uninformative code (q(z|x) = p(z)) scores best on such a column.
        return None, (f"no bold in {column.header}: {len(unchecked)} row(s) measured neither MI nor class "
                      f"CE, so a collapsed code, which would score best here, cannot be ruled out")
    means = [c.mean for c in cells if c.ranks]
    if len(means) < 2:
        return None, None
    best = max(means) if better == "higher" else min(means, key=abs if better == "closer_to_zero" else None)
    tied = [m for m in means if _shown(m, column.digits, better) == _shown(best, column.digits, better)]
    if len(tied) > 1:
        return None, (f"no bold in {column.header}: {len(tied)} values tie for the best at the "
                      "shown precision")
    return best, None


def _grid_items(record: dict[str, Any], keys: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, json.dumps(record["grid"].get(k))) for k in keys)


def _rows(table: Table, suite: Suite, records: list[dict[str, Any]]) -> tuple[bool, list[str], Groups]:
    """Whether rows split by latent size, by which grid keys, and each row's records: never pool
    runs that differ in anything but the seed."""
    matching = [r for r in records if matches(r, table.where)]
    by_dim = table.by_latent_dim or any(
        len({r["latent_dim"] for r in matching if r["method"] == m}) > 1
        for m in {r["method"] for r in matching})
    keys = sorted({k for r in matching for k in r["grid"] if k not in table.where})
    varying = [k for k in keys if len({json.dumps(r["grid"].get(k)) for r in matching}) > 1]
    rows: list[Row] = []
    for method in table.methods or list(suite.methods):
        found = {(r["latent_dim"] if by_dim else None, _grid_items(r, varying))
                 for r in matching if r["method"] == method}
        if by_dim:  # every size the method runs at (within `where`) gets a row, with or without records
            spec = suite.methods.get(method)
            dims = spec.latent_dims if spec and spec.latent_dims else suite.grid.latent_dim
            wanted = table.where.get("latent_dim", dims)
            wanted = wanted if isinstance(wanted, list) else [wanted]
            have = {dim for dim, _ in found}
            blank = tuple((k, "") for k in varying)  # no grid value: its cells stay empty
            found |= {(d, blank) for d in dims if d in wanted and d not in have}
        present = sorted(found, key=lambda t: (t[0] or 0, t[1]))
        if present or by_dim:
            rows += [(method, dim, grid) for dim, grid in present]
        else:
            rows.append((method, None, ()))
    return by_dim, varying, [((method, dim, grid), [
        r for r in matching if r["method"] == method and (dim is None or r["latent_dim"] == dim)
        and (not grid or _grid_items(r, varying) == grid)]) for method, dim, grid in rows]


def _missing_values(table: Table, records: list[dict[str, Any]]) -> list[str]:
    """Columns naming a value the metric never reports: say what it does report."""
    notes = []
    for column in table.columns:
        reported = {k for r in records if matches(r, table.where)
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
    by_dim, varying, groups = _rows(table, suite, records)
    rows = [row for row, _ in groups]
    not_run = table.not_run if not any(
        suite.methods[m].enabled for m, _, _ in rows if m in suite.methods) else None
    header = ["method"] + (["z"] if by_dim else []) + varying
    cells: dict[tuple[Row, int], Cell] = {}
    collapsed: dict[Row, list[tuple[dict[str, Any], list[str]]]] = {}
    under: dict[Row, tuple[int, int, int]] = {}  # (under-trained, finished, never checked)
    for row, group in groups:
        finished = [r for r in group if r["status"] == "finished"]
        failed = len(group) - len(finished)
        collapsed[row] = [(r, why) for r in finished if (why := flags.collapsed(r))]
        under[row] = (sum(flags.under_trained(r) for r in finished), len(finished),
                      sum("convergence" not in r for r in finished))
        for c, column in enumerate(table.columns):
            undefined = [u for r in finished if (u := flags.undefined(r, column.metric, column.value))]
            pairs = [(r, v) for r in finished if (v := _raw(r, column)) is not None
                     and not flags.undefined(r, column.metric, column.value)]
            broken = sum(1 for r in finished if column.metric in r.get("metric_errors", {})
                         or _not_finite(r, column))
            b = flags.bound([r for r, _ in pairs], column.metric, column.value, [v for _, v in pairs])
            cells[(row, c)] = Cell([v * column.scale for _, v in pairs], failed + broken, b,
                                   bool(collapsed[row]),
                                   any(not flags.collapse_checked(r) for r, _ in pairs
                                       if flags.metric_name(r, column.metric) in flags.COLLAPSE_WINS),
                                   undefined)
    ranked = [_best([cells[(row, c)] for row in rows], col) for c, col in enumerate(table.columns)]
    for column in table.columns:
        header.append(column.header)
        if column.paper:
            header += [f"{column.header} (paper)", "Δ"]
    body = []
    for row in rows:
        method, dim, grid = row
        label = (suite.methods[method].label or method) if method in suite.methods else method
        line: list[str] = [label + _row_marks(collapsed[row], under[row])]
        if by_dim:
            line.append(str(dim))
        line += [value for _, value in grid]
        for c, column in enumerate(table.columns):
            cell, best = cells[(row, c)], ranked[c][0]
            is_best = best is not None and cell.ranks and math.isclose(cell.mean, best)
            line.append("not run" if not_run else cell.text(column.digits, is_best))
            if column.paper:
                paper = column.paper.get(method)
                if isinstance(paper, (int, float)):
                    line.append(f"{paper:.{column.digits}f}".rstrip("0").rstrip(".")
                                if float(paper) != int(paper) else str(int(paper)))
                    line.append("" if cell.mean is None or not_run
                                else f"{cell.mean - float(paper):+.{column.digits}f}")
                else:
                    line += [paper or "", ""]
        body.append(line)
    lines += [_table(body, header), ""]
    directions = {"higher": "higher is better", "lower": "lower is better",
                  "closer_to_zero": "closer to 0 is better"}
    legend = "; ".join(f"{c.header}: {directions[c.better]}" for c in table.columns
                       if c.better in directions)
    if legend:
        lines += [f"Bold: best of ours per column ({legend}), never a collapsed run ({COLLAPSED}) "
                  "or a value at an estimator's ceiling or floor; the best mean, not a tested "
                  "difference (the findings test claims against the seed spread). "
                  "Cells: mean ± std over seeds (n runs).", ""]
    if not not_run:
        lines += _flag_legend(rows, cells, collapsed, under, [note for _, note in ranked if note])
    if not_run:
        lines += [f"**Not run:** {not_run}", ""]
    failures = set()
    for _, group in groups:
        for r in group:
            if r["status"] == "failed":
                failures.add((r["label"], r["latent_dim"], r["seed"], r["reason"]))
            for column in table.columns:
                error = r.get("metric_errors", {}).get(column.metric) or _not_finite(r, column)
                if error and r["status"] == "finished":
                    failures.add((r["label"], r["latent_dim"], r["seed"], f"metric {column.metric}: {error}"))
    lines += [f"- failed: {label} z={dim} seed={seed}: {why}" for label, dim, seed, why in sorted(failures)]
    missing = _missing_values(table, records)
    lines += missing
    if failures or missing:
        lines.append("")
    if table.notes:
        lines += [f"- {note}" for note in table.notes] + [""]
    lines += _learning_curves(table, groups)
    lines += _figures(table, groups, figure_root)
    return "\n".join(lines)


def _learning_curves(table: Table, groups: Groups) -> list[str]:
    if not table.learning_curves:
        return []
    body = []
    for row, group in groups:
        got = curves.curve_row(group)
        if got is not None:
            body.append([_row_label(group[0], row), *got])
    if not body:
        return []
    return ["Training of these runs:", "",
            _table(body, ["method", *curves.HEADER]),
            "", f"- {curves.NOTE}", ""]


def _row_marks(collapsed: list[tuple[dict[str, Any], list[str]]], under: tuple[int, int, int]) -> str:
    """The row label's flags: collapsed runs, then runs stopped on their budget
    (with a count when only some of the row's seeds are)."""
    n_under, n, _ = under
    return "".join(f" {mark}" + (f"({k}/{n})" if k < n else "")
                   for mark, k in ((COLLAPSED, len(collapsed)), (UNDER_TRAINED, n_under)) if k)


def _flag_legend(rows: list[Row], cells: dict[tuple[Row, int], Cell],
                 collapsed: dict[Row, list[tuple[dict[str, Any], list[str]]]],
                 under: dict[Row, tuple[int, int, int]], no_bold: list[str]) -> list[str]:
    """Legend lines for the flags this table shows, and why a column has no bold."""
    lines = []
    n_under = sum(u for u, _, _ in under.values())
    if n_under:
        n_all = sum(n for _, n, _ in under.values())
        unchecked = sum(c for _, _, c in under.values())
        checked = f"; {unchecked} of them fixed-epoch runs with no convergence check" if unchecked else ""
        lines.append(f"- {UNDER_TRAINED} under-trained: {n_under} of {n_all} runs stopped on their "
                     f"epoch budget, not on convergence{checked}. Their numbers may still move "
                     "with more training; findings on them are inconclusive.")
    for row in rows:
        for r, why in collapsed[row]:
            lines.append(f"- {COLLAPSED} collapsed: {r['label']} z={r['latent_dim']} seed={r['seed']}: "
                         + "; ".join(why) + ". Never bolded.")
    whys = sorted({b.why for cell in cells.values() for b in [cell.bound, *cell.undefined] if b})
    lines += [f"- {why}." for why in whys]
    lines += [f"- {note}." for note in no_bold]
    return lines + [""] if lines else []


def _figures(table: Table, groups: Groups, figure_root: str) -> list[str]:
    if not table.figures:
        return []
    header = ["method"] + [Path(f).stem.replace("_", " ") for f in table.figures]
    body = []
    for row, group in groups:
        if not group:
            continue
        first = min(group, key=lambda r: r["seed"])
        slug = Path(record_slug(first))
        line = [_row_label(first, row)]
        for fig in table.figures:
            have = any(Path(f).name == fig for f in first.get("figures", []))
            line.append(f"![{first['label']} {fig}]({figure_root}/{slug}/{fig})" if have else "—")
        body.append(line)
    if not body:
        return []
    return ["Figures (first seed of each row):", "",
            _table(body, header), ""]


def _row_label(record: dict[str, Any], row: Row) -> str:
    return f"{record['label']} z={record['latent_dim']}" + "".join(f" {k}={v}" for k, v in row[2])


def record_slug(record: dict[str, Any]) -> str:
    """The run's folder name under records/ and figures/ (stored since 0.1)."""
    if record.get("slug"):
        return record["slug"]
    extra = "".join(f"__{k.replace('.', '-')}={v}" for k, v in record["grid"].items())
    return f"{record['method']}__z{record['latent_dim']}__s{record['seed']}{extra}"


def render(suite: Suite, records: list[dict[str, Any]], figure_root: str,
           deviations: list[str], run_command: str, leaderboard_command: str,
           stale: list[str] = (), planned: int | None = None,
           stale_metrics: dict[str, int] | None = None) -> str:
    title = suite.title or suite.name
    lines = [f"# {title}", "", f"Reproduces: {suite.citation}", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [f"Profile **{suite.profile or 'default'}**. Repeat every run with `{run_command} --rerun` "
              f"(without `--rerun`, runs whose records are committed count as done); rebuild this page "
              f"from the committed records with `{leaderboard_command}`.", ""]
    missing = planned - len(records) if planned is not None else 0
    if missing > 0:
        lines += [f"**Incomplete: {missing} of the {planned} planned runs have no record yet**; their cells "
                  f"show — and findings on them wait. `{run_command}` runs them.", ""]
    if stale:
        lines += [f"**{len(stale)} stale record(s) ignored**: their config no longer matches the suite, "
                  f"or the suite no longer plans their run ({', '.join(stale)}); run the suite again to "
                  "replace them, or delete them.", ""]
    if stale_metrics:
        listed = ", ".join(f"{k} ({n} record{'s' if n != 1 else ''})" for k, n in stale_metrics.items())
        lines += [f"**Values of an older metric spec left out**: {listed}: the suite now defines these "
                  f"metrics otherwise, so their cells show —; `{run_command}` evaluates them again on "
                  "the stored weights (and trains again where none are stored).", ""]
    for table in suite.leaderboards:
        lines.append(render_table(table, suite, records, figure_root))
    lines += render_findings(suite, records)
    lines += ["## Deviations from the paper's protocol", ""]
    lines += [f"- {d}" for d in deviations] or ["- none"]
    lines.append("")
    lines += provenance_footer(records, suite.profile, missing, suite.shown_values())
    return "\n".join(lines).rstrip() + "\n"
