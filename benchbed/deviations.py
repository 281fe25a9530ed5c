"""Every way a profile's protocol differs from the paper's.

Two sources: the suite's own ``deviations`` list (what no field shows, e.g.
"test binarisation is not the Larochelle file"), and a field-by-field
comparison of the chosen profile against the suite's ``paper`` profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchbed.suite import Suite
from benchbed.suite_source import apply_profile, load_raw

PAPER_PROFILE = "paper"
# Presentation only: never a deviation of the protocol.
IGNORED = ("title", "description", "leaderboards", "findings", "deviations", "profile", "citation")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    return "the default" if value is None else json.dumps(value, default=str)


def profile_differences(path: Path, profile: str | None) -> list[str]:
    data, locs = load_raw(path)
    profiles = data.get("profiles") or {}
    chosen = profile or data.get("default_profile")
    if PAPER_PROFILE not in profiles or chosen in (None, PAPER_PROFILE):
        return []
    ours, _, _ = apply_profile(dict(data), locs, chosen)
    paper_data, paper_locs = load_raw(path)
    paper, _, _ = apply_profile(paper_data, paper_locs, PAPER_PROFILE)
    ours_flat = {k: v for k, v in _flatten(ours).items() if k.split(".")[0] not in IGNORED}
    paper_flat = {k: v for k, v in _flatten(paper).items() if k.split(".")[0] not in IGNORED}
    # One line per difference; the same change in several methods is one line.
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for key in sorted(set(ours_flat) | set(paper_flat)):
        mine, theirs = ours_flat.get(key), paper_flat.get(key)
        if mine == theirs:
            continue
        parts = key.split(".")
        if parts[0] == "methods" and len(parts) > 2:
            group = ("methods.{}." + ".".join(parts[2:]), _show(mine), _show(theirs))
            grouped.setdefault(group, []).append(parts[1])
        else:
            grouped.setdefault((key, _show(mine), _show(theirs)), []).append("")
    lines = []
    for (pattern, mine_text, theirs_text), methods in grouped.items():
        names = methods[0] if len(methods) == 1 else "{" + ",".join(methods) + "}"
        path = pattern.format(names) if "{}" in pattern else pattern
        lines.append(f"`{path}`: {mine_text} here; {theirs_text} in the paper protocol")
    return lines


def deviations_for(path: Path, suite: Suite) -> list[str]:
    return [*suite.deviations, *profile_differences(path, suite.profile)]
