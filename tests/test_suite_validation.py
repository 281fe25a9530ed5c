"""Bad suites are refused with the file, the line, the field path, the bad
value and a close-name suggestion; never with a traceback."""

from __future__ import annotations

import json

import pytest

from benchbed.cli import main
from benchbed.validate import SuiteInvalid, load_suite
from conftest import TINY_SUITE


def problems_of(path, profile=None):
    with pytest.raises(SuiteInvalid) as info:
        load_suite(path, profile)
    return [str(p) for p in info.value.problems]


def test_the_tiny_suite_is_valid(tiny_suite):
    suite, _ = load_suite(tiny_suite)
    assert list(suite.methods) == ["elbo", "vimae_n"]


def test_a_misspelt_kernel_names_file_line_path_value_and_the_close_name(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}",
        "objective: {name: vimae}\n    divergence: {name: mmd, kernel: imqq}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:13: methods.vimae_n.divergence.kernel:")
    assert "'imqq'" in problem and "did you mean 'imq'" in problem


def test_an_unknown_component_suggests_registered_names(write_suite):
    path = write_suite(TINY_SUITE.replace("objective: {name: elbo}", "objective: {name: elb}"))
    [problem] = problems_of(path)
    assert f"{path}:7: methods.elbo.objective.name:" in problem
    assert "unknown objective 'elb'" in problem and "did you mean 'elbo'" in problem


def test_unknown_keys_are_errors_with_suggestions(write_suite):
    path = write_suite(TINY_SUITE.replace("training: {epochs: 2, batch_size: 50}",
                                          "training: {epochs: 2, bach_size: 50}"))
    [problem] = problems_of(path)
    assert "training.bach_size" in problem and "did you mean 'batch_size'" in problem


def test_unknown_component_parameters_are_errors(write_suite):
    path = write_suite(TINY_SUITE.replace("encoder: {name: mlp, hidden: [32]}",
                                          "encoder: {name: mlp, hiden: [32]}", 1))
    [problem] = problems_of(path)
    assert "methods.elbo.encoder.hiden" in problem and "did you mean 'hidden'" in problem


def test_every_problem_is_reported_at_once(write_suite):
    path = write_suite(TINY_SUITE.replace("objective: {name: elbo}", "objective: {name: elbow}")
                       .replace("metric: logdet, ", "metric: nope, "))
    problems = problems_of(path)
    assert any("methods.elbo.objective.name" in p for p in problems)
    assert any("leaderboards[0].columns[0].metric" in p and "'nope'" in p for p in problems)


def test_cross_references_are_checked(write_suite):
    path = write_suite(TINY_SUITE + """
corruptions:
  noise: {name: gaussian_noise, sigma: 0.4}
findings:
  - claim: VIMAE beats the VAE
    metric: logdet
    value: logdet_cov
    holds: ["vimae >= elbo"]
""")
    [problem] = problems_of(path)
    assert "findings[0].holds[0]" in problem and "did you mean 'vimae_n'" in problem


def test_unknown_metric_condition_is_refused(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "logdet: {name: logdet_cov}",
        "logdet: {name: logdet_cov}\n  acc: {name: svm, conditions: [clean, noise_04]}") + """
corruptions:
  noise_0.4: {name: gaussian_noise, sigma: 0.4}
""")
    [problem] = problems_of(path)
    assert "metrics.acc.conditions[1]" in problem and "unknown condition 'noise_04'" in problem


def test_yaml_syntax_errors_name_the_line(write_suite):
    path = write_suite("name: x\nmethods: [unclosed\n")
    with pytest.raises(Exception) as info:
        load_suite(path)
    assert f"{path}:" in str(info.value) and "not valid YAML" in str(info.value)


def test_validate_command_prints_errors_without_traceback(write_suite, capsys):
    path = write_suite(TINY_SUITE.replace("{name: elbo}", "{name: elbo, beta: 3}"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "methods.elbo.objective.beta" in err and "unknown key 'beta'" in err


def test_extends_and_profiles_merge_and_errors_point_into_the_right_file(write_suite):
    write_suite(TINY_SUITE, "base.yaml")
    child = write_suite("""
        extends: base.yaml
        name: child
        default_profile: fast
        profiles:
          fast:
            training: {epochs: 1}
          broken:
            training: {epochs: 0}
        """, "child.yaml")
    suite, _ = load_suite(child)
    assert suite.name == "child" and suite.training.epochs == 1 and suite.profile == "fast"
    assert len(suite.methods) == 2  # inherited
    [problem] = problems_of(child, "broken")
    assert problem.startswith(f"{child}:8: training.epochs:")


def test_an_unknown_profile_suggests_close_names(write_suite):
    path = write_suite(TINY_SUITE + "profiles:\n  paper: {}\n  cpu: {}\n")
    with pytest.raises(Exception) as info:
        load_suite(path, "papr")
    assert "did you mean 'paper'" in str(info.value)


def test_grid_paths_into_components_are_validated(write_suite):
    good = write_suite(TINY_SUITE.replace("seed: [0]}", "seed: [0], params: {objective.lambda: [1, 10]}}")
                       .replace("objective: {name: elbo}", "objective: {name: vimae}\n    prior: logistic"))
    suite, _ = load_suite(good)
    from benchbed.plan import plan
    from benchbed.plugins import get_registry
    runs = plan(suite, get_registry())
    assert sorted({r.config["method"]["objective"]["lambda"] for r in runs}) == [1, 10]
    bad = write_suite(TINY_SUITE.replace("seed: [0]}", "seed: [0], params: {objective.lamda: [1]}}"),
                      "bad.yaml")
    [problem] = problems_of(bad)
    assert "grid.params" in problem or "lamda" in problem


def test_schema_lists_every_component_with_its_parameters(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    text = json.dumps(schema)
    assert '"const": "mmd"' in text and '"const": "vimae"' in text
    assert "extends" in schema["properties"] and "profiles" in schema["properties"]
