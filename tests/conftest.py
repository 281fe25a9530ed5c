"""Shared fixtures. Data-heavy fixtures live in the test files that use them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# The small plugins the harness tests train with (exploding and dying objectives).
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


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
