"""The ray executor: a suite on a Ray cluster gives the records it gives on one
machine, survives a dead worker node and a dead driver with nothing lost, and
ships run folders through the object store when workers do not share files.

The cluster is real (a head with no CPUs and two worker nodes of one CPU each,
separate raylet processes on this machine, from ``ray.cluster_utils``). This
module is also the plugin that gives the workers a slow objective and one that
is interrupted once: the workers import it through BENCHBED_PLUGINS, which the
executor forwards to them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from pydantic import Field

from benchbed import events, hookimpl
from benchbed_plugins.objectives import ELBO
from conftest import TESTS, TINY_SUITE, run_cli

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster, subprocesses

THIS_PLUGIN = "test_ray_executor"
MB = 1024 * 1024


# ------------------------------------------------ plugins the workers import


class SleepyElbo(ELBO):
    """The ELBO, sleeping ``pause`` seconds before each training step: a run
    long enough to kill something under it, without using the CPU."""

    class Params(ELBO.Params):
        pause: float = Field(0.1, ge=0, description="seconds slept per training step")

    def loss(self, model, x):
        if self.training and torch.is_grad_enabled():
            time.sleep(self.params.pause)
        return super().loss(model, x)


class InterruptOnceAt(ELBO):
    """The ELBO, but the first time training reaches step ``step`` it raises
    KeyboardInterrupt (Ctrl-C), leaving a marker so later attempts run through."""

    class Params(ELBO.Params):
        step: int = Field(35, ge=1)
        marker: str

    def loss(self, model, x):
        marker = Path(self.params.marker)
        if self.training and int(self.step) + 1 == self.params.step and not marker.exists():
            marker.write_text("interrupted")
            raise KeyboardInterrupt
        return super().loss(model, x)


@hookimpl
def register_objectives(register):
    register("sleepy_elbo", SleepyElbo)
    register("interrupt_once_at", InterruptOnceAt)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cluster():
    """A head (0 CPUs) and two worker nodes (1 CPU each) on this machine."""
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    # Workers inherit the raylets' environment: they must import this module.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved.get("PYTHONPATH")) if p)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway cluster: no token files
    temp = tempfile.mkdtemp(prefix="bbray", dir="/tmp")  # short: raylet socket paths are limited
    # Cluster() writes the head's address under $RAY_TMPDIR/ray whatever temp_dir
    # says, and fails where that folder does not exist yet (a fresh machine).
    os.environ["RAY_TMPDIR"] = temp
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    store = {"object_store_memory": 100 * MB}
    made = None
    try:
        made = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "temp_dir": temp, **store})
        for _ in range(2):
            made.add_node(num_cpus=1, **store)
        made.store_args = store
        yield made
    finally:
        if made is not None:
            made.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def with_plugin(monkeypatch):
    """The driver (this process) and, through the executor, the workers load this module."""
    from benchbed.plugin_api import registry as plugins

    monkeypatch.setenv(plugins.ENV_PLUGINS, THIS_PLUGIN)
    yield plugins.configure()
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    plugins.configure()


def records(boards: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((boards / "tiny" / "records").glob("*.json"))}


def run_folders(store: Path) -> list[Path]:
    return sorted(p for p in store.iterdir() if p.is_dir() and p.name != "cache")


def driver_command(suite: Path, store: Path, address: str, *opts: str) -> list[str]:
    return [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--plain", "--store", str(store),
            "--leaderboards", str(store.parent / f"{store.name}-boards"), "--executor", "ray",
            "--address", address, "--executor-opt", "status_every=1",
            *[arg for opt in opts for arg in ("--executor-opt", opt)]]


def driver_env() -> dict[str, str]:
    return {**os.environ, "BENCHBED_PLUGINS": THIS_PLUGIN}


class Driver:
    """A ``benchbed run`` subprocess whose stderr lines we can wait for."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, predicate, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("the driver ended or stalled:\n" + "".join(self.lines))
            time.sleep(0.1)

    def finish(self, timeout: float = 180) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.reader.join(timeout=5)
        return code, self.proc.stdout.read(), "".join(self.lines)


def count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


# --------------------------------------------------------------------- tests


def test_without_ray_installed_the_ray_executor_says_how_to_install_it(tiny_suite, tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = run_cli(str(tiny_suite), "--executor", "ray", "--store", str(tmp_path / "s"),
                   "--leaderboards", str(tmp_path / "b"))
    assert code == 2
    assert "pip install 'benchbed[ray]'" in capsys.readouterr().err


def test_ray_executor_options_are_validated_and_set_the_torch_threads(tiny_suite, tmp_path, capsys):
    from benchbed.plugin_api.registry import get_registry

    executor = get_registry().create("executor", {"name": "ray", "num_cpus": 2, "memory": "2GiB"})
    assert executor.threads_per_task() == 2
    assert int(executor.params.memory) == 2 * 1024 ** 3
    assert get_registry().create("executor", {"name": "ray", "num_cpus": 0.5}).threads_per_task() == 1
    where = ["--store", str(tmp_path / "s"), "--leaderboards", str(tmp_path / "b")]
    assert run_cli(str(tiny_suite), "--executor", "ray", "--executor-opt", "num_cpu=2", *where) == 2
    assert "does not take option 'num_cpu'" in capsys.readouterr().err
    assert run_cli(str(tiny_suite), "--executor", "ray", "--executor-opt", "num_cpus=0", *where) == 2
    assert "greater than 0" in capsys.readouterr().err


def _tiny_task(tmp_path: Path):
    """The tiny suite's ELBO run as a task, planned as the driver plans it."""
    from benchbed.plan.runs import plan
    from benchbed.plugin_api.registry import get_registry
    from benchbed.run.tasks import RunTask
    from benchbed.suite.load import load_suite

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SUITE.lstrip())
    suite, _ = load_suite(path, None, get_registry())
    run = next(r for r in plan(suite, get_registry()) if r.method == "elbo")
    run_dir = tmp_path / "store" / run.key
    run_dir.mkdir(parents=True)
    (tmp_path / "store" / "cache").mkdir()
    return RunTask(key=run.key, config={**run.config, "evaluation": run.evaluation}, run_dir=str(run_dir),
                   cache_dir=str(tmp_path / "store" / "cache"), threads=1, label=run.name)


def test_a_worker_without_the_drivers_files_ships_the_run_folder_back(tmp_path):
    from benchbed.run.tasks import unpack_dir
    from benchbed_plugins.executors.ray import run_on_worker

    torch.set_num_threads(1)
    task = _tiny_task(tmp_path)
    probe = tmp_path / "store" / "cache" / "probe"
    probe.write_text("the driver's token")
    # A probe with another token is what a worker on another machine sees: no file.
    outcome = run_on_worker(task, (str(probe), "a token this worker cannot read"), None, None)
    assert outcome.status == "finished", outcome.reason
    assert outcome.archive is not None
    assert list(Path(task.run_dir).iterdir()) == []  # nothing written where the driver keeps it
    unpack_dir(outcome.archive, tmp_path / "unpacked")
    shipped = {p.name for p in (tmp_path / "unpacked").iterdir()}
    assert {"model.pt", "metrics.json", "status.json", "curves.csv", "log.txt"} <= shipped
    assert json.loads((tmp_path / "unpacked" / "status.json").read_text())["status"] == "finished"

    # The same probe with the right token: the worker shares our files and writes in place.
    in_place = run_on_worker(task, (str(probe), "the driver's token"), None, None)
    assert in_place.status == "finished" and in_place.archive is None
    assert (Path(task.run_dir) / "model.pt").exists()
    assert in_place.metrics == outcome.metrics  # same seed, same thread count: the same run


def test_a_suite_on_a_ray_cluster_gives_the_same_records_as_the_local_executor(tiny_suite, tmp_path,
                                                                              cluster, capsys):
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "local"),
                   "--leaderboards", str(tmp_path / "blocal")) == 0
    capsys.readouterr()
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "ray"), "--leaderboards", str(tmp_path / "bray"),
                   "--executor", "ray", "--address", cluster.address,
                   "--executor-opt", "shared_filesystem=false") == 0
    out, err = capsys.readouterr()
    assert "2 run(s) finished, 0 failed, 0 skipped" in out
    assert "cluster: 0 pending, 0 running, 2 finished, 0 failed on 3 node(s), 2 CPU(s)" in err
    local, on_ray = records(tmp_path / "blocal"), records(tmp_path / "bray")
    assert sorted(local) == sorted(on_ray) == ["elbo__z2__s0.json", "vimae_n__z2__s0.json"]
    for name, one in local.items():
        two = on_ray[name]
        assert one["run_key"] == two["run_key"] and one["status"] == two["status"] == "finished"
        assert one["metrics"].keys() == two["metrics"].keys()
        # Thread counts differ (2 locally, 1 per Ray task), so compare to float tolerance.
        for metric, values in one["metrics"].items():
            for key, value in values.items():
                assert abs(value - two["metrics"][metric][key]) < 1e-3 * max(1, abs(value)), key
    # The run folders came back through the object store, whole.
    for folder in run_folders(tmp_path / "ray"):
        for name in ("config.json", "metrics.json", "model.pt", "log.txt", "curves.csv", "status.json"):
            assert (folder / name).exists(), (folder, name)
    assert not (tmp_path / "ray" / "cache" / ".ray-shared-probe").exists()


def test_a_resumed_run_gets_its_checkpoint_on_a_worker_that_does_not_share_files(write_suite, tmp_path,
                                                                                  cluster, with_plugin,
                                                                                  capsys):
    marker = tmp_path / "interrupted"
    suite = write_suite(TINY_SUITE.replace("objective: {name: vimae}",
                                           f"objective: {{name: interrupt_once_at, step: 35, "
                                           f"marker: '{marker}'}}"))
    store, boards = tmp_path / "store", tmp_path / "boards"
    # Ctrl-C on one machine at step 35: the epoch-end checkpoint (step 28) stays.
    assert run_cli(str(suite), "--only", "vimae_n", "--store", str(store), "--leaderboards", str(boards)) == 130
    [folder] = run_folders(store)
    assert (folder / "checkpoint.pt").exists() and not (folder / "model.pt").exists()
    capsys.readouterr()

    assert run_cli(str(suite), "--only", "vimae_n", "--store", str(store), "--leaderboards", str(boards),
                   "--executor", "ray", "--address", cluster.address,
                   "--executor-opt", "shared_filesystem=false") == 0
    out, err = capsys.readouterr()
    assert "1 run(s) finished, 0 failed" in out
    assert "resuming from checkpoint" in err and "resumed at step 28" in err
    # The worker replaced the checkpoint by the weights; the driver's folder mirrors that.
    assert (folder / "model.pt").exists() and not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"


# The tiny suite (2 epochs of 28 steps) with objectives that sleep PAUSE_A / PAUSE_B s a step.
SLOW_SUITE = TINY_SUITE.replace("objective: {name: elbo}", "objective: {name: sleepy_elbo, pause: PAUSE_A}") \
    .replace("objective: {name: vimae}", "objective: {name: sleepy_elbo, pause: PAUSE_B}")


def test_runs_on_one_cpu_workers_never_lend_their_cpu_to_extra_workers(write_suite, tmp_path, cluster,
                                                                      with_plugin):
    """A task that blocked on Ray (e.g. waiting to send progress) would hand its CPU
    back and Ray would start more worker processes than CPUs, each loading the data."""
    from benchbed.plan.loaded import load
    from benchbed.run.progress import PlainProgress
    from benchbed.run.driver import run_suite

    class Recorder(PlainProgress):
        def __init__(self):
            super().__init__(io.StringIO())
            self.events = []

        def on_event(self, event):
            self.events.append(event)

    # Four runs of 56 steps x 0.1 s on two one-CPU nodes.
    suite = write_suite(SLOW_SUITE.replace("PAUSE_A", "0.1").replace("PAUSE_B", "0.11")
                        .replace("seed: [0]", "seed: [0, 1]"))
    progress = Recorder()
    report = run_suite(load(suite), tmp_path / "store", {"name": "ray", "address": cluster.address},
                       progress, tmp_path / "boards")
    assert report.finished == 4 and not report.failed
    placed = [e for e in progress.events if isinstance(e, events.Placed)]
    assert len(placed) == 4
    assert len({e.pid for e in placed}) <= 2, placed
    # Progress reached the driver in order for each run: start, epochs, done.
    for key in {e.key for e in placed}:
        kinds = [type(e) for e in progress.events
                 if getattr(e, "key", None) == key and not isinstance(e, events.Stepped)]
        assert kinds == [events.Placed, events.Started, events.EpochEnded, events.EpochEnded,
                         events.Evaluating, events.Done], kinds


def test_killing_a_worker_node_mid_run_still_finishes_every_run(write_suite, tmp_path, cluster):
    # Two runs of ~8 s (56 steps x ~0.15 s), one per worker node.
    suite = write_suite(SLOW_SUITE.replace("PAUSE_A", "0.15").replace("PAUSE_B", "0.16"))
    store = tmp_path / "store"
    driver = Driver(driver_command(suite, store, cluster.address))
    # Both runs past their first epoch (checkpointed in the shared store), one on each node.
    driver.wait_for(lambda lines: count(lines, "epoch 1/2") == 2)
    victim = next(iter(cluster.worker_nodes))
    cluster.remove_node(victim, allow_graceful=False)  # raylet, workers and all
    try:
        code, out, err = driver.finish()
    finally:
        cluster.add_node(num_cpus=1, **cluster.store_args)  # for the tests after this one
    assert code == 0, err
    assert "2 run(s) finished, 0 failed" in out
    # The lost run started again on the surviving node, from its checkpoint.
    assert count(err.splitlines(), ": started") + count(err.splitlines(), "resuming from checkpoint") == 3, err
    assert "resumed at step" in err
    boards = records(store.parent / "store-boards")
    assert sorted(boards) == ["elbo__z2__s0.json", "vimae_n__z2__s0.json"]
    assert all(r["status"] == "finished" for r in boards.values())
    for folder in run_folders(store):
        assert json.loads((folder / "status.json").read_text())["status"] == "finished"
        assert (folder / "model.pt").exists() and not (folder / "checkpoint.pt").exists()


def test_killing_the_driver_and_running_again_does_only_the_missing_runs(write_suite, tmp_path, cluster):
    # A quick run and a slow one (56 steps x 0.1 s): kill the driver once the quick one is recorded.
    suite = write_suite(SLOW_SUITE.replace("PAUSE_A", "0").replace("PAUSE_B", "0.1"))
    store = tmp_path / "store"
    cmd = driver_command(suite, store, cluster.address, "shared_filesystem=false")
    first = Driver(cmd)
    first.wait_for(lambda lines: count(lines, "elbo z=2 seed=0: finished") == 1)
    first.proc.kill()
    first.finish()

    second = Driver(cmd)
    code, out, err = second.finish()
    assert code == 0, err
    assert "1 run(s) finished, 0 failed, 1 skipped as already done" in out
    boards = records(store.parent / "store-boards")
    assert sorted(boards) == ["elbo__z2__s0.json", "vimae_n__z2__s0.json"]
    assert all(r["status"] == "finished" for r in boards.values())
    for folder in run_folders(store):  # the quick run trained once, before the kill
        assert (folder / "log.txt").read_text().count("training ") == 1
