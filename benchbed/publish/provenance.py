"""Where and with what a run was trained, and the leaderboard footer that
says so: one commit (or a loud warning), the code versions, the machines
and the machine-hours, and what repeats where."""

from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import benchbed
from benchbed.publish.records import shown_not_finite


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' if n != 1 else ''}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The benchbed checkout's commit (with '+dirty' for changed tracked files
    outside leaderboards/, which a run itself writes), when run from one."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)leaderboards"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device, threads: int) -> str:
    import torch
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{cpu_model()}, {_count(threads, 'torch thread')}"


def provenance(device, threads: int) -> dict[str, Any]:
    import torch
    return {
        "benchbed": benchbed.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "hardware": hardware(device, threads),
        "threads": threads,
        "git_commit": git_commit(),
        "finished": utc_minute(),
    }


def utc_minute() -> str:
    """Now, as records write times: sortable, to the minute."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------ footer

THREADS = re.compile(r"(\d+) torch threads?\b")


def _prov(record: dict[str, Any]) -> dict[str, Any]:
    """The run's provenance: {} for a run that failed before training (or a hand-made record)."""
    return record.get("provenance") or {}


def _seen(records: list[dict[str, Any]], key: str) -> list[str]:
    """The distinct values of a provenance field over the runs, sorted."""
    return sorted({str(value) for r in records if (value := _prov(r).get(key))})


def threads_of(record: dict[str, Any]) -> int | None:
    """The run's torch threads: recorded since 0.1, else read from 'hardware'."""
    prov = _prov(record)
    if isinstance(prov.get("threads"), int):
        return prov["threads"]
    match = THREADS.search(str(prov.get("hardware") or ""))
    return int(match.group(1)) if match else None


def machine_of(record: dict[str, Any]) -> str:
    """CPU model (or GPU) with threads, and the torch version: what a number's
    bits depend on besides the code and the seed."""
    prov = _prov(record)
    return f"{prov.get('hardware') or 'unknown hardware'}, torch {prov.get('torch') or 'unknown'}"


def _seconds(record: dict[str, Any]) -> float:
    return (record.get("train_seconds") or 0.0) + (record.get("eval_seconds") or 0.0)


def commit_lines(records: list[dict[str, Any]]) -> list[str]:
    """One clean commit, named; anything else, a warning that says what is wrong.

    A metric added to a suite after its runs were trained is evaluated on the
    stored weights (the run key, and so the training, is unchanged): the page
    then names the commit that evaluated it, and the training's beside it."""
    provs = [_prov(r) for r in records]
    commits = Counter(str(p.get("git_commit") or "unknown") for p in provs)
    later: dict[str, set[str]] = {}
    later_runs: Counter = Counter()
    when: dict[str, str] = {}  # a later evaluation's commit -> when it last ran (older records kept no time)
    for p in provs:
        for commit, keys in (p.get("evaluated") or {}).items():
            later.setdefault(str(commit), set()).update(keys)
            later_runs[str(commit)] += 1
        for commit, time in (p.get("evaluated_finished") or {}).items():
            when[str(commit)] = max(when.get(str(commit), ""), str(time))
    if not commits:
        return ["- git commit: none (no runs)"]
    clean = all(not c.endswith("+dirty") and c != "unknown" for c in [*commits, *later])
    if clean and len(commits) == 1 and len(later) <= 1:
        trained = next(iter(commits))
        if not later:
            return [f"- git commit: {trained} (every run)"]
        evaluated = next(iter(later))
        return [f"- git commit: {evaluated} (every run: trained at {trained} under the run keys "
                f"{evaluated} plans; {', '.join(sorted(later[evaluated]))} evaluated at {evaluated} "
                f"on the stored weights of {_count(later_runs[evaluated], 'run')})"]
    # Runs added to a suite later (or whose settings changed) are trained at a later commit. The
    # page's runs all have the keys the suite plans now, and a change to built-in code that moves
    # results bumps every key (RESULTS_VERSION), so the latest commit repeats every run.
    finished: dict[str, str] = {}
    for p in provs:
        commit = str(p.get("git_commit") or "unknown")
        finished[commit] = max(finished.get(commit, ""), str(p.get("finished") or ""))
    order = sorted(commits, key=lambda c: finished[c])
    # The latest must be known: every commit with a finish time, the last one alone at its minute.
    known = all(finished.values()) and len({finished[c] for c in order[-2:]}) == 2
    # Metrics evaluated later at other commits: the latest commit's own runs were evaluated under every
    # metric spec the page shows; with no later evaluation of theirs, no spec changed after it.
    latest_evaluated_later = known and any(p.get("evaluated") for p in provs
                                           if str(p.get("git_commit")) == order[-1])
    # A later evaluation that says when it ran, after every training and every other timed evaluation:
    # its commit plans every run key and metric spec the page shows (an untimed one is older still).
    timed = sorted((when[c], c) for c in later if c in when)
    evaluated_last = (known and timed and timed[-1][0] > finished[order[-1]]
                      and (len(timed) == 1 or timed[-2][0] < timed[-1][0]))
    if clean and known and (evaluated_last or (len(commits) > 1 and not latest_evaluated_later)):
        latest = timed[-1][1] if evaluated_last else order[-1]
        trained = " and ".join(f"{c} ({_count(commits[c], 'run')})" for c in order)
        evaluated = "".join(f"; {', '.join(sorted(later[c]))} evaluated at {c} on the stored weights of "
                            f"{_count(later_runs[c], 'run')}" for c in sorted(later))
        planned = "the run keys and metric specs" if later else "the run keys"
        return [f"- git commit: {latest} (every run under {planned} {latest} plans: trained at {trained}"
                f"{evaluated})"]
    dirty = sum(1 for p in provs if str(p.get("git_commit")).endswith("+dirty")
                or any(str(c).endswith("+dirty") for c in (p.get("evaluated") or {})))
    unknown = sum(1 for p in provs if not p.get("git_commit") or "unknown" in (p.get("evaluated") or {}))
    problems = []
    if len(commits) > 1:
        problems.append(f"the runs come from {len(commits)} different commits")
    if len(later) > 1 or (later and len(commits) > 1):
        problems.append(f"metrics were evaluated later at {_count(len(later), 'commit')}")
    if dirty:
        problems.append(f"{dirty} of {len(records)} runs from a checkout with uncommitted changes (+dirty)")
    if unknown:
        problems.append(f"{unknown} of {len(records)} runs name no commit for their training or a later evaluation")
    listed = ", ".join(f"{c} ({_count(n, 'run')})" for c, n in sorted(commits.items()))
    if later:
        listed += "; evaluated later: " + ", ".join(
            f"{c} ({', '.join(sorted(later[c]))}; {_count(n, 'run')})"
            for c, n in sorted(later_runs.items()))
    return [f"- **WARNING: not published from one clean commit**: {'; '.join(problems)}. "
            "The code that produced these numbers cannot be checked out; rerun the suite from one "
            f"clean commit before citing them. Commits: {listed}."]


def code_lines(records: list[dict[str, Any]]) -> list[str]:
    """Every distribution (benchbed and plugin packages) and version that produced the runs."""
    versions: dict[str, set[str]] = {}
    for r in records:
        code = (r.get("config") or {}).get("code") or {"benchbed": _prov(r).get("benchbed")}
        for dist, version in code.items():
            versions.setdefault(dist, set()).add(str(version))
    if not versions:
        return ["- code: unknown"]
    listed = ", ".join(f"{d} {' and '.join(sorted(v))}" for d, v in sorted(versions.items()))
    line = f"- code: {listed} (the distributions that provided the runs' components)"
    mixed = sorted(d for d, v in versions.items() if len(v) > 1)
    if mixed:
        line += f". **WARNING: runs of several versions of {', '.join(mixed)} are mixed here.**"
    pythons, platforms = ", ".join(_seen(records, "python")), ", ".join(_seen(records, "platform"))
    return [line, f"- Python {pythons or 'unknown'} on {platforms or 'unknown'}"]


def machine_lines(records: list[dict[str, Any]]) -> list[str]:
    """Each machine with its runs, their times and machine-hours (seconds x threads)."""
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_machine.setdefault(machine_of(r), []).append(r)
    lines, total, unknown = [], 0.0, 0
    for machine, runs in sorted(by_machine.items()):
        train = sum(r.get("train_seconds") or 0.0 for r in runs)
        evaluate = sum(r.get("eval_seconds") or 0.0 for r in runs)
        hours = 0.0
        for r in runs:
            threads = threads_of(r)
            unknown += threads is None
            hours += _seconds(r) * (threads or 1) / 3600
        total += hours
        lines.append(f"- machine: {machine}: {_count(len(runs), 'run')}, "
                     f"{train / 60:.1f} min training + {evaluate / 60:.1f} min evaluation, "
                     f"{hours:.2f} machine-hours")
    note = f"; {unknown} run(s) with unknown threads counted as 1" if unknown else ""
    lines.append(f"- total: {total:.2f} machine-hours (training + evaluation seconds × torch threads, "
                 f"summed over runs{note}); every time above is of the machine it names")
    return lines


def provenance_footer(records: list[dict[str, Any]], profile: str | None, missing: int = 0,
                      shown: set[tuple[str, str]] = frozenset()) -> list[str]:
    """``shown``: the values the page reads (``Suite.shown_values``); a run whose metric returned one as
    nan or inf counts as one with a failed metric, as its cell does."""
    finished = [r for r in records if r.get("status") == "finished"]
    failed = {id(r): {*r.get("metric_errors", {}), *(m for m, _ in shown_not_finite(r, shown))}
              for r in finished}
    broken = [r for r in finished if failed[id(r)]]
    metrics = ", ".join(sorted({m for r in broken for m in failed[id(r)]}))
    # A run that failed before training has no provenance and no numbers: it names no commit.
    ran = [r for r in records if r.get("provenance") or r.get("status") != "failed"]
    dates = sorted(r["provenance"]["finished"] for r in records if _prov(r).get("finished"))
    return [
        "## Provenance", "",
        f"- profile: {profile or 'default'}",
        f"- runs: {len(finished)} finished"
        + (f" ({len(broken)} with a failed metric: {metrics})" if broken else "")
        + f", {len(records) - len(finished)} failed"
        + (f", {missing} not run yet" if missing > 0 else ""),
        *commit_lines(ran),
        *code_lines(records),
        *machine_lines(ran),
        f"- trained: {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}",
        "- what repeats where: the numbers repeat bit for bit only on the same CPU kind, torch "
        "thread count and torch version as the machine(s) above, with the same code and seeds; "
        "anywhere else they repeat only within the seed spread (each cell's ±), and times differ "
        "with the machine.",
        "",
    ]
