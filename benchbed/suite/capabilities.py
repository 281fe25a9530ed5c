"""Checks that a metric's needs are met by the dataset it will see.

A metric that reads ground-truth factors (``Metric.needs_factors``) is
refused at ``validate`` for a method whose dataset lists none in
``DatasetInfo.factors``, so the mistake shows before any training.
"""

from __future__ import annotations

from typing import Any

from benchbed.errors import BenchbedError, UnknownComponent
from benchbed.plugin_api.registry import Registry
from benchbed.suite.load import Problem, dotted
from benchbed.suite.protocol import Suite
from benchbed.suite.source import Locations


def _dataset_factors(registry: Registry, ref) -> tuple[str, ...] | None | str:
    """The dataset's factor names, None without factors, or a string when unknown."""
    try:
        return registry.create("dataset", ref.as_dict()).info().factors
    except (BenchbedError, UnknownComponent) as exc:  # reported by the other checks
        return str(exc)


def factor_problems(suite: Suite, registry: Registry, locs: Locations) -> list:
    """One problem per place a factor-needing metric is asked for on a dataset without
    factors (a suite-wide metric once, naming every method it would fail for)."""
    found: dict[tuple, tuple[str, Any, tuple, list[str]]] = {}
    for key, method in suite.methods.items():
        if not method.enabled:
            continue
        dataset = method.dataset or suite.dataset
        wanted = method.metrics if method.metrics is not None else list(suite.metrics)
        factors: Any = "unchecked"
        for i, metric_key in enumerate(wanted):
            ref = suite.metrics.get(metric_key)
            if ref is None:
                continue
            try:
                cls = registry.get("metric", ref.name).cls
            except UnknownComponent:
                continue
            if not getattr(cls, "needs_factors", False):
                continue
            if factors == "unchecked":
                factors = _dataset_factors(registry, dataset)
            if factors is None:
                path = ("methods", key, "metrics", i) if method.metrics is not None else ("metrics", metric_key)
                data_path = ("methods", key, "dataset") if method.dataset else ("dataset",)
                found.setdefault((path, dataset.name), (metric_key, ref, data_path, []))[3].append(key)
    problems = []
    for (path, dataset_name), (metric_key, ref, data_path, methods) in found.items():
        problems.append(Problem(
            str(locs.find(path)), dotted(path),
            f"metric {metric_key!r} ({ref.name}) needs ground-truth factors of variation, "
            f"but dataset {dataset_name!r} (at {locs.find(data_path)}) offers none; use a "
            f"dataset with factors (e.g. dsprites) or drop {metric_key!r} "
            f"(asked for by method{'s' if len(methods) > 1 else ''} {', '.join(methods)})"))
    return problems
