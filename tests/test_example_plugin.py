"""The third-party example plugin (examples/benchbed-energy) that CONTRIBUTING walks through.

Its energy distance is checked against naive loops and Gaussian closed forms;
then the package is really installed with pip into a folder of its own and
the ``benchbed`` command, run as a user would, finds it through its entry
point and trains a suite with it. The tutorial's code blocks must be the
package's files, character for character.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from benchbed import testing
from benchbed.cli import main
from benchbed.plan.loaded import load
from conftest import REPO

PACKAGE = REPO / "examples" / "benchbed-energy"
TUTORIAL = REPO / "CONTRIBUTING.md"
SUITE = PACKAGE / "energy-quick.yaml"


@pytest.fixture
def energy(monkeypatch):
    """The plugin's module, imported from its source folder (no install needed for the maths)."""
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    import benchbed_energy.divergence as module
    return module


# --------------------------------------------------------------- the maths


def naive_energy(x, y, exponent, unbiased):
    """2 E|X-Y|^b - E|X-X'|^b - E|Y-Y'|^b with explicit loops over pairs of rows."""
    def dist(a, b):
        return math.sqrt(sum((float(ai) - float(bi)) ** 2 for ai, bi in zip(a, b))) ** exponent

    def within(s):
        pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if not (unbiased and i == j)]
        return sum(dist(s[i], s[j]) for i, j in pairs) / len(pairs)

    between = sum(dist(a, b) for a in x for b in y) / (len(x) * len(y))
    return 2 * between - within(x) - within(y)


def mean_abs_normal(mu, var):
    """E|N(mu, var)| (the folded normal's mean)."""
    sd = math.sqrt(var)
    return sd * math.sqrt(2 / math.pi) * math.exp(-mu ** 2 / (2 * var)) + mu * math.erf(mu / (sd * math.sqrt(2)))


def mean_distance_of_two_standard_normals(dim):
    """E|X - X'| for X, X' ~ N(0, I_dim): sqrt(2) times the chi mean sqrt(2) G((d+1)/2) / G(d/2)."""
    return 2 * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("exponent", [1.0, 0.5, 1.7])
def test_energy_distance_equals_the_naive_double_loop(energy, estimator, exponent):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(30, 3, generator=gen, dtype=torch.float64) * 1.3 + 0.4
    z0 = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    prior = testing.FixedSamplesPrior(z0)
    value = energy.EnergyDistance(estimator=estimator, exponent=exponent)(testing.point_codes(z, prior))
    assert prior.asked == [(30, 3)]  # one prior sample per code, in the latent size
    assert float(value) == pytest.approx(naive_energy(z, z0, exponent, estimator == "unbiased"), rel=1e-10)


def test_unbiased_energy_distance_has_zero_mean_when_q_equals_p(energy):
    # 4000 batches of 20 vs 20 points from N(0, I_4): the biased estimate should sit at
    # its closed-form bias 2 E|X - X'| / n, the unbiased one at 0.
    n, dim, batches = 20, 4, 4000
    gen = torch.Generator().manual_seed(0)
    unbiased, biased = [], []
    for _ in range(batches):
        z, z0 = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
        unbiased.append(float(energy.energy_distance(z, z0, unbiased=True)))
        biased.append(float(energy.energy_distance(z, z0, unbiased=False)))
    u = torch.tensor(unbiased, dtype=torch.float64)
    stderr = float(u.std() / math.sqrt(batches))
    assert abs(float(u.mean())) < 4 * stderr
    bias = 2 * mean_distance_of_two_standard_normals(dim) / n
    b = torch.tensor(biased, dtype=torch.float64)
    assert float(b.mean()) == pytest.approx(bias, abs=4 * float(b.std()) / math.sqrt(batches))
    assert (b >= -1e-6).all()  # the V-statistic is never negative


@pytest.mark.parametrize("shift", [0.5, 2.0])
def test_energy_distance_is_positive_under_a_shift_and_matches_the_gaussian_closed_form(energy, shift):
    # 1-D, q = N(shift, 1), p = N(0, 1): X - Y ~ N(shift, 2) and X - X' ~ N(0, 2), so
    # D = 2 E|N(shift, 2)| - 2 E|N(0, 2)|.
    expected = 2 * mean_abs_normal(shift, 2.0) - 2 * mean_abs_normal(0.0, 2.0)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3000, 1, generator=gen, dtype=torch.float64) + shift
    z0 = torch.randn(3000, 1, generator=gen, dtype=torch.float64)
    value = float(energy.EnergyDistance()(testing.point_codes(z, testing.FixedSamplesPrior(z0))))
    assert value > 0
    assert value == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_energy_distance_is_the_mmd_of_the_distance_induced_kernel(energy, estimator):
    # k(a, b) = |a|^b + |b|^b - |a - b|^b, fed to benchbed's own MMD estimator (built-in code).
    from benchbed_plugins.divergences.kernels import mmd_from_kernels
    b = 0.8
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(25, 3, generator=gen, dtype=torch.float64) * 0.7
    y = torch.randn(25, 3, generator=gen, dtype=torch.float64) + 0.3

    def kernel(a, c):
        return (a.norm(dim=1)[:, None] ** b + c.norm(dim=1)[None, :] ** b
                - (a[:, None, :] - c[None, :, :]).norm(dim=2) ** b)

    mmd = mmd_from_kernels(kernel(x, x), kernel(y, y), kernel(x, y), unbiased=estimator == "unbiased")
    value = energy.energy_distance(x, y, exponent=b, unbiased=estimator == "unbiased")
    assert float(value) == pytest.approx(float(mmd), rel=1e-9)


def test_gradient_is_finite_and_right_where_distances_are_zero(energy):
    # The biased estimate with b < 1 contains |z_i - z_i|^b = 0, whose derivative is
    # infinite; the plugin must give those constant terms a zero gradient.
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(8, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    energy.energy_distance(z, z0, exponent=0.5, unbiased=False).backward()

    # Reference: the same sum over pairs of distinct points only (the diagonal is a
    # constant 0), differentiated by autograd term by term.
    ref = z.detach().clone().requires_grad_(True)
    n = ref.shape[0]
    between = sum((ref[i] - z0[j]).norm() ** 0.5 for i in range(n) for j in range(n)) / n ** 2
    within = sum((ref[i] - ref[j]).norm() ** 0.5 for i in range(n) for j in range(n) if i != j) / n ** 2
    (2 * between - within).backward()
    assert torch.isfinite(z.grad).all()
    assert torch.allclose(z.grad, ref.grad, rtol=1e-9, atol=1e-12)


def test_params_are_validated(energy):
    from pydantic import ValidationError
    for bad in ({"exponent": 2.0}, {"exponent": 0.0}, {"estimator": "plugin"}, {"kernel": "imq"}):
        with pytest.raises(ValidationError):
            energy.EnergyDistance(**bad)
    assert energy.EnergyDistance().params.estimator == "unbiased"


# ------------------------------------------------------------ the tutorial


def tutorial_blocks() -> dict[str, str]:
    """Code blocks of the tutorial that follow a ``<!-- file: PATH -->`` line, by PATH."""
    pattern = re.compile(r"^<!-- file: (\S+) -->\n```[\w-]*\n(.*?)^```$", re.S | re.M)
    return {path: body for path, body in pattern.findall(TUTORIAL.read_text())}


def test_the_tutorial_shows_the_package_files_as_they_are():
    blocks = tutorial_blocks()
    expected = {f"examples/benchbed-energy/{p}" for p in (
        "pyproject.toml", "src/benchbed_energy/__init__.py",
        "src/benchbed_energy/divergence.py", "energy-quick.yaml", "tests/test_energy.py")}
    assert expected <= set(blocks), sorted(blocks)
    for path, body in blocks.items():
        assert body == (REPO / path).read_text(), f"{TUTORIAL.name}: the block for {path} differs from the file"


def test_the_tutorials_suite_that_extends_disentangle_validates_and_its_quoted_refusals_are_real(
        tmp_path, monkeypatch, capsys):
    text = TUTORIAL.read_text()
    [body] = re.findall(r"^<!-- example: mine.yaml -->\n```yaml\n(.*?)^```$", text, re.S | re.M)
    (tmp_path / "suites").symlink_to(REPO / "suites")  # extends: suites/disentangle.yaml, as from the root
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text(body)
    assert main(["validate", "mine.yaml"]) == 0, capsys.readouterr().err
    for profile, width in (("cpu", [256, 256]), ("tiny", [32]), ("paper", [1200, 1200])):
        methods = load("mine.yaml", profile).suite.methods
        assert len(methods) == 10 and methods["infovae_stein"].encoder.params["hidden"] == width
        assert (methods["infovae_stein"].encoder, methods["infovae_stein"].decoder) == \
            (methods["vae"].encoder, methods["vae"].decoder)  # like for like in every profile
    # The refusals it quotes are what validate prints without the name, and without the cpu entry.
    quoted = re.findall(r"^ {6}(mine\.yaml:\d+: .*)$", text, re.M)
    assert len(quoted) == 2
    Path("mine.yaml").write_text(body.replace("name: disentangle-mine", "# (no name)"))
    assert main(["validate", "mine.yaml"]) == 2
    assert f"error: {quoted[0]}\n" in capsys.readouterr().err
    cpu = body.index("  cpu:")
    Path("mine.yaml").write_text(body[:cpu] + "  cpu: {}\n" + body[body.index("  tiny:"):])
    assert main(["validate", "mine.yaml", "--profile", "cpu"]) == 2
    assert f"  {quoted[1]}\n" in capsys.readouterr().err


# ---------------------------------------------------------- a real install


def benchbed(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchbed.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def listed_plugins(output: str) -> dict[str, list[str]]:
    """``benchbed plugins`` output: header line -> its indented lines."""
    listing: dict[str, list[str]] = {}
    header = None
    for line in output.splitlines():
        if line and not line.startswith(" "):
            header = line
            listing[header] = []
        elif header is not None:
            listing[header].append(line.strip())
    return listing


@pytest.mark.slow
def test_pip_installed_plugin_is_listed_trains_a_suite_and_passes_its_own_tests(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    source = tmp_path / "benchbed-energy"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-index", "--disable-pip-version-check", "-q", "--target", str(target),
                          str(source)], capture_output=True, text=True, timeout=180)
    assert pip.returncode == 0, pip.stderr

    env = {k: v for k, v in os.environ.items()
           if k not in ("BENCHBED_PLUGINS", "BENCHBED_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = str(target)
    version = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["version"]

    listing = benchbed("plugins", env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    plugins = listed_plugins(listing.stdout)
    assert plugins.get(f"benchbed_energy  [benchbed-energy {version}]") == ["divergence: energy"], listing.stdout

    store, boards = tmp_path / "store", tmp_path / "boards"
    run = benchbed("run", str(SUITE), "--plain", "--jobs", "1", "--store", str(store),
                   "--leaderboards", str(boards), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 run(s) finished, 0 failed" in run.stdout
    board = (boards / "energy-quick.md").read_text()
    # the method cell, less the leaderboard's flags (under-trained †, collapsed ⊘)
    rows = {line.split("|")[1].split(" †")[0].split(" ⊘")[0].strip(): line
            for line in board.splitlines() if line.startswith("| InfoVAE")}
    assert set(rows) == {"InfoVAE-energy", "InfoVAE-MMD (baseline)"}, board
    assert "(n=1)" in rows["InfoVAE-energy"] and "failed" not in rows["InfoVAE-energy"]
    [energy_run] = [p for p in store.iterdir() if p.is_dir() and p.name != "cache"
                    and "infovae_energy" in (p / "log.txt").read_text()]
    assert (energy_run / "curves.csv").read_text().splitlines()[0].endswith(",energy")  # its term_name

    # The package's own tests (CONTRIBUTING's benchbed.testing example), against the install.
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         env=env, cwd=source, capture_output=True, text=True, timeout=300)
    assert own.returncode == 0 and "3 passed" in own.stdout, own.stdout + own.stderr
