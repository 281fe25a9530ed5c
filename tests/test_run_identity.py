"""A run's key holds exactly what changes its results; a metric result's identity
holds its resolved spec and every corruption it evaluates under."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import benchbed
from benchbed.cli import main
from benchbed.plan.runs import plan
from benchbed.plugin_api.registry import get_registry
from benchbed.run.store import metric_hashes
from benchbed.suite.load import load_suite

CORRUPTED_SUITE = """
name: ident
citation: "a test suite"
dataset: {name: digits}
methods:
  elbo:
    objective: {name: elbo}
    encoder: {name: mlp, hidden: [16]}
    decoder: {name: mlp, hidden: [16]}
grid: {latent_dim: [2], seed: [0]}
training: {epochs: 1, batch_size: 50}
corruptions:
  noisy: {name: gaussian_noise, sigma: 0.2}
metrics:
  logdet: {name: logdet_cov}
  figures: {name: figures, which: [corrupted_reconstructions]}
leaderboards:
  - id: t
    title: t
    columns:
      - {header: log-det/dim, metric: logdet, value: logdet_cov, better: closer_to_zero}
"""


def _keys(path) -> list[str]:
    return [run.key for run in plan(load_suite(path)[0], get_registry())]


def test_bumping_the_package_version_alone_keeps_every_key(tiny_suite, monkeypatch):
    before = _keys(tiny_suite)
    monkeypatch.setattr(benchbed, "__version__", "99.0.0")
    from benchbed.plugin_api import registry as plugins
    monkeypatch.setattr(plugins, "_REGISTRY", None)  # sources re-read the version
    assert _keys(tiny_suite) == before


def test_bumping_the_results_version_changes_every_built_in_key(tiny_suite, monkeypatch):
    before = _keys(tiny_suite)
    from benchbed.plan import runs as plan_module
    monkeypatch.setattr(plan_module, "RESULTS_VERSION", "99.0.0")
    after = _keys(tiny_suite)
    assert len(after) == len(before) and not set(after) & set(before)


def test_a_default_written_out_gives_the_same_key(tiny_suite):
    explicit = tiny_suite.read_text().replace("objective: {name: elbo}",
                                              "objective: {name: elbo, warmup_steps: 0}")
    before = _keys(tiny_suite)
    tiny_suite.write_text(explicit)
    assert _keys(tiny_suite) == before


def test_metric_specs_carry_their_defaults_and_the_corruptions_they_use(write_suite):
    run = plan(load_suite(write_suite(CORRUPTED_SUITE))[0], get_registry())[0]
    figures = run.evaluation["metrics"]["figures"]
    assert figures["grid"] == 10 and figures["conditions"] is None  # defaults filled in
    # conditions: None means every corruption of the suite, so it depends on all of them
    assert run.evaluation["conditions"] == {"logdet": [], "figures": ["noisy"]}


def test_changing_a_corruption_re_evaluates_every_metric_using_it(write_suite, tmp_path, capsys):
    path = write_suite(CORRUPTED_SUITE)
    before = metric_hashes(plan(load_suite(path)[0], get_registry())[0].evaluation)
    store = tmp_path / "store"
    args = ["run", str(path), "--store", str(store), "--leaderboards", str(tmp_path / "b"), "--plain"]
    assert main(args) == 0
    path.write_text(path.read_text().replace("sigma: 0.2", "sigma: 0.3"))
    after = metric_hashes(plan(load_suite(path)[0], get_registry())[0].evaluation)
    assert after["logdet"] == before["logdet"]
    assert after["figures"] != before["figures"]
    assert main(args) == 0
    (folder,) = [p for p in store.iterdir() if p.is_dir() and p.name != "cache"]
    log = (folder / "log.txt").read_text()
    assert log.count("training ") == 1  # the run key did not change
    assert log.count("metric figures (figures)") == 2 and log.count("metric logdet (logdet_cov)") == 1


LOCAL_PRIOR = '''
from benchbed import hookimpl
from benchbed_plugins.priors import NormalPrior

class Mine(NormalPrior):
    """A prior from a module named by --plugin, edited between two plans ({edit})."""

@hookimpl
def register_priors(register):
    register("mine", Mine)
'''


def _planned_with(module: Path, text: str, suite: Path) -> dict:
    """The suite's runs by method, planned with ``module`` (on sys.path) written as ``text`` and loaded
    by name, as --plugin would."""
    from benchbed.plugin_api import registry as plugins
    module.write_text(text)
    sys.modules.pop(module.stem, None)  # import the edited file, not the cached module
    importlib.invalidate_caches()
    registry = plugins.load_registry(extra_modules=[module.stem], autoload=False)
    return {run.method: run for run in plan(load_suite(suite, registry=registry)[0], registry)}


def test_editing_a_local_plugin_module_changes_the_key_of_every_run_using_it(write_suite, tmp_path,
                                                                             monkeypatch):
    suite = write_suite(CORRUPTED_SUITE.replace(
        "methods:\n", "methods:\n  mine:\n    objective: {name: elbo}\n    prior: {name: mine}\n"
        "    encoder: {name: mlp, hidden: [16]}\n    decoder: {name: mlp, hidden: [16]}\n"), "local.yaml")
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = []
    for edit in ["first", "second, longer"]:
        runs = _planned_with(tmp_path / "local_prior.py", LOCAL_PRIOR.format(edit=edit), suite)
        keys.append({m: r.key for m, r in runs.items()})
        code = runs["mine"].config["code"]
        assert code["local module local_prior"].startswith("sha256:") and "benchbed" in code
    sys.modules.pop("local_prior", None)
    assert keys[0]["mine"] != keys[1]["mine"] and keys[0]["elbo"] == keys[1]["elbo"]


LOCAL_DATA_AND_METRIC = '''
from benchbed import hookimpl
from benchbed_plugins.corruptions import GaussianNoise
from benchbed_plugins.datasets.digits import Digits
from benchbed_plugins.metrics.latent_metrics import LogDetCovariance

class MyDigits(Digits):
    """A dataset from a module named by --plugin, edited between two plans ({edit})."""

class MyLogDet(LogDetCovariance):
    """A metric from the same module."""

class MyNoise(GaussianNoise):
    """A corruption from the same module."""

@hookimpl
def register_datasets(register):
    register("my_digits", MyDigits)

@hookimpl
def register_metrics(register):
    register("my_logdet", MyLogDet)

@hookimpl
def register_corruptions(register):
    register("my_noise", MyNoise)
'''


def test_editing_a_plugin_dataset_retrains_and_a_plugin_metric_or_corruption_re_evaluates(
        write_suite, tmp_path, monkeypatch):
    suite = write_suite(CORRUPTED_SUITE.replace(
        "methods:\n", "methods:\n  mine:\n    objective: {name: elbo}\n    dataset: {name: my_digits}\n"
        "    encoder: {name: mlp, hidden: [16]}\n    decoder: {name: mlp, hidden: [16]}\n").replace(
        "  noisy: {name: gaussian_noise, sigma: 0.2}\n",
        "  noisy: {name: gaussian_noise, sigma: 0.2}\n  mine: {name: my_noise, sigma: 0.2}\n").replace(
        "  logdet: {name: logdet_cov}\n", "  logdet: {name: logdet_cov}\n  my_logdet: {name: my_logdet}\n"
        "  my_figures: {name: figures, which: [corrupted_reconstructions], conditions: [mine]}\n").replace(
        "which: [corrupted_reconstructions]}", "which: [corrupted_reconstructions], conditions: [noisy]}"),
        "local.yaml")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    for edit in ["first", "second, longer"]:
        runs = _planned_with(tmp_path / "local_data.py", LOCAL_DATA_AND_METRIC.format(edit=edit), suite)
        assert "local module local_data" in runs["mine"].config["code"]
        assert "local module local_data" not in runs["elbo"].config["code"]
        seen.append({m: (r.key, metric_hashes(r.evaluation)) for m, r in runs.items()})
    sys.modules.pop("local_data", None)
    (mine0, hashes0), (mine1, hashes1) = seen[0]["mine"], seen[1]["mine"]
    assert mine0 != mine1 and seen[0]["elbo"][0] == seen[1]["elbo"][0]  # only the plugin dataset's run
    for key in ("my_logdet", "my_figures"):  # the plugin metric; the built-in one under the plugin corruption
        assert seen[0]["elbo"][1][key] != seen[1]["elbo"][1][key]
    for key in ("logdet", "figures"):  # built-in metrics under built-in corruptions keep their hashes
        assert seen[0]["elbo"][1][key] == seen[1]["elbo"][1][key]


def test_a_page_of_runs_using_a_local_module_repeats_them_with_plugin(write_suite, tmp_path, monkeypatch):
    suite = write_suite(CORRUPTED_SUITE.replace(
        "methods:\n", "methods:\n  mine:\n    objective: {name: elbo}\n    prior: {name: mine}\n"
        "    encoder: {name: mlp, hidden: [16]}\n    decoder: {name: mlp, hidden: [16]}\n"), "local.yaml")
    (tmp_path / "local_prior.py").write_text(LOCAL_PRIOR.format(edit="first"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BENCHBED_PLUGINS", raising=False)
    boards = tmp_path / "b"
    assert main(["--plugin", "local_prior", "run", str(suite), "--only", "mine", "--store",
                 str(tmp_path / "s"), "--leaderboards", str(boards), "--plain"]) == 0
    sys.modules.pop("local_prior", None)
    page = (boards / "ident.md").read_text()
    assert "Repeat every run with `benchbed --plugin local_prior run local.yaml --rerun`" in page
