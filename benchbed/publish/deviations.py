"""Every way a profile's protocol differs from the paper's.

Two sources: the suite's own ``deviations`` list (what no field shows, e.g.
"test binarisation is not the Larochelle file"), and a field-by-field
comparison of the chosen profile against the suite's ``paper`` profile.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticUndefined

from benchbed.plan.loaded import LoadedSuite
from benchbed.plugin_api.registry import get_registry
from benchbed.suite.protocol import Method, Training
from benchbed.suite.source import Locations, apply_profile

PAPER_PROFILE = "paper"
# Presentation only: never a deviation of the protocol.
IGNORED = ("title", "description", "leaderboards", "findings", "deviations", "profile", "citation",
           "executor")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


# Where a component's params live in a suite (the prefix's ``name`` picks it), and a method's components.
_COMPONENTS = {("metrics", 2): "metric", ("corruptions", 2): "corruption", ("dataset", 1): "dataset"}
_METHOD_COMPONENTS = {"dataset": "dataset", "objective": "objective", "divergence": "divergence",
                      "prior": "prior", "encoder": "architecture", "decoder": "architecture"}


def _component_kind(parts: list[str]) -> str | None:
    if parts[0] == "methods" and len(parts) == 3:
        return _METHOD_COMPONENTS.get(parts[2])
    return _COMPONENTS.get((parts[0], len(parts)))


def _default(flat: dict[str, Any], key: str) -> Any:
    """The value ``key`` takes in a suite that leaves it out: a method's
    training (at one latent size, its training) falls back on the suite's, a component param on its plugin's
    default, anything else on the schema's default; None if unknown."""
    parts = key.split(".")
    if parts[0] == "methods" and len(parts) > 4 and parts[2] == "training_at":
        # at one latent size a method trains as it does at the others unless told otherwise
        own = f"methods.{parts[1]}.training.{'.'.join(parts[4:])}"
        return flat[own] if flat.get(own) is not None else _default(flat, own)
    if parts[0] == "methods" and len(parts) > 3 and parts[2] == "training":
        rest = ".".join(parts[3:])
        value = flat.get(f"training.{rest}")
        return value if value is not None else _default(flat, f"training.{rest}")
    model, field = None, parts[-1]
    if parts[0] == "training" and len(parts) == 2:
        model = Training
    elif parts[0] == "methods" and len(parts) == 3:
        model = Method
    else:
        prefix = ".".join(parts[:-1])
        kind, name = _component_kind(parts[:-1]), flat.get(f"{prefix}.name")
        if kind and isinstance(name, str):
            try:
                model = get_registry().get(kind, name).cls.Params
            except Exception:  # an unknown plugin here: validation reports it
                return None
    info = model.model_fields.get(field) if model is not None else None
    if info is None:
        return None
    value = info.get_default(call_default_factory=True)
    return None if value is PydanticUndefined else value


def _show_side(flat: dict[str, Any], key: str) -> str:
    if flat.get(key) is not None:
        return _show(flat[key])
    default = _default(flat, key)
    if default is None and key.endswith("_subset"):
        return "all of it (the default)"  # train_subset, test_subset: None is no subset
    return "not set (the default)" if default is None else f"{_show(default)} (the default)"


def profile_differences(data: dict, locs: Locations, profile: str | None) -> list[str]:
    """``data``, ``locs``: the suite as ``load_raw`` gives it (every profile in it)."""
    profiles = data.get("profiles") or {}
    chosen = profile or data.get("default_profile")
    if PAPER_PROFILE not in profiles or chosen in (None, PAPER_PROFILE):
        return []
    ours_flat, paper_flat = ({k: v for k, v in flatten(apply_profile(dict(data), locs, name)[0]).items()
                              if k.split(".")[0] not in IGNORED} for name in (chosen, PAPER_PROFILE))
    # One line per difference; the same change in several methods is one line.
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for key in sorted(set(ours_flat) | set(paper_flat)):
        mine, theirs = ours_flat.get(key), paper_flat.get(key)
        if mine == theirs:
            continue
        parts = key.split(".")
        shown = _show_side(ours_flat, key), _show_side(paper_flat, key)
        if parts[0] == "methods" and len(parts) > 2:
            group = ("methods.{}." + ".".join(parts[2:]), *shown)
            grouped.setdefault(group, []).append(parts[1])
        else:
            grouped.setdefault((key, *shown), []).append("")
    lines = []
    for (pattern, mine_text, theirs_text), methods in grouped.items():
        names = methods[0] if len(methods) == 1 else "{" + ",".join(methods) + "}"
        path = pattern.format(names) if "{}" in pattern else pattern
        lines.append(f"`{path}`: {mine_text} here; {theirs_text} in the suite's `paper` profile")
    return lines


def training_differences(loaded: LoadedSuite) -> list[str]:
    """Settings of training that are not the same for every run (a method's own ``training``, or its
    ``training_at`` one latent size), one line each: a comparison is fair only where a reader sees them."""
    sizes: dict[str, set[int]] = {}
    values: dict[str, dict[str, dict[str, set[int]]]] = {}  # setting -> value -> method -> sizes
    for run in loaded.runs:
        sizes.setdefault(run.method, set()).add(run.latent_dim)
        for key, value in flatten(run.config["training"]).items():
            values.setdefault(key, {}).setdefault("not set" if value is None else _show(value), {}).setdefault(run.method, set()).add(
                run.latent_dim)
    lines = []
    for key, by_value in sorted(values.items()):
        if len(by_value) < 2:
            continue
        shown = "; ".join(
            f"{value} for " + ", ".join(m if at == sizes[m] else f"{m} at z={'/'.join(map(str, sorted(at)))}"
                                        for m, at in methods.items())
            for value, methods in by_value.items())
        lines.append(f"Not every run trains alike: `training.{key}` is {shown}.")
    return lines


def deviations_for(loaded: LoadedSuite) -> list[str]:
    return [*loaded.suite.deviations, *profile_differences(loaded.raw, loaded.raw_locs, loaded.profile),
            *training_differences(loaded)]
