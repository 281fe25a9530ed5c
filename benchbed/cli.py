"""benchbed: benchmark the representations that autoencoding generative models learn.

A suite (YAML) names a dataset, methods (objective, divergence, prior,
networks), a grid of latent sizes and seeds, metrics and leaderboards;
'benchbed run SUITE' trains and evaluates every run not done yet and writes
the suite's leaderboard. Every component comes from a plugin.

Exit codes: 0 success; 1 some runs failed (the rest finished; data a dataset
cannot find or read fails each run that needs it, with a message naming the
files); 2 bad input (a suite, a plugin); 130 interrupted by Ctrl-C, 143 by
SIGTERM (re-run to resume).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shlex
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

from benchbed import __version__
from benchbed.errors import BenchbedError, did_you_mean
from benchbed.files import as_no_space, is_no_space
from benchbed.paths import ENV_STORE, default_store

# The commands import the stages they use when they run, not here: processes
# that executors spawn re-import this module, and a queue manager must start
# without torch (the plugins and the worker import it).


SHORTHAND = "executor_flag_"  # argparse dest prefix of the flags executors declare


def _option_value(text: str) -> Any:
    """A command-line option value: JSON where it parses (2, true, {"a": 1}), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _executor_override(args: argparse.Namespace) -> dict[str, Any]:
    """The executor choices made on the command line (the suite may declare the rest);
    shorthand flags stay keyed "--FLAG" for ``resolve_executor`` to map."""
    override: dict[str, Any] = {} if args.executor is None else {"name": args.executor}
    for item in args.executor_opt or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise BenchbedError(f"--executor-opt {item!r}: write KEY=VALUE")
        override[key] = _option_value(value)
    for dest, value in vars(args).items():
        if dest.startswith(SHORTHAND) and value is not None:
            override["--" + dest[len(SHORTHAND):]] = value  # its param reads the text
    return override


def _executor_flags() -> dict[str, list[tuple[str, str, str]]]:
    """Each flag executors declare -> [(executor, param, its description)]."""
    from benchbed.plan.executor_spec import executor_flags
    from benchbed.plugin_api.registry import get_registry
    registry = get_registry()
    return {flag: [(name, param, registry.get("executor", name).cls.Params.model_fields[param].description
                    or "") for name, param in owners]
            for flag, owners in executor_flags(registry).items()}


def cmd_run(args: argparse.Namespace) -> int:
    from benchbed.plan.loaded import load
    from benchbed.run.progress import make_progress
    from benchbed.run.driver import run_suite

    # A bad store is named as the user gave it: the flag, the environment variable or the default.
    named = "--store" if args.store else f"${ENV_STORE}" if os.environ.get(ENV_STORE) else "the default store"
    report = run_suite(load(args.suite, args.profile), Path(args.store or default_store()),
                       _executor_override(args), make_progress(force_plain=args.plain),
                       Path(args.leaderboards), retry_failed=args.retry_failed, only=args.only,
                       rerun_published=args.rerun, wait=args.wait, store_named=named)
    elsewhere = f", {len(report.elsewhere)} running elsewhere" if report.elsewhere else ""
    broken = f" ({len(report.metric_failed)} with a failed metric)" if report.metric_failed else ""
    print(f"{report.finished} run(s) finished{broken}, {len(report.failed)} failed{elsewhere}, "
          f"{report.skipped} skipped as already done, in {report.seconds:.0f}s.")
    for name, reason in report.failed:
        print(f"  FAILED {name}: {reason}")
    for name, reason in report.metric_failed:
        print(f"  PARTLY FAILED {name}: {reason}")
    for name in report.elsewhere:
        print(f"  RUNNING ELSEWHERE {name}: another process is running it (--wait waits for it)")
    if report.problems:
        print(f"  {len(report.problems)} damaged record file(s) skipped (named above)")
    print(f"Leaderboard: {report.leaderboard or 'none (no current records yet)'}")
    return 1 if report.failed or report.metric_failed or report.problems else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from benchbed.plan.loaded import load
    from benchbed.suite.load import SuiteInvalid
    from benchbed.suite.source import load_raw, profile_names

    status = 0
    for file in args.suites:
        path = Path(file)
        try:
            raw = load_raw(path)  # once, for every profile
            profiles, default = profile_names(raw[0])
        except BenchbedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        # Every profile unless one is named: a typo in a profile other than the
        # default must not wait for the day someone runs it.
        chosen = [args.profile] if args.profile or not profiles else profiles
        if not args.profile and default is not None and default not in profiles:
            chosen = [None]  # the default_profile itself is wrong: say that
        seen: set[str] = set()  # a problem shared by several profiles is said once
        for profile in chosen:
            try:
                loaded = load(path, profile, raw=raw)
            except BenchbedError as exc:
                status = 2
                invalid = isinstance(exc, SuiteInvalid)
                fresh = [p for p in (exc.problems if invalid else [exc]) if str(p) not in seen]
                seen.update(map(str, fresh))
                if fresh:
                    print(f"error: {SuiteInvalid(str(path), fresh, exc.profile) if invalid else exc}",
                          file=sys.stderr)
                continue
            suite = loaded.suite
            print(f"{path}: ok (profile {suite.profile or 'default'}): {len(suite.methods)} methods, "
                  f"{len(loaded.runs)} runs, {len(suite.metrics)} metrics, {len(suite.leaderboards)} tables")
    return status


def _json(value: Any) -> str:
    """Standard JSON: a plugin's default of inf or nan is written as the string "inf" or "nan",
    since json.dumps would write Infinity and NaN, which editors and other JSON readers refuse."""
    def plain(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return json.dumps(plain(value), indent=2, default=str, allow_nan=False)


def cmd_schema(args: argparse.Namespace) -> int:
    from benchbed.suite.schema import suite_json_schema
    text = _json(suite_json_schema())
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def _described(reg: Any) -> dict[str, Any]:
    """One component as ``plugins --json -v`` and ``plugins --json NAME`` give it."""
    cls = reg.cls
    out: dict[str, Any] = {"kind": reg.kind, "name": reg.name, "class": f"{cls.__module__}.{cls.__qualname__}",
                           "summary": cls.summary(), "doc": inspect.cleandoc(cls.__doc__ or "")}
    if reg.kind == "objective":
        out["divergence"] = cls.describe_divergence()
    out["params"] = [{"name": info.alias or field, "required": info.is_required(),
                      "default": None if info.is_required() else info.get_default(call_default_factory=True),
                      "description": info.description or ""} for field, info in cls.Params.model_fields.items()]
    return out


def _show_component(registry, name: str, as_json: bool = False) -> int:
    found = [r for r in registry.all() if r.name == name]
    if not found:
        known = sorted({r.name for r in registry.all()})
        raise BenchbedError(f"no component named {name!r}{did_you_mean(name, known)}")
    if as_json:
        print(_json([{**_described(r), "source": str(r.source)} for r in found]))
        return 0
    for reg in found:
        print(f"{reg.kind} {reg.name}  ({reg.cls.__module__}.{reg.cls.__qualname__}, from {reg.source})")
        print(textwrap.indent(inspect.cleandoc(reg.cls.__doc__ or "(no documentation)"), "    "))
        _print_params(reg.kind, reg.cls, "    ", "parameters:")
        print()
    return 0


def _print_params(kind: str, cls: type, indent: str, title: str = "") -> None:
    if kind == "objective":
        print(f"{indent}divergence: {cls.describe_divergence()}")
    if title:
        print(indent + title)
    for field, info in cls.Params.model_fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        # One line each, whatever a plugin's description holds (a line break would break the listing).
        described = " ".join((info.description or "").split())
        print(f"{indent}{'  ' if title else ''}{info.alias or field} = {default}"
              + (f"  {described}" if described else ""))


def cmd_plugins(args: argparse.Namespace) -> int:
    from benchbed.plugin_api.registry import get_registry
    registry = get_registry()
    if args.name:
        return _show_component(registry, args.name, args.json)
    if args.json:
        out = [{"plugin": s.plugin, "distribution": s.distribution, "version": s.version,
                "registered": kinds} for s, kinds in registry.by_source().items()]
        if args.verbose:
            for entry in out:
                entry["components"] = [_described(registry.get(kind, name))
                                       for kind, names in entry["registered"].items() for name in names]
        print(_json(out))
        return 0
    for source, kinds in registry.by_source().items():
        print(f"{source.plugin}  [{source.distribution} {source.version}]")
        for kind, names in kinds.items():
            if args.verbose:
                for name in names:
                    cls = registry.get(kind, name).cls
                    print(f"  {kind} {name}" + (f": {cls.summary()}" if cls.summary() else ""))
                    _print_params(kind, cls, "      ")
            else:
                print(f"  {kind}: {', '.join(names)}")
    return 0


def _uninstalled_code(leaderboards: Path) -> list[str]:
    """Plugin distributions (and versions) that committed records name but this environment lacks."""
    from benchbed.plugin_api.registry import BUILTIN_DISTRIBUTION, get_registry
    installed = {s.distribution for s in get_registry().sources} | {BUILTIN_DISTRIBUTION}
    named = set()
    for path in leaderboards.glob("*/records/*.json"):
        try:
            code = json.loads(path.read_text()).get("config", {}).get("code", {})
        except (OSError, ValueError, AttributeError):
            continue  # a damaged record is reported where it is read
        if isinstance(code, dict):
            named |= {f"{d} {v}" for d, v in code.items() if d not in installed and not d.startswith("local ")}
    return sorted(named)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchbed.plan.loaded import load
    from benchbed.publish.records import records_dir
    from benchbed.suite.source import publish_name
    from benchbed.run.driver import build_leaderboard, check_output_folder
    from benchbed.suite.load import SuiteInvalid

    leaderboards = Path(args.leaderboards)
    try:
        loaded = load(args.suite, args.profile)
    except SuiteInvalid as exc:
        if any("unknown" in p.message for p in exc.problems):
            missing = _uninstalled_code(leaderboards)
            if missing:  # e.g. a plugin uninstalled after its runs were recorded
                print(f"note: records under {leaderboards} were made with {', '.join(missing)}, not installed "
                      "here; install it to rebuild their pages", file=sys.stderr)
        raise
    if leaderboards.exists():
        check_output_folder(leaderboards, "--leaderboards")
    board = build_leaderboard(loaded, leaderboards)
    for problem in board.bad:
        print(f"warning: {problem}", file=sys.stderr)
    if board.path is None:
        name = publish_name(loaded.suite.name, loaded.profile, loaded.default_profile)
        stale = (f" ({board.stale} stale, their settings then → now: {'; '.join(board.stale_why)})"
                 if board.stale else "")
        print(f"error: no usable records for {name} in {records_dir(leaderboards, name)}{stale}: "
              f"run `benchbed run {shlex.quote(args.suite)}"
              f"{f' --profile {shlex.quote(args.profile)}' if args.profile else ''}` first; no leaderboard "
              "written", file=sys.stderr)
        return 1
    print(f"wrote {board.path} from {board.records - board.stale} record(s)"
          + (f"; {board.stale} stale record(s) left out (their settings then → now: "
             f"{'; '.join(board.stale_why)})" if board.stale else "")
          + (f"; {len(board.bad)} damaged record file(s) skipped" if board.bad else ""))
    return 1 if board.bad else 0


def build_parser(executor_flags: dict[str, list[tuple[str, str, str]]] | None = None
                 ) -> argparse.ArgumentParser:
    """The parser; ``executor_flags`` (default: from the loaded plugins) are the
    ``run`` flags that executors declare."""
    if executor_flags is None:
        executor_flags = _executor_flags()
    parser = argparse.ArgumentParser(prog="benchbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"benchbed {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="also load this module as a plugin (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate a suite, then write its leaderboard")
    run.add_argument("suite")
    run.add_argument("--profile", help="the suite profile (default: the suite's default_profile)")
    run.add_argument("--store", help="run store (default: $BENCHBED_STORE or ./runs)")
    run.add_argument("--leaderboards", default="leaderboards", help="where leaderboards go")
    run.add_argument("--executor", help="executor plugin (default: the suite's executor, else local)")
    run.add_argument("--executor-opt", action="append", metavar="KEY=VALUE",
                     help="an option (param) of the executor; 'benchbed plugins EXECUTOR' lists them")
    for flag, owners in sorted(executor_flags.items()):
        said = "; ".join(f"{name}: {param}, {why}" if why else f"{name}: {param}"
                         for name, param, why in owners)
        run.add_argument(f"--{flag}", dest=SHORTHAND + flag, metavar="VALUE",
                         help=f"executor option shorthand ({said})")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    run.add_argument("--rerun", action="store_true",
                     help="repeat runs whose committed records under the leaderboards folder are "
                          "finished (default: they count as done); this store's own finished runs "
                          "are still skipped")
    run.add_argument("--only", nargs="+", metavar="METHOD", help="only these methods")
    run.add_argument("--plain", action="store_true", help="plain log lines even on a terminal")
    run.add_argument("--wait", action="store_true",
                     help="wait for runs another benchbed process is running (default: leave them "
                          "to it and say so)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check suites completely, without training")
    validate.add_argument("suites", nargs="+")
    validate.add_argument("--profile", help="check only this profile (default: every profile)")
    validate.add_argument("--all-profiles", action="store_true",
                          help="check every profile (the default; kept for old scripts)")
    validate.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="print the suite JSON Schema (for editors)")
    schema.add_argument("--output", "-o")
    schema.set_defaults(func=cmd_schema)

    plugins = sub.add_parser("plugins", help="list plugins and what they registered")
    plugins.add_argument("name", nargs="?", help="show one component's full documentation")
    plugins.add_argument("--verbose", "-v", action="store_true", help="with docs and params")
    plugins.add_argument("--json", action="store_true",
                         help="as JSON (with -v or NAME: each component's docs, params and, for an "
                              "objective, the divergences it takes)")
    plugins.set_defaults(func=cmd_plugins)

    board = sub.add_parser("leaderboard", help="rebuild a leaderboard from its records")
    board.add_argument("suite")
    board.add_argument("--profile", help="the profile whose page to rebuild (default: the suite's "
                                         "default_profile)")
    board.add_argument("--leaderboards", default="leaderboards",
                       help="the folder holding the pages and their records (default: leaderboards)")
    board.set_defaults(func=cmd_leaderboard)
    return parser


def _first_pass(argv: list[str] | None) -> argparse.Namespace:
    """--plugin and the command, before the full parser (whose ``run`` flags
    come from the plugins) is built."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    pre.add_argument("command", nargs="?")
    return pre.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    first = _first_pass(argv)
    if first.command != "run":
        # `benchbed plugins | head` ends quietly. Not for `run`: there a worker's
        # closed pipe must raise, not kill the driver without a word.
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        except (AttributeError, ValueError):
            pass
    previous = _stop_on_sigterm() if first.command == "run" else None
    try:
        if first.plugin:
            from benchbed.plugin_api.registry import ENV_PLUGINS, configure
            # Worker processes load plugins from the environment.
            existing = [m for m in os.environ.get(ENV_PLUGINS, "").split(",") if m]
            os.environ[ENV_PLUGINS] = ",".join(dict.fromkeys([*existing, *first.plugin]))
            configure()
        # Only `run` has executor flags: other commands do not load the plugins for them.
        args = build_parser(None if first.command == "run" else {}).parse_args(argv)
        return args.func(args)
    except (OSError, sqlite3.Error) as exc:
        if is_no_space(exc):
            print(f"error: {as_no_space(exc, getattr(args, 'store', '.'))}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError) and exc.filename:
            print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        raise
    except BenchbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _ignore_further_interrupts()
        print(f"\n{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: finished runs are "
              "kept, and an unfinished run resumes from its last checkpoint (each epoch end, or every "
              "training.checkpoint_every steps) when you run the same command again.", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:  # called in-process (tests, notebooks): leave no handler behind
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`), stopped the way Ctrl-C stops a run."""


def _stop_on_sigterm() -> Any:
    """Install the handler; the one it replaces (None: not the main thread)."""
    driver = os.getpid()

    def stop(signum, frame):
        if os.getpid() != driver:  # a forked worker inherited this: die as SIGTERM means
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):  # not the main thread
        return None


def _ignore_further_interrupts() -> None:
    """More Ctrl-C while we clean up and exit would only print tracebacks from
    exit handlers (multiprocessing's, say): the work is already stopped."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread
        pass


if __name__ == "__main__":
    sys.exit(main())
