"""suite -> plan -> train -> evaluate -> record -> leaderboard, with nothing lost:
finished runs are skipped, a killed run resumes, a diverged run is recorded
as failed while the rest go on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from benchbed.cli import main
from conftest import TESTS, TINY_SUITE, run_cli

pytestmark = pytest.mark.slow  # trains suites end to end


def test_a_suite_runs_end_to_end_and_a_rerun_skips_finished_runs(tiny_suite, tmp_path, capsys):
    store, boards = tmp_path / "store", tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(store), "--leaderboards", str(boards)) == 0
    out = capsys.readouterr().out
    assert "2 run(s) finished, 0 failed, 0 skipped" in out
    records = sorted((boards / "tiny" / "records").glob("*.json"))
    assert [r.name for r in records] == ["elbo__z2__s0.json", "vimae_n__z2__s0.json"]
    page = (boards / "tiny.md").read_text()
    assert "| ELBO-VAE" in page and "(n=1)" in page and "## Provenance" in page
    run_dirs = [p for p in store.iterdir() if p.is_dir() and p.name != "cache"]
    for folder in run_dirs:
        for name in ("config.json", "metrics.json", "model.pt", "log.txt", "curves.csv", "status.json"):
            assert (folder / name).exists(), (folder, name)
        state = torch.load(folder / "model.pt", weights_only=True)
        assert "model" in state
    assert run_cli(str(tiny_suite), "--store", str(store), "--leaderboards", str(boards)) == 0
    assert "0 run(s) finished, 0 failed, 2 skipped" in capsys.readouterr().out


def test_committed_records_count_as_done_on_another_machine_unless_rerun(tiny_suite, tmp_path, capsys):
    """Runs resume across machines through git: a clone with the committed
    records and an empty store skips them; --rerun repeats them."""
    boards = tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "a"), "--leaderboards", str(boards)) == 0
    capsys.readouterr()
    records = {p.name: p.read_text() for p in (boards / "tiny" / "records").glob("*.json")}
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "b"), "--leaderboards", str(boards)) == 0
    assert "0 run(s) finished, 0 failed, 2 skipped" in capsys.readouterr().out
    assert not list((tmp_path / "b").glob("*/model.pt"))  # nothing was trained there
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "c"), "--leaderboards", str(boards),
                   "--rerun") == 0
    assert "2 run(s) finished, 0 failed, 0 skipped" in capsys.readouterr().out
    rerun = {p.name: p.read_text() for p in (boards / "tiny" / "records").glob("*.json")}
    assert rerun.keys() == records.keys()


def test_a_diverging_run_is_recorded_as_failed_and_the_others_go_on(write_suite, tmp_path, capsys,
                                                                    fresh_registry):
    suite = write_suite(TINY_SUITE.replace("objective: {name: vimae}",
                                           "objective: {name: explode_at, step: 5}"))
    boards = tmp_path / "boards"
    code = run_cli(str(suite), "--store", str(tmp_path / "s"), "--leaderboards", str(boards))
    out = capsys.readouterr().out
    assert code == 1
    assert "1 run(s) finished, 1 failed" in out
    assert "FAILED vimae_n z=2 seed=0: diverged: loss became nan" in out
    page = (boards / "tiny.md").read_text()
    [vimae_row] = [line for line in page.splitlines() if line.startswith("| VIMAE-n ")]
    assert vimae_row.split("|")[2].strip() == "failed"
    assert "failed: VIMAE-n z=2 seed=0: diverged" in page


def test_a_metric_added_later_evaluates_existing_runs_without_retraining(tiny_suite, tmp_path, capsys,
                                                                       monkeypatch):
    from benchbed.publish import provenance
    from benchbed.run import worker
    store, boards = tmp_path / "store", tmp_path / "b"
    monkeypatch.setattr(provenance, "git_commit", lambda: "aaaaaaaaaaaa")
    monkeypatch.setattr(worker, "git_commit", lambda: "aaaaaaaaaaaa")
    assert run_cli(str(tiny_suite), "--store", str(store), "--leaderboards", str(boards)) == 0
    assert "- git commit: aaaaaaaaaaaa (every run)" in (boards / "tiny.md").read_text()
    monkeypatch.setattr(provenance, "git_commit", lambda: "bbbbbbbbbbbb")
    monkeypatch.setattr(worker, "git_commit", lambda: "bbbbbbbbbbbb")
    with_mi = tiny_suite.read_text().replace("logdet: {name: logdet_cov}",
                                             "logdet: {name: logdet_cov}\n  mi: {name: mutual_info}")
    tiny_suite.write_text(with_mi)
    assert run_cli(str(tiny_suite), "--store", str(store), "--leaderboards", str(boards)) == 0
    for folder in (p for p in store.iterdir() if p.is_dir() and p.name != "cache"):
        log = (folder / "log.txt").read_text()
        assert log.count("training ") == 1, log
        assert "metric mi (mutual_info)" in log
    # the page names the commit that evaluated the new metric, and the training's
    record = json.loads((boards / "tiny" / "records" / "elbo__z2__s0.json").read_text())
    assert record["provenance"]["git_commit"] == "aaaaaaaaaaaa"
    assert record["provenance"]["evaluated"] == {"bbbbbbbbbbbb": ["mi"]}
    assert ("- git commit: bbbbbbbbbbbb (every run: trained at aaaaaaaaaaaa under the run keys "
            "bbbbbbbbbbbb plans; mi evaluated at bbbbbbbbbbbb on the stored weights of 2 runs)"
            in (boards / "tiny.md").read_text())


def test_the_leaderboard_rebuilds_byte_for_byte_from_records_alone(tiny_suite, tmp_path):
    store, boards = tmp_path / "store", tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(store), "--leaderboards", str(boards)) == 0
    first = (boards / "tiny.md").read_bytes()
    shutil.rmtree(store)
    (boards / "tiny.md").unlink()
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 0
    assert (boards / "tiny.md").read_bytes() == first


def test_records_of_an_older_config_or_of_a_run_no_longer_planned_are_named_stale(tiny_suite, tmp_path,
                                                                                 capsys):
    boards = tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "store"), "--leaderboards", str(boards)) == 0
    text = tiny_suite.read_text()
    tiny_suite.write_text(text.replace("    objective: {name: vimae}", "    objective: {name: vimae}\n    enabled: false"))
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 0
    page = (boards / "tiny.md").read_text()
    assert "**1 stale record(s) ignored**" in page and "vimae_n__z2__s0" in page
    assert ("1 stale record(s) left out (their settings then → now: 1 × a run the suite no longer plans)"
            in capsys.readouterr().out)
    # Every record stale (a longer training changes every key): the page stays as it was.
    tiny_suite.write_text(text.replace("training: {epochs: 2, batch_size: 50}", "training: {epochs: 3, batch_size: 50}"))
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 1
    err = capsys.readouterr().err
    assert "no usable records for tiny" in err and (boards / "tiny.md").read_text() == page
    assert "(2 stale, their settings then → now: 2 × training.epochs 2 → 3)" in err


def test_a_metric_the_suite_now_defines_otherwise_shows_no_old_value(tiny_suite, tmp_path):
    boards = tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "store"), "--leaderboards", str(boards)) == 0
    [before] = [line for line in (boards / "tiny.md").read_text().splitlines() if line.startswith("| ELBO-VAE")]
    tiny_suite.write_text(tiny_suite.read_text().replace("logdet: {name: logdet_cov}",
                                                         "logdet: {name: logdet_cov, codes: mean}"))
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 0
    page = (boards / "tiny.md").read_text()
    [after] = [line for line in page.splitlines() if line.startswith("| ELBO-VAE")]
    assert "—" not in before and "—" in after
    assert "**Values of an older metric spec left out**: logdet (2 records)" in page
    # running the suite evaluates it again on the stored weights, and the note goes
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "store"), "--leaderboards", str(boards)) == 0
    assert "older metric spec" not in (boards / "tiny.md").read_text()
    # the record's evaluation time is its own metrics', not the old spec's kept beside them
    from benchbed.plan.loaded import load
    from benchbed.publish.records import make_record
    from benchbed.run.store import Store, metric_hashes
    run = next(r for r in load(tiny_suite).runs if r.slug == "elbo__z2__s0")
    store = Store(tmp_path / "store")
    entries = json.loads((store.run_dir(run.key) / "metrics.json").read_text())
    [old] = [h for h in entries if h not in metric_hashes(run.evaluation).values()]
    entries[old]["seconds"] = 500.0
    (store.run_dir(run.key) / "metrics.json").write_text(json.dumps(entries))
    assert make_record(run, store)["eval_seconds"] < 500


def _suite_that_dies(write_suite, tmp_path, name):
    marker = tmp_path / f"{name}.died"
    return write_suite(
        TINY_SUITE.replace("objective: {name: vimae}",
                           f"objective: {{name: die_once_at, step: 30, marker: '{marker}'}}")
        .replace("training: {epochs: 2, batch_size: 50}",
                 "training: {epochs: 3, batch_size: 50, checkpoint_every: 10}"), f"{name}.yaml"), marker


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(write_suite, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "BENCHBED_PLUGINS": "benchbed_test_plugins"}
    suite, marker = _suite_that_dies(write_suite, tmp_path, "dies")
    cmd = [sys.executable, "-m", "benchbed.cli", "run", str(suite), "--plain", "--only", "vimae_n",
           "--store", str(tmp_path / "store"), "--leaderboards", str(tmp_path / "b")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 9 and marker.exists(), first.stderr
    [folder] = [p for p in (tmp_path / "store").iterdir() if p.is_dir() and p.name != "cache"]
    assert (folder / "checkpoint.pt").exists() and not (folder / "model.pt").exists()

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resuming from checkpoint" in second.stderr and "resumed at step 28" in second.stderr  # the epoch-end checkpoint

    # The same run never interrupted (the marker exists, so it does not die).
    reference = [*cmd[:-4], "--store", str(tmp_path / "ref"), "--leaderboards", str(tmp_path / "rb")]
    assert subprocess.run(reference, env=env, capture_output=True, timeout=300).returncode == 0
    [ref_folder] = [p for p in (tmp_path / "ref").iterdir() if p.is_dir() and p.name != "cache"]
    resumed = torch.load(folder / "model.pt", weights_only=True)["model"]
    uninterrupted = torch.load(ref_folder / "model.pt", weights_only=True)["model"]
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_parallel_jobs_give_the_same_records_as_one_job(tiny_suite, tmp_path):
    import json
    for jobs, name in ((1, "one"), (2, "two")):
        assert run_cli(str(tiny_suite), "--jobs", str(jobs), "--store", str(tmp_path / name),
                       "--leaderboards", str(tmp_path / f"b{name}")) == 0
    for record in ("elbo__z2__s0.json", "vimae_n__z2__s0.json"):
        one = json.loads((tmp_path / "bone" / "tiny" / "records" / record).read_text())
        two = json.loads((tmp_path / "btwo" / "tiny" / "records" / record).read_text())
        assert one["run_key"] == two["run_key"]
        # Thread counts differ (2 vs 1 per run), so compare to float tolerance.
        for metric, values in one["metrics"].items():
            for key, value in values.items():
                assert abs(value - two["metrics"][metric][key]) < 1e-3 * max(1, abs(value)), key


def test_a_run_whose_metric_failed_is_counted_as_the_page_shows_it(write_suite, tmp_path, capsys):
    suite = write_suite(TINY_SUITE.replace("  logdet: {name: logdet_cov}",
                                           "  logdet: {name: logdet_cov}\n  svm: {name: svm, labels: 100000}")
                        + "      - {header: SVM, metric: svm, value: accuracy/clean}\n")
    boards = tmp_path / "boards"
    code = run_cli(str(suite), "--store", str(tmp_path / "s"), "--leaderboards", str(boards), "--plain")
    out = capsys.readouterr()
    assert code == 1
    assert "2 run(s) finished (2 with a failed metric), 0 failed, 0 skipped" in out.out
    assert "  PARTLY FAILED elbo z=2 seed=0: metric svm failed: " in out.out
    assert "elbo z=2 seed=0: ran in " in out.err and ": finished in" not in out.err
    page = (boards / "tiny.md").read_text()
    assert row_cells(page, "ELBO-VAE")[-1] == "failed"  # the svm column; log-det is a number
    assert "- runs: 2 finished (2 with a failed metric: svm), 0 failed" in page


def row_cells(page, label):
    line = next(line for line in page.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_page_whose_plugin_was_uninstalled_says_which_distribution_its_records_name(tiny_suite, tmp_path,
                                                                                    capsys):
    boards = tmp_path / "boards"
    assert run_cli(str(tiny_suite), "--store", str(tmp_path / "store"), "--leaderboards", str(boards)) == 0
    [record] = [p for p in (boards / "tiny" / "records").glob("elbo*.json")]
    data = json.loads(record.read_text())
    data["config"]["code"]["benchbed-energy"] = "0.2.0"  # as if made with a plugin since uninstalled
    record.write_text(json.dumps(data))
    tiny_suite.write_text(tiny_suite.read_text().replace("objective: {name: elbo}", "objective: {name: energy_vae}"))
    assert main(["leaderboard", str(tiny_suite), "--leaderboards", str(boards)]) == 2
    err = capsys.readouterr().err
    assert "unknown objective 'energy_vae'" in err and "Traceback" not in err
    assert (f"note: records under {boards} were made with benchbed-energy 0.2.0, not installed here; install it "
            "to rebuild their pages") in err
