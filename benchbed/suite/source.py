"""Reading suite YAML while remembering where every value came from.

Values are plain dicts/lists; alongside them a ``Locations`` map sends each
path (a tuple of keys and indices) to the file and line that set it, so
errors can point at the line. ``extends: other.yaml`` deep-merges a base
suite under this one; ``profiles: {name: overrides}`` are deep-merged on
top when a profile is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchbed.errors import BenchbedError, did_you_mean

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Locations(dict):
    """path tuple -> Location; ``find`` falls back to the nearest parent."""

    def find(self, path: Path_) -> Location | None:
        path = tuple(path)
        while True:
            if path in self:
                return self[path]
            if not path:
                return None
            path = path[:-1]


class SuiteSyntaxError(BenchbedError):
    pass


SOURCE_KEYS = ("extends", "profiles", "default_profile")  # read here, never by the Suite model
MAX_NODES = 100_000  # far past any real suite; aliases nested to expand beyond it are refused


def _construct(node: yaml.Node, path: Path_, file: str, locs: Locations,
               constructor: yaml.constructor.SafeConstructor, within: tuple[int, ...] = ()) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        where = f"{file}:{node.start_mark.line + 1}: {'.'.join(map(str, path)) or 'the suite'}"
        if id(node) in within:  # an alias inside the node it names
            raise SuiteSyntaxError(f"{where}: an alias refers to a node that contains it, so it "
                                   "never ends")
        if len(locs) > MAX_NODES:
            raise SuiteSyntaxError(f"{where}: the aliases expand to more than {MAX_NODES:,} values; "
                                   "write the repeated part once")
        within += (id(node),)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, _ in node.value:  # duplicates among the keys written here
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _key(key_node, path, file, constructor)
            if key in seen:
                raise SuiteSyntaxError(f"{file}:{key_node.start_mark.line + 1}: "
                                       f"{'.'.join(map(str, path + (key,)))}: duplicate key {key!r}")
            seen.add(key)
        constructor.flatten_mapping(node)  # '<<' merge keys first, so written keys win
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, path, file, constructor)
            locs[path + (key,)] = Location(file, key_node.start_mark.line + 1)
            out[key] = _construct(value_node, path + (key,), file, locs, constructor, within)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            locs[path + (i,)] = Location(file, item.start_mark.line + 1)
            items.append(_construct(item, path + (i,), file, locs, constructor, within))
        return items
    return constructor.construct_object(node, deep=True)


def _key(node: yaml.Node, path: Path_, file: str, constructor: yaml.constructor.SafeConstructor) -> Any:
    key = constructor.construct_object(node, deep=True)
    try:
        hash(key)
    except TypeError:
        raise SuiteSyntaxError(f"{file}:{node.start_mark.line + 1}: "
                               f"{'.'.join(map(str, path)) or '(suite)'}: a key must be a plain "
                               f"value, not {type(key).__name__}") from None
    return key


def read_yaml(path: Path) -> tuple[Any, Locations]:
    """Parse one YAML file into data plus the location of every value."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchbedError(f"{file}: cannot read suite: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SuiteSyntaxError(f"{file}: not UTF-8 text (byte {exc.start}): save the suite as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark, opened = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = getattr(exc, "problem", None) or str(exc)
        if mark and opened and opened.line < mark.line and text[opened.index:][:1] in ("{", "[", '"', "'"):
            # PyYAML reports an unclosed bracket or quote where the file ends: point at the opener
            where, problem = (f"{file}:{opened.line + 1}", f"the {text[opened.index]!r} opened at line "
                              f"{opened.line + 1} is not closed by line {mark.line + 1}: {problem}")
        raise SuiteSyntaxError(f"{where}: not valid YAML: {problem}") from None
    locs = Locations()
    if node is None:
        raise SuiteSyntaxError(f"{file}:1: the suite file is empty")
    locs[()] = Location(file, 1)
    try:
        data = _construct(node, (), file, locs, yaml.constructor.SafeConstructor())
    except yaml.YAMLError as exc:  # e.g. a !!python tag, which safe loading refuses
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        raise SuiteSyntaxError(f"{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise SuiteSyntaxError(f"{file}:1: a suite is a mapping of keys, not {type(data).__name__}")
    return data, locs


def _additive(path: Path_) -> bool:
    """Lists that a profile or a child suite adds to: its own deviations come on top of the suite's
    (a child's ``profiles.cpu.deviations`` on top of its base's ``cpu`` ones)."""
    return path == ("deviations",) or (len(path) == 3 and path[0] == "profiles" and path[2] == "deviations")


def deep_merge(base: Any, override: Any, base_locs: Locations, over_locs: Locations,
               path: Path_ = ()) -> tuple[Any, Locations]:
    """Dicts merge key by key; ``_additive`` lists add the new entries; anything
    else in ``override`` replaces. A component given another ``name`` replaces
    the old one whole, since its parameters belong to the old component."""
    if _additive(path) and isinstance(base, list) and isinstance(override, list):
        merged_list, locs = list(base), _subtree(base_locs, path)
        for i, item in enumerate(override):
            if item not in merged_list:
                locs.update(_subtree(over_locs, path + (i,), path + (len(merged_list),)))
                merged_list.append(item)
        return merged_list, locs
    renamed = (bool(path) and isinstance(base, dict) and isinstance(override, dict)
               and "name" in override and "name" in base and override["name"] != base["name"])
    if isinstance(base, dict) and isinstance(override, dict) and not renamed:
        merged, locs = dict(base), Locations(base_locs)
        for key, value in override.items():
            sub = path + (key,)
            if key in merged:
                value, sublocs = deep_merge(merged[key], value, _subtree(base_locs, sub),
                                            _subtree(over_locs, sub), sub)
                locs = Locations({p: l for p, l in locs.items() if p[:len(sub)] != sub})
                locs.update(sublocs)
            else:
                locs.update(_subtree(over_locs, sub))
            merged[key] = value
        if path in over_locs:
            locs[path] = over_locs[path]
        return merged, locs
    return override, _subtree(over_locs, path)


def merge_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merge key by key (a method's ``optimiser: {lr: ...}`` keeps
    the suite's optimiser name); anything else replaces. Unlike ``deep_merge``
    it tracks no lines and keeps a renamed component's other keys: it merges
    a method's ``training`` over the suite's, which has no components."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def _subtree(locs: Locations, prefix: Path_, moved_to: Path_ | None = None) -> Locations:
    """The locations under ``prefix``, kept there or moved under ``moved_to``."""
    to = prefix if moved_to is None else moved_to
    return Locations({to + p[len(prefix):]: l for p, l in locs.items() if p[:len(prefix)] == prefix})


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, Locations]:
    """One suite file with its ``extends`` chain merged (profiles untouched)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise SuiteSyntaxError(f"{path}: 'extends' forms a cycle: {chain}")
    data, locs = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, locs
    if not isinstance(parent, str):
        raise SuiteSyntaxError(f"{locs.find(('extends',))}: extends: must be a file path, "
                               f"got {parent!r}")
    parent_path = (path.parent / parent)
    if not parent_path.is_file():
        what = "a folder, not a suite file" if parent_path.is_dir() else "no such file"
        raise SuiteSyntaxError(f"{locs.find(('extends',))}: extends: {what} {str(parent_path)!r}")
    base, base_locs = load_raw(parent_path, (*_seen, resolved))
    merged, merged_locs = deep_merge(base, data, base_locs, locs)
    _own_names(merged, base, locs, parent)
    return merged, merged_locs


def _own_names(merged: dict, base: dict, locs: Locations, parent: str) -> None:
    """A suite that extends another publishes under its own name (and each profile that names
    itself), else its runs would land in the base's leaderboard and records."""
    profiles = merged.get("profiles") if isinstance(merged.get("profiles"), dict) else {}
    for path in [("name",), *(("profiles", p, "name") for p in profiles)]:
        name = _get(merged, path)
        if name is None or name != _get(base, path):
            continue
        board = name if len(path) == 1 or path[1] == merged.get("default_profile") else f"{name}-{path[1]}"
        own = path in locs  # written here, the same as the base's; else inherited
        problem = (f"{name!r} is the name of the suite it extends ({parent})" if own
                   else f"a suite that extends {parent} needs its own name")
        raise SuiteSyntaxError(f"{locs.find(path if own else ('extends',))}: {'.'.join(map(str, path))}: "
                               f"{problem}: it would write over leaderboards/{board}.md and its records; "
                               f"{'write' if own else 'add'} e.g. `name: {name}-mine`")
    # A profile's name may also meet one the base publishes under another profile.
    base_boards = {board: profile for profile, board in reversed(_boards(base))}
    for profile, board in _boards(merged):
        if board in base_boards:
            path = ("profiles", profile, "name")
            path = path if path in locs else ("name",) if ("name",) in locs else ("extends",)
            theirs = base_boards[board]
            raise SuiteSyntaxError(
                f"{locs.find(path)}: {'.'.join(map(str, path))}: "
                f"{'this suite' if profile is None else 'profile ' + profile} would publish as {board!r}, "
                f"as the suite it extends ({parent}) does "
                f"{'without a profile' if theirs is None else 'with profile ' + theirs}: it would write over "
                f"leaderboards/{board}.md and its records; give it a name of its own")


def publish_name(suite_name: str, profile: str | None, default_profile: str | None) -> str:
    """The default profile publishes as the suite's name; others get a suffix."""
    if profile is None or profile == default_profile:
        return suite_name
    return f"{suite_name}-{profile}"


def _boards(data: dict) -> list[tuple[str | None, str]]:
    """(profile, name published under) for each profile of a raw suite (None: no profile)."""
    profiles = data.get("profiles") if isinstance(data.get("profiles"), dict) else {}
    out = []
    for profile in [None, *profiles]:
        body = profiles.get(profile) if profile is not None else None
        name = body.get("name") if isinstance(body, dict) and "name" in body else data.get("name")
        if isinstance(name, str):
            out.append((profile, publish_name(name, profile, data.get("default_profile"))))
    return out


def _get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def apply_profile(data: dict, locs: Locations, profile: str | None) -> tuple[dict, Locations, str | None]:
    """Merge the chosen profile (or the default one) over the suite."""
    if "profile" in data:  # set here from --profile or default_profile, never written
        raise BenchbedError(f"{locs.find(('profile',))}: profile: not a suite field; choose a profile with "
                            "--profile NAME or `default_profile: NAME`, and define it under `profiles:`")
    if data.get("profiles") is not None and not isinstance(data["profiles"], dict):
        raise BenchbedError(f"{locs.find(('profiles',))}: profiles: must be a mapping of profile names "
                            f"to their overrides, not a {type(data['profiles']).__name__}")
    profiles = data.pop("profiles", None) or {}
    default = data.pop("default_profile", None)
    chosen = profile or default
    if chosen is None:
        return data, locs, None
    if not isinstance(chosen, str):
        raise BenchbedError(f"{locs.find(('default_profile',))}: default_profile: must be the name of one "
                            f"profile, not a {type(chosen).__name__} ({chosen!r})")
    if chosen not in profiles:
        names = sorted(profiles)
        where = locs.find(("default_profile",) if profile is None else ("profiles",)) or locs.find(())
        raise BenchbedError(f"{where}: profiles: no profile {chosen!r}{did_you_mean(chosen, names)}"
                            f" (profiles: {', '.join(names) or 'none'})")
    body = profiles[chosen] or {}
    if not isinstance(body, dict):
        raise BenchbedError(f"{locs.find(('profiles', chosen))}: profiles.{chosen}: must be a mapping")
    merged, merged_locs = deep_merge(data, body, locs, _subtree(locs, ("profiles", chosen), ()))
    if () in locs:  # the suite stays where it starts: a field missing from it is not the profile's line
        merged_locs[()] = locs[()]
    merged["profile"] = chosen
    return merged, merged_locs, chosen


def profile_names(data: dict) -> tuple[list[str], str | None]:
    """A suite's profiles (sorted) and its default one, from ``load_raw``'s data."""
    profiles = data.get("profiles") or {}
    return sorted(profiles) if isinstance(profiles, dict) else [], data.get("default_profile")
