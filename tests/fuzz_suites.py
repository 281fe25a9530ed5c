"""A mutation fuzzer for suite files: every broken suite must be refused with
one message naming the file and the broken line, exit code 2, no traceback.

    python tests/fuzz_suites.py [--per-kind N] [--seed S] [-v] [suites/*.yaml]

Mutations (each applied alone to a copy of a suite): typos in names (keys,
component names, references), values of the wrong type, unknown keys,
negative numbers, YAML syntax errors, empty files and a list at the top
level. A case counts as *located* when ``benchbed validate`` exits 2, prints
no traceback, and names ``FILE:LINE`` for the mutated line; *named* when it
names the file (and some line). tests/test_failure_paths.py runs a few
cases of every kind; this script runs as many as asked and lists the misses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

# Free text: a typo there changes nothing checkable.
FREE_TEXT = {"label", "title", "claim", "citation", "description", "notes", "header", "source",
             "paper", "where", "section", "page", "not_run", "reason", "figures", "id", "name"}
# Mappings whose keys the suite author chooses (a renamed key is a new name).
DEFINING = {"methods", "metrics", "corruptions", "profiles", "params", "paper", "resources",
            "env_vars", "runtime_env"}
REFERENCE_KEYS = {"metric", "value", "corruption", "track", "conditions", "methods"}
KINDS = ("key_typo", "name_typo", "string_typo", "wrong_type", "null_value", "container_swap",
         "unknown_key", "negative", "syntax", "empty", "top_level_list")


@dataclass
class Case:
    kind: str
    text: str
    line: int | None  # the mutated line (1-based), None when the whole file is the problem
    what: str


def _walk(node, path=()):
    """(path, key node or None, value node) for every entry of the document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            yield sub, key, value
            yield from _walk(value, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = path + (i,)
            yield sub, None, item
            yield from _walk(item, sub)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    choice = rng.choice(("drop", "double", "swap", "change"))
    if choice == "drop" and len(word) > 2:
        return word[:i] + word[i + 1:]
    if choice == "swap" and len(word) > 2 and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if choice == "change":
        letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]])
        return word[:i] + letter + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _replace(text: str, node, new: str) -> str:
    return text[:node.start_mark.index] + new + text[node.end_mark.index:]


def _line(node) -> int:
    return node.start_mark.line + 1


def _free(path) -> bool:
    return any(isinstance(p, str) and p in FREE_TEXT for p in path[-1:]) or \
        any(isinstance(p, str) and p in ("paper", "notes", "description", "reference") for p in path)


def mutations(text: str, rng: random.Random, per_kind: int) -> list[Case]:
    root = yaml.compose(text)
    entries = list(_walk(root))
    cases: list[Case] = []
    # A typo that lands on another name the suite uses is no mistake to catch.
    words = {n.value for _, k, v in entries for n in (k, v) if isinstance(n, yaml.ScalarNode)}

    def typo(word: str) -> str:
        for _ in range(20):
            new = _typo(word, rng)
            if new not in words:
                return new
        return word + "zz"

    keys = [(p, k) for p, k, _ in entries if k is not None and len(p) > 1
            and not (isinstance(p[-2], str) and p[-2] in DEFINING) and not _free(p[:-1])
            and not (len(p) >= 3 and p[-3] == "profiles")]
    for path, key in rng.sample(keys, min(per_kind, len(keys))):
        cases.append(Case("key_typo", _replace(text, key, typo(key.value)), _line(key),
                          f"key {'.'.join(map(str, path))}"))

    names = [(p, v) for p, _, v in entries if isinstance(v, yaml.ScalarNode) and v.tag.endswith(":str")
             and ((p[-1] == "name" and len(p) > 1) or (isinstance(p[-1], str) and p[-1] in REFERENCE_KEYS)
                  or (isinstance(p[-1], int) and len(p) > 1 and p[-2] in REFERENCE_KEYS | {"holds"}))
             and len(v.value) > 1 and v.style is None]
    for path, value in rng.sample(names, min(per_kind, len(names))):
        cases.append(Case("name_typo", _replace(text, value, typo(value.value)), _line(value),
                          f"name {'.'.join(map(str, path))} = {value.value}"))

    strings = [(p, v) for p, _, v in entries if isinstance(v, yaml.ScalarNode) and v.tag.endswith(":str")
               and not _free(p) and v.style is None and len(v.value) > 2 and (p, v) not in names
               and not (len(p) > 1 and p[-2] == "holds")]
    for path, value in rng.sample(strings, min(per_kind, len(strings))):
        cases.append(Case("string_typo", _replace(text, value, typo(value.value)), _line(value),
                          f"string {'.'.join(map(str, path))} = {value.value}"))

    required = [(p, v) for p, k, v in entries if k is not None and isinstance(v, yaml.ScalarNode)
                and v.value not in ("null", "~", "") and not _free(p)
                and not (len(p) > 1 and isinstance(p[-2], str) and p[-2] in DEFINING)]
    for path, value in rng.sample(required, min(per_kind, len(required))):
        cases.append(Case("null_value", _replace(text, value, "null"), _line(value),
                          f"null for {'.'.join(map(str, path))}"))

    containers = [(p, v) for p, k, v in entries if k is not None and isinstance(v, (yaml.SequenceNode,
                  yaml.MappingNode)) and v.flow_style and v.value and not _free(p)
                  and not (isinstance(p[-1], str) and p[-1] in DEFINING)]
    containers = [(p, v) for p, v in containers if not text[v.start_mark.index:].startswith("&")]
    for path, node in rng.sample(containers, min(per_kind, len(containers))):
        new = "{x: 1}" if isinstance(node, yaml.SequenceNode) else "[1, 2]"
        cases.append(Case("container_swap", _replace(text, node, new), _line(node),
                          f"{'list' if new.startswith('{') else 'mapping'} swapped at "
                          f"{'.'.join(map(str, path))}"))

    numbers = [(p, v) for p, _, v in entries if isinstance(v, yaml.ScalarNode)
               and v.tag.endswith((":int", ":float")) and not _free(p)]
    for path, value in rng.sample(numbers, min(per_kind, len(numbers))):
        cases.append(Case("wrong_type", _replace(text, value, rng.choice(("five", "[five]", "{a: 1}"))),
                          _line(value), f"number {'.'.join(map(str, path))} = {value.value}"))
    positive = [(p, v) for p, v in numbers if not v.value.startswith("-") and float(v.value) > 0
                and p[-1] not in ("seed",) and not (len(p) > 1 and p[-2] == "seed")]
    for path, value in rng.sample(positive, min(per_kind, len(positive))):
        cases.append(Case("negative", _replace(text, value, "-" + value.value), _line(value),
                          f"number {'.'.join(map(str, path))} = -{value.value}"))

    mappings = [(p, v) for p, _, v in entries if isinstance(v, yaml.MappingNode) and v.value
                and not (isinstance(p[-1], str) and p[-1] in DEFINING) and not _free(p)]
    for path, mapping in rng.sample(mappings, min(per_kind, len(mappings))):
        first = mapping.value[0][0]
        if mapping.flow_style:
            new = text[:first.start_mark.index] + "bogus_key: 1, " + text[first.start_mark.index:]
        else:
            start = text.rfind("\n", 0, first.start_mark.index) + 1
            indent = " " * first.start_mark.column
            if "-" in text[start:first.start_mark.index]:  # a list item: go after its first entry
                end = mapping.value[0][1].end_mark
                start = end.index if end.column == 0 else text.index("\n", end.index) + 1
            new = text[:start] + indent + "bogus_key: 1\n" + text[start:]
        line = text[:start].count("\n") + 1 if not mapping.flow_style else _line(first)
        cases.append(Case("unknown_key", new, line, f"unknown key in {'.'.join(map(str, path))}"))

    lines = text.splitlines(keepends=True)
    content = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    for i in rng.sample(content, min(per_kind, len(content))):
        line = lines[i]
        how = rng.choice(("bracket", "colon", "tab", "quote"))
        if how == "bracket":
            broken = line.rstrip("\n") + " [\n"
        elif how == "colon":
            broken = line.replace(":", "", 1) if ":" in line else line.rstrip("\n") + " :x: y\n"
        elif how == "tab":
            broken = "\t" + line
        else:
            broken = line.rstrip("\n") + ' "\n'
        mutated = "".join(lines[:i] + [broken] + lines[i + 1:])
        try:
            yaml.safe_load(mutated)
            continue  # still valid YAML (a colon inside a string, say): not a syntax case
        except yaml.YAMLError:
            pass
        cases.append(Case("syntax", mutated, None, f"{how} at line {i + 1}"))

    for body, what in (("", "empty"), ("# only a comment\n", "comment only"), ("\n\n", "blank lines")):
        cases.append(Case("empty", body, None, what))
    for body, what in (("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "a number")):
        cases.append(Case("top_level_list", body, None, what))
    return cases


@dataclass
class Verdict:
    case: Case
    code: int | None
    located: bool
    named: bool
    output: str


def judge(case: Case, folder: Path, index: int) -> Verdict:
    from benchbed.cli import main

    path = folder / f"case{index}.yaml"
    path.write_text(case.text)
    out, err = io.StringIO(), io.StringIO()
    code: int | None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["validate", str(path)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is what we look for
            import traceback
            traceback.print_exc(file=err)
            code = None
    text = out.getvalue() + err.getvalue()
    named = bool(re.search(rf"{re.escape(str(path))}(:\d+)?", text))
    if case.kind == "syntax":  # the parser's line may be the next one: any line will do
        located = bool(re.search(rf"{re.escape(str(path))}:\d+", text))
    elif case.line is None:
        located = named
    else:
        located = f"{path}:{case.line}:" in text or f"{path}:{case.line} " in text
    ok = code == 2 and "Traceback" not in text
    return Verdict(case, code, ok and located, ok and named, text)


def fuzz(suites: list[Path], per_kind: int, seed: int) -> list[Verdict]:
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="benchbed-fuzz-") as tmp:
        n = 0
        for suite in suites:
            rng = random.Random(f"{seed}:{suite.name}")
            for case in mutations(suite.read_text(), rng, per_kind):
                verdicts.append(judge(case, Path(tmp), n))
                n += 1
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*")
    parser.add_argument("--per-kind", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    suites = [Path(s) for s in args.suites] or sorted(
        (Path(__file__).resolve().parent.parent / "suites").glob("*.yaml"))
    verdicts = fuzz(suites, args.per_kind, args.seed)
    by_kind: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_kind.setdefault(v.case.kind, []).append(v)
    for kind in KINDS:
        vs = by_kind.get(kind, [])
        print(f"{kind:15s} located {sum(v.located for v in vs):3d}/{len(vs):3d}   "
              f"named {sum(v.named for v in vs):3d}/{len(vs):3d}")
    located = sum(v.located for v in verdicts)
    print(f"{'all':15s} located {located:3d}/{len(verdicts):3d}   "
          f"named {sum(v.named for v in verdicts):3d}/{len(verdicts):3d}")
    for v in verdicts:
        if not v.located:
            print(f"\nMISS {v.case.kind}: {v.case.what} (line {v.case.line}), exit {v.code}")
            if args.verbose:
                print("  " + v.output.strip().replace("\n", "\n  ")[:1500])
    return 0 if located == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
