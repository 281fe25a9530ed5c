"""A suite loaded once per command: read, checked completely and planned, then handed
down to every part that needs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchbed.errors import BenchbedError
from benchbed.plan.runs import PlannedRun, plan, plan_checked, selection_problems
from benchbed.plugin_api.registry import Registry, get_registry
from benchbed.suite.load import SuiteInvalid, factor_problems, load_suite
from benchbed.suite.protocol import Suite
from benchbed.suite.source import Locations, load_raw, profile_names


@dataclass(frozen=True)
class LoadedSuite:
    path: Path
    raw: dict  # the YAML with its extends chain merged, every profile still in it
    raw_locs: Locations
    suite: Suite  # the chosen profile applied, validated
    locs: Locations  # where each of the suite's values was written
    runs: list[PlannedRun]  # every run, with its key

    @property
    def profile(self) -> str | None:
        return self.suite.profile

    @property
    def default_profile(self) -> str | None:
        return profile_names(self.raw)[1]


def load(path: str | Path, profile: str | None = None, registry: Registry | None = None,
         raw: tuple[dict, Locations] | None = None) -> LoadedSuite:
    """Read (or take ``raw``, ``load_raw``'s result), check and plan a suite;
    raise ``SuiteInvalid`` with every problem found."""
    registry = registry or get_registry()
    path = Path(path)
    data, data_locs = raw if raw is not None else load_raw(path)
    suite, locs = load_suite(path, profile, registry, (data, data_locs))
    runs, problems = plan_checked(suite, registry, locs)
    problems = problems or factor_problems(suite, registry, locs)
    if not problems and selection_problems(suite, runs, locs):
        # A value another profile plans is fine: plan the suite's other profiles (those that
        # load; no profile is one when there is no default) and look again.
        names, default = profile_names(data)
        elsewhere = []
        for name in [n for n in names + ([None] if default is None else []) if n != suite.profile]:
            try:
                elsewhere += plan(load_suite(path, name, registry, (data, data_locs))[0], registry)
            except BenchbedError:
                pass
        problems = selection_problems(suite, runs, locs, elsewhere)
    if problems:
        raise SuiteInvalid(str(path), list(dict.fromkeys(problems)), suite.profile)  # one line each
    return LoadedSuite(path, data, data_locs, suite, locs, runs)
