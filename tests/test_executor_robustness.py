"""The local executor and the run folder under stress: Ctrl-C with --jobs,
a worker killed mid-run, two processes on one run, and an exact resume when
training inputs are corrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import TESTS, TINY_SUITE, run_cli

pytestmark = pytest.mark.slow  # worker processes, killed and interrupted runs

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
       "BENCHBED_PLUGINS": "benchbed_test_plugins"}


def slow_suite(write_suite, pid_dir: Path, sleep: float, seeds: str = "[0, 1, 2]",
               name: str = "slow.yaml") -> Path:
    """TINY_SUITE with both methods on the slow ELBO: len(seeds) runs each."""
    def objective(sleep: float) -> str:
        return f"objective: {{name: slow_elbo, sleep: {sleep}, pid_dir: '{pid_dir}'}}"

    return write_suite(TINY_SUITE.replace("objective: {name: elbo}", objective(sleep))
                       .replace("objective: {name: vimae}", objective(sleep + 0.001))  # another key
                       .replace("seed: [0]", f"seed: {seeds}"), name)


def run_dirs(store: Path) -> list[Path]:
    return [p for p in store.iterdir() if p.is_dir() and p.name != "cache"] if store.exists() else []


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_with_jobs_stops_the_workers_and_starts_no_queued_run(write_suite, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    suite = slow_suite(write_suite, pid_dir, sleep=0.2)  # 6 runs of 56 steps, > 11 s each
    store, log_path = tmp_path / "store", tmp_path / "driver.log"
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--plain", "--jobs", "2",
           "--store", str(store), "--leaderboards", str(tmp_path / "b")]
    with open(log_path, "w") as log:
        # Ctrl-C at its default: under a background shell (nohup, `cmd &` in CI
        # scripts) SIGINT arrives ignored, and Python then keeps ignoring it.
        driver = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: driver.poll() is not None or (any(pid_dir.iterdir())
                                                        and "started" in log_path.read_text()),
                 120, "the first run to start")
        assert driver.poll() is None, log_path.read_text()
        workers = children(driver.pid) | {int(p.name) for p in pid_dir.iterdir()}
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        try:
            code = driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the driver did not stop within 60 s of Ctrl-C:\n" + log_path.read_text())
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    out = log_path.read_text()
    assert code == 130, out
    assert "interrupted" in out and "Traceback" not in out and "KeyboardInterrupt" not in out, out
    # None outlives the driver by more than a moment (multiprocessing's
    # resource tracker, say, ends when it reads EOF from the driver's pipe).
    wait_for(lambda: not [pid for pid in workers if alive(pid)], 10,
             f"the driver's processes to end; still alive: {[p for p in workers if alive(p)]}\n{out}")
    folders = run_dirs(store)
    assert len(folders) == 6
    # The driver prepares every folder (config.json); a worker writes log.txt
    # when it begins a run. Only the two runs in flight at Ctrl-C had begun.
    begun = [f for f in folders if (f / "log.txt").exists()]
    assert 1 <= len(begun) <= 2, out
    assert not [f for f in folders if (f / "status.json").exists()], out
    time.sleep(1.0)
    assert [f for f in folders if (f / "log.txt").exists()] == begun  # and nothing began later


def test_a_killed_worker_is_replaced_and_every_run_finishes(write_suite, tmp_path, capsys,
                                                           fresh_registry):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    suite = slow_suite(write_suite, pid_dir, sleep=0.03)  # 3 runs of elbo, ~2 s each
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid_file in pid_dir.iterdir():
                pid = int(pid_file.name)
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)  # mid-run: its first step is under way
                    killed.append(pid)
                    break
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    store = tmp_path / "store"
    code = run_cli(str(suite), "--only", "elbo", "--jobs", "2", "--store", str(store),
                   "--leaderboards", str(tmp_path / "b"))
    killer.join(timeout=5)
    out = capsys.readouterr()
    assert killed, "no worker was killed"
    assert code == 0, out.err
    assert "3 run(s) finished, 0 failed" in out.out, out
    for folder in run_dirs(store):
        assert json.loads((folder / "status.json").read_text())["status"] == "finished"


def test_a_run_that_always_kills_its_worker_fails_after_the_bounded_retries(write_suite, tmp_path,
                                                                           capsys, fresh_registry):
    suite = write_suite(TINY_SUITE.replace("objective: {name: elbo}", "objective: {name: die_at, step: 3}"))
    code = run_cli(str(suite), "--only", "elbo", "--jobs", "2", "--executor-opt", "max_worker_deaths=1",
                   "--store", str(tmp_path / "store"), "--leaderboards", str(tmp_path / "b"))
    out = capsys.readouterr()
    assert code == 1, out.err
    assert "worker process died 2 times" in out.out + out.err, out
    [folder] = run_dirs(tmp_path / "store")
    assert (folder / "log.txt").read_text().count("training ") == 2  # tried twice, no more


class _DiesWhenUnpickled:
    """Kills the worker that unpickles it: before it begins any run."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_workers_dying_before_beginning_any_run_stop_the_suite_and_fail_no_run(tmp_path):
    from benchbed.errors import BenchbedError
    from benchbed.run.tasks import RunTask
    from benchbed_plugins.executors.local import LocalExecutor

    task = RunTask(key="k", config={"poison": _DiesWhenUnpickled()}, run_dir=str(tmp_path / "k"),
                   cache_dir=str(tmp_path), threads=1)
    outcomes = []
    with pytest.raises(BenchbedError, match="2 time.* in a row before beginning a run"):
        for outcome in LocalExecutor(jobs=2, max_worker_deaths=1).run([task], lambda event: None):
            outcomes.append(outcome)  # noqa: PERF402
    assert outcomes == []  # retried (a bounded number of times), never reported failed


def _task(suite_path: Path, store: Path, method: str):
    from benchbed.plan.runs import plan
    from benchbed.plugin_api.registry import get_registry
    from benchbed.run.tasks import RunTask
    from benchbed.suite.load import load_suite

    registry = get_registry()
    suite, _ = load_suite(suite_path, None, registry)
    [run] = [r for r in plan(suite, registry) if r.method == method]
    return RunTask(key=run.key, config={**run.config, "evaluation": run.evaluation},
                   run_dir=str(store / run.key), cache_dir=str(store / "cache"), threads=1,
                   label=run.name)


def test_a_run_another_process_is_running_is_skipped_untouched(tiny_suite, tmp_path):
    from benchbed.run.worker import execute

    task = _task(tiny_suite, tmp_path / "store", "elbo")
    folder = Path(task.run_dir)
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True)\n"
         "time.sleep(60)", str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = execute(task)
        assert (outcome.status, outcome.reason) == ("skipped", "another process is running this run")
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert execute(task).status == "finished"  # the lock dies with its holder


def test_concurrent_json_writers_never_collide(tmp_path):
    from benchbed.run.store import read_json, write_json

    path = tmp_path / "status.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(300):
                write_json(path, {"writer": n, "i": i, "pad": "x" * 20_000})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert read_json(path)["i"] == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temp files left


CORRUPTED = TINY_SUITE + """
corruptions:
  noise: {name: gaussian_noise, sigma: 0.3}
"""


def _corrupted_suite(write_suite, tmp_path, name: str, objective: str) -> Path:
    return write_suite(
        CORRUPTED.replace("objective: {name: vimae}", objective)
        .replace("training: {epochs: 2, batch_size: 50}",
                 "training: {epochs: 2, batch_size: 50, checkpoint_every: 10, corruption: noise}"),
        f"{name}.yaml")


def test_a_run_interrupted_mid_epoch_with_a_training_corruption_resumes_exactly(
        write_suite, tmp_path, capsys, fresh_registry):
    marker = tmp_path / "interrupted"
    suite = _corrupted_suite(write_suite, tmp_path, "noisy",
                             f"objective: {{name: interrupt_once_at, step: 25, marker: '{marker}'}}")
    args = [str(suite), "--only", "vimae_n"]
    store = ["--store", str(tmp_path / "store"), "--leaderboards", str(tmp_path / "b")]
    assert run_cli(*args, *store) == 130 and marker.exists()
    [folder] = run_dirs(tmp_path / "store")
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["batch"]) == (20, 20)  # mid-epoch (28 batches an epoch)
    assert run_cli(*args, *store) == 0
    assert "resumed at step 20" in capsys.readouterr().err

    # The same run never interrupted (the marker exists now).
    assert run_cli(*args, "--store", str(tmp_path / "ref"), "--leaderboards", str(tmp_path / "rb")) == 0
    [ref_folder] = run_dirs(tmp_path / "ref")
    assert ref_folder.name == folder.name
    resumed = torch.load(folder / "model.pt", weights_only=True)["model"]
    uninterrupted = torch.load(ref_folder / "model.pt", weights_only=True)["model"]
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    # The logged row the kill cut in two (steps 1-20 before it, 21-50 after) is the same row.
    assert (folder / "curves.csv").read_text() == (ref_folder / "curves.csv").read_text()


def test_a_checkpoint_without_the_new_rng_fields_still_resumes(write_suite, tmp_path, fresh_registry):
    marker = tmp_path / "interrupted"
    suite = _corrupted_suite(write_suite, tmp_path, "old",
                             f"objective: {{name: interrupt_once_at, step: 15, marker: '{marker}'}}")
    args = [str(suite), "--only", "vimae_n", "--store", str(tmp_path / "s"),
            "--leaderboards", str(tmp_path / "b")]
    assert run_cli(*args) == 130
    [folder] = run_dirs(tmp_path / "s")
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    for key in ("generator", "cuda_rng", "running"):
        state.pop(key)
    torch.save(state, folder / "checkpoint.pt")  # as older versions wrote it
    assert run_cli(*args) == 0
    assert (folder / "model.pt").exists()


def test_threads_per_job_follow_the_cpu_affinity_not_the_machine(monkeypatch):
    from benchbed_plugins.executors.local import LocalExecutor

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert LocalExecutor(jobs=2).threads_per_task() == 2
    assert LocalExecutor(jobs=8).threads_per_task() == 1
    assert LocalExecutor(jobs=1).threads_per_task() == 4
    # A shared machine: OMP_NUM_THREADS caps what the runs take together.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert LocalExecutor(jobs=1).threads_per_task() == 2
    assert LocalExecutor(jobs=2).threads_per_task() == 1


BROKEN_EXECUTOR = '''
from typing import Literal
from benchbed import hookimpl
from benchbed.plugin_api.components import Executor, Params
from benchbed.run.worker import execute

class Broken(Executor):
    """Runs tasks in this process, breaking its contract as told."""
    class Params(Params):
        mode: Literal["raise", "none", "drop", "dup"] = "raise"

    def run(self, tasks, on_event):
        for i, task in enumerate(tasks):
            if self.params.mode == "raise":
                raise RuntimeError("lost its cluster")
            if self.params.mode == "none":
                yield None
                continue
            if self.params.mode == "drop" and i == 0:
                continue
            outcome = execute(task, on_event)
            yield outcome
            if self.params.mode == "dup":
                yield outcome

@hookimpl
def register_executors(register):
    register("broken", Broken)
'''


@pytest.mark.parametrize("mode, code, said", [
    ("raise", 1, "executor 'broken' failed: RuntimeError: lost its cluster"),
    ("none", 1, "executor 'broken' reported None, which is not the TaskOutcome of a task it was given"),
    ("drop", 1, "executor 'broken' never reported it (nothing recorded: run again to do it)"),
    ("dup", 0, "executor 'broken' reported elbo z=2 seed=0 twice; the second report is ignored"),
])
def test_an_executor_plugin_that_breaks_its_contract_is_named_and_counts_stay_true(
        mode, code, said, tiny_suite, tmp_path, monkeypatch, capsys):
    from benchbed.cli import main
    (tmp_path / "broken_executor.py").write_text(BROKEN_EXECUTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCHBED_PLUGINS", "")
    try:
        rc = main(["--plugin", "broken_executor", "run", str(tiny_suite), "--store", str(tmp_path / "s"),
                   "--leaderboards", str(tmp_path / "b"), "--executor", "broken", "--executor-opt",
                   f"mode={mode}", "--plain"])
    finally:
        from benchbed.plugin_api import registry
        registry.configure()
    out = capsys.readouterr()
    assert "Traceback" not in out.err and rc == code
    assert said in out.out + out.err
    if mode == "dup":
        assert "2 run(s) finished" in out.out and "[3/2]" not in out.out + out.err
