"""Bad suites are refused with the file, the line, the field path, the bad
value and a close-name suggestion; never with a traceback."""

from __future__ import annotations

import json

import pytest

from benchbed.cli import main
from benchbed.plan.loaded import load
from benchbed.suite.load import SuiteInvalid, load_suite
from conftest import REPO, TINY_SUITE


def problems_of(path, profile=None):
    with pytest.raises(SuiteInvalid) as info:
        load(path, profile)  # everything a command checks, planning included
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


def test_vimae_with_another_divergence_is_refused_naming_what_it_takes(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    divergence: {name: stein}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:13: methods.vimae_n.divergence:")
    assert "objective 'vimae' takes only the divergence 'mmd', not 'stein'" in problem
    assert "objectives that take 'stein': infovae, stein_vae" in problem


def test_a_refused_divergence_is_reported_beside_a_typo_elsewhere(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    divergence: {name: stein}")
        .replace("training: {epochs:", "training: {epoch:"))
    problems = problems_of(path)
    assert any("unknown key 'epoch'" in p for p in problems)
    assert any(p.startswith(f"{path}:13: methods.vimae_n.divergence: objective 'vimae' takes only")
               for p in problems)


def test_null_divergence_means_the_objectives_default(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    divergence: null"))
    load(path)


def test_a_divergence_for_an_objective_without_one_is_refused(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: elbo}", "objective: {name: elbo}\n    divergence: {name: mmd}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:8: methods.elbo.divergence:")
    assert "objective 'elbo' takes no divergence (got 'mmd')" in problem


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


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_a_seed_out_of_range_is_refused_with_its_line_before_any_run(write_suite, seed):
    # 10**20 was accepted, then every run failed in torch: "Overflow when unpacking long long"
    path = write_suite(TINY_SUITE.replace("seed: [0]}", f"seed: [0, {seed}]}}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:") and "grid.seed[1]: Input should be" in problem
    assert f"(got {seed})" in problem


def test_a_field_missing_from_a_suite_with_profiles_is_said_once_at_the_top(write_suite, capsys):
    text = TINY_SUITE.replace('citation: "a test suite"\n', "")
    assert text != TINY_SUITE
    path = write_suite(text + "profiles:\n  small: {}\n  large: {}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    # it was said once per profile, each time at that profile's line
    assert err.count("citation: required but missing") == 1
    assert f"{path}:1: citation: required but missing" in err


def test_a_scale_of_zero_is_refused_in_a_column_and_a_finding(write_suite):
    # it was accepted, and every cell of the column showed 0.00 ± 0.00
    text = TINY_SUITE.replace("better: closer_to_zero}", "better: closer_to_zero, scale: 0}") + (
        "findings:\n  - claim: c\n    metric: logdet\n    value: logdet_cov\n    scale: 0\n"
        "    holds: [\"elbo < vimae_n\"]\n")
    assert "scale: 0}" in text
    problems = problems_of(write_suite(text))
    assert any(": leaderboards[0].columns[0].scale: must not be 0: every value would show as 0 (got 0)" in p for p in problems), problems
    assert any(": findings[0].scale: must not be 0: every value would show as 0 (got 0)" in p for p in problems), problems


def test_grid_paths_into_components_are_validated(write_suite):
    good = write_suite(TINY_SUITE.replace("seed: [0]}", "seed: [0], params: {objective.lambda: [1, 10]}}")
                       .replace("objective: {name: elbo}", "objective: {name: vimae}\n    prior: logistic"))
    suite, _ = load_suite(good)
    from benchbed.plan.runs import plan
    from benchbed.plugin_api.registry import get_registry
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


def test_the_repositorys_suites_validate_against_the_printed_schema(capsys):
    jsonschema = __import__("jsonschema")
    import yaml

    from conftest import REPO
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((REPO / "suites").glob("*.yaml")):
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path.name, errors[:3])
    # A suite that extends another, as CONTRIBUTING writes one, takes its required fields from its base;
    # without `extends` they are required.
    child = yaml.safe_load(MINE)
    assert [e.message for e in validator.iter_errors(child)] == []
    del child["extends"]
    assert "'citation' is a required property" in [e.message for e in validator.iter_errors(child)]

    def find(node, title):
        if isinstance(node, dict):
            if node.get("title") == title:
                return node
            node = list(node.values())
        if isinstance(node, list):
            return next((f for f in (find(n, title) for n in node) if f), None)
        return None

    beta = find(schema, "objective beta_vae")
    assert "beta" in beta["properties"] and "hidden" not in beta["properties"]


def test_a_child_suite_may_rename_itself_and_keep_its_base(write_suite):
    write_suite(TINY_SUITE, "base.yaml")
    child = write_suite("extends: base.yaml\nname: renamed\nprofiles:\n  small: {name: renamed-small}\n",
                        "child.yaml")
    suite, _ = load_suite(child)
    assert suite.name == "renamed" and list(suite.methods) == ["elbo", "vimae_n"]
    assert load_suite(child, "small")[0].name == "renamed-small"


def test_a_suite_that_extends_another_needs_a_name_of_its_own(write_suite, capsys):
    write_suite(TINY_SUITE + "profiles:\n  small: {name: tiny-small}\n", "base.yaml")
    inherits = write_suite("# mine\nextends: base.yaml\n", "inherits.yaml")
    same = write_suite("extends: base.yaml\nname: tiny\n", "same.yaml")
    profile = write_suite("extends: base.yaml\nname: mine\n", "profile.yaml")
    assert main(["validate", str(inherits), str(same), str(profile)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (f"{inherits}:2: name: a suite that extends base.yaml needs its own name: it would write over "
            "leaderboards/tiny.md and its records; add e.g. `name: tiny-mine`") in err
    assert (f"{same}:2: name: 'tiny' is the name of the suite it extends (base.yaml): it would write over "
            "leaderboards/tiny.md and its records; write e.g. `name: tiny-mine`") in err
    assert f"{profile}:1: profiles.small.name: a suite that extends base.yaml needs its own name" in err
    assert "leaderboards/tiny-small-small.md" in err


def test_a_profile_of_a_child_suite_may_not_publish_where_its_base_does(write_suite, capsys):
    # The base publishes as 'tiny' (no profile) and 'tiny-small' (profile small): a child's profile that
    # renames itself onto either would overwrite the base's page and records.
    write_suite(TINY_SUITE + "profiles:\n  small: {}\n", "base.yaml")
    onto_default = write_suite("extends: base.yaml\nname: mine\nprofiles:\n  big: {name: tiny-big}\n"
                               "  fast: {name: tiny}\ndefault_profile: fast\n", "onto_default.yaml")
    onto_profile = write_suite("extends: base.yaml\nname: mine\nprofiles:\n  small: {name: tiny}\n",
                               "onto_profile.yaml")
    own = write_suite("extends: base.yaml\nname: mine\nprofiles:\n  small: {name: mine2}\n", "own.yaml")
    assert main(["validate", str(onto_default), str(onto_profile)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (f"{onto_default}:5: profiles.fast.name: profile fast would publish as 'tiny', as the suite it "
            "extends (base.yaml) does without a profile: it would write over leaderboards/tiny.md") in err
    assert (f"{onto_profile}:4: profiles.small.name: profile small would publish as 'tiny-small', as the "
            "suite it extends (base.yaml) does with profile small") in err
    assert main(["validate", str(own)]) == 0


MINE = f"""
extends: {REPO / "suites" / "disentangle.yaml"}
name: disentangle-mine
methods:
  beta_vae_2:
    label: β-VAE (β=2)
    objective: {{name: beta_vae, beta: 2}}
    encoder: {{name: mlp, hidden: [1200, 1200]}}
    decoder: {{name: mlp, hidden: [1200, 1200, 1200], activation: tanh}}
"""


def test_a_method_that_a_profile_leaves_paper_size_beside_shrunk_baselines_is_refused(write_suite):
    path = write_suite(MINE)
    assert problems_of(path, "cpu") == [
        f"{path}:7: methods.beta_vae_2.encoder: profile cpu gives vae (and 8 more) encoder {{name: mlp, "
        "hidden: [256, 256]} but leaves beta_vae_2's {name: mlp, hidden: [1200, 1200]}, which was vae's too "
        "before the profile: not like for like; add `profiles.cpu.methods.beta_vae_2.encoder: {name: mlp, "
        "hidden: [256, 256]}`, or write beta_vae_2's encoder there unchanged if that is intended",
        f"{path}:8: methods.beta_vae_2.decoder: profile cpu gives vae (and 6 more) decoder {{name: mlp, "
        "hidden: [256, 256], activation: tanh} but leaves beta_vae_2's {name: mlp, hidden: [1200, 1200, "
        "1200], activation: tanh}, which was vae's too before the profile: not like for like; add "
        "`profiles.cpu.methods.beta_vae_2.decoder: {name: mlp, hidden: [256, 256], activation: tanh}`, or "
        "write beta_vae_2's decoder there unchanged if that is intended"]
    load(path, "paper")  # no profile changes the networks there
    # Saying so in the profile, even with the paper's network, is a choice: accepted.
    kept = write_suite(MINE + "profiles:\n  cpu:\n    methods:\n      beta_vae_2: {encoder: {name: mlp}, "
                       "decoder: {name: mlp, hidden: [256, 256]}}\n", "kept.yaml")
    assert load(kept, "cpu").suite.methods["beta_vae_2"].encoder.params["hidden"] == [1200, 1200]


def test_a_profile_may_run_one_method_at_fewer_latent_sizes(write_suite):
    # latent_dims says where a method runs; at a size it runs, it is still like its sibling
    path = write_suite(TINY_SUITE.replace("latent_dim: [2]", "latent_dim: [2, 3]")
                       + "profiles:\n  small:\n    methods:\n      elbo: {latent_dims: [2]}\n")
    runs = load(path, "small").runs  # no "not like for like"
    assert sorted((r.method, r.latent_dim) for r in runs) == [("elbo", 2), ("vimae_n", 2), ("vimae_n", 3)]


def test_every_shipped_suite_validates_in_every_profile(capsys):
    # vimae's cpu profile gives its MLP and conv methods different training: alike before, both written.
    suites = sorted((REPO / "suites").glob("*.yaml"))
    assert main(["validate", *map(str, suites)]) == 0, capsys.readouterr().err


def test_a_method_keeping_its_own_training_while_a_profile_changes_the_suites_is_refused(write_suite):
    path = write_suite(TINY_SUITE.replace("objective: {name: vimae}", "objective: {name: vimae}\n"
                                          "    training: {batch_size: 50}")
                       + "profiles:\n  small:\n    training: {batch_size: 25}\n"
                       "    methods:\n      elbo: {encoder: {name: mlp, hidden: [8]}}\n")
    assert problems_of(path, "small") == [
        f"{path}:14: methods.vimae_n.encoder: profile small gives elbo encoder {{name: mlp, hidden: [8]}} "
        "but leaves vimae_n's {name: mlp, hidden: [32]}, which was elbo's too before the profile: not like "
        "for like; add `profiles.small.methods.vimae_n.encoder: {name: mlp, hidden: [8]}`, or write "
        "vimae_n's encoder there unchanged if that is intended",
        f"{path}:13: methods.vimae_n.training: profile small gives the suite training {{epochs: 2, "
        "batch_size: 25} but leaves vimae_n's {epochs: 2, batch_size: 50}, which was the suite's too before "
        "the profile: not like for like; add `profiles.small.methods.vimae_n.training: {epochs: 2, "
        "batch_size: 25}`, or write vimae_n's training there unchanged if that is intended"]


def test_yaml_merge_keys_let_written_keys_win(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "  vimae_n:\n    label: VIMAE-n\n    objective: {name: vimae}",
        "  vimae_n: &base\n    label: VIMAE-n\n    objective: {name: vimae}") + """
  # appended to methods via a second document section below
""")
    text = path.read_text().replace("grid:", "  beta:\n    <<: *base\n    label: β-VAE\n    objective: {name: beta_vae, beta: 10}\ngrid:", 1)
    path.write_text(text)
    suite, _ = load_suite(path)
    assert suite.methods["beta"].objective.name == "beta_vae"
    assert suite.methods["beta"].encoder.name == "mlp" and suite.methods["beta"].label == "β-VAE"


def test_a_method_training_override_merges_into_the_suites_optimiser(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "training: {epochs: 2, batch_size: 50}",
        "training: {epochs: 2, batch_size: 50, optimiser: {name: sgd, lr: 0.1, momentum: 0.9}}")
        .replace("objective: {name: elbo}", "objective: {name: elbo}\n    training: {optimiser: {lr: 0.01}}"))
    from benchbed.plan.runs import plan
    from benchbed.plugin_api.registry import get_registry
    suite, _ = load_suite(path)
    elbo = next(r for r in plan(suite, get_registry()) if r.method == "elbo")
    assert elbo.config["training"]["optimiser"] == {**elbo.config["training"]["optimiser"],
                                                    "name": "sgd", "lr": 0.01, "momentum": 0.9}


def test_bad_yaml_of_every_kind_is_a_message_not_a_traceback(write_suite, capsys):
    bad = write_suite("name: x\n", "bad.yaml")
    bad.write_bytes(b"name: \xff\xfe\n")
    tag = write_suite("name: !!python/object:os.system x\n", "tag.yaml")
    key = write_suite("? [a, b]\n: 1\n", "key.yaml")
    assert main(["validate", str(bad), str(tag), str(key), "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "not UTF-8" in err and "tag.yaml:1" in err and "key.yaml:1" in err and "missing.yaml" in err


def test_method_keys_must_be_plain_names_and_latent_sizes_positive(write_suite):
    path = write_suite(TINY_SUITE.replace("  vimae_n:", "  'vimae/n':").replace("latent_dim: [2]", "latent_dim: [0]"))
    problems = problems_of(path)
    assert any("methods" in p and "'vimae/n'" in p for p in problems)
    assert any("grid.latent_dim[0]" in p for p in problems)


def test_a_suite_may_declare_its_executor_and_the_command_line_overrides_it(write_suite):
    from benchbed.cli import _executor_override, build_parser
    from benchbed.errors import BenchbedError
    from benchbed.plan.executor_spec import resolve_executor
    from benchbed.plugin_api.registry import get_registry

    path = write_suite(TINY_SUITE + "executor: {name: local, jobz: 2}\n")
    [problem] = problems_of(path)
    assert "executor.jobz" in problem and "did you mean 'jobs'" in problem

    path = write_suite(TINY_SUITE + "executor: {name: ray, num_gpus: 1, num_cpus: 2}\n")
    suite, _ = load_suite(path)

    def spec(*argv: str, declared=suite.executor) -> dict:
        override = _executor_override(build_parser().parse_args(["run", str(path), *argv]))
        return resolve_executor(declared, override, get_registry())

    assert spec() == {"name": "ray", "num_gpus": 1, "num_cpus": 2}
    assert spec("--executor-opt", "num_gpus=0", "--address", "auto") == {
        "name": "ray", "num_gpus": 0, "num_cpus": 2, "address": "auto"}
    assert spec("--executor", "local", "--jobs", "2") == {"name": "local", "jobs": 2}
    assert spec(declared=None) == {"name": "local"}
    with pytest.raises(BenchbedError, match="does not take option 'jobz'.*did you mean 'jobs'"):
        spec("--executor", "local", "--executor-opt", "jobz=2")
    # Shorthands are declared by the executors, and reach only the one that declares them.
    assert spec("--executor", "local", "--executor-opt", "jobs=3", "--jobs", "4") == {"name": "local", "jobs": 4}
    with pytest.raises(BenchbedError, match="--jobs is an option of executor 'local', not of 'ray'"):
        spec("--jobs", "2")
    with pytest.raises(BenchbedError, match="executor 'local': option jobs='two'"):
        spec("--executor", "local", "--jobs", "two")


def test_the_command_line_names_no_executor_its_flags_come_from_the_executors():
    import inspect

    from benchbed import cli
    from benchbed.plugin_api.components import Executor
    from benchbed.plugin_api.registry import get_registry

    source = inspect.getsource(cli)
    assert not any(name in source for name in ('"jobs"', "--jobs", '"address"', "--address", '"ray"'))
    flags = {f: [(n, p) for n, p, _ in owners] for f, owners in cli._executor_flags().items()}
    assert flags == {"jobs": [("local", "jobs")], "address": [("ray", "address")]}
    for name in get_registry().names("executor"):
        cls = get_registry().get("executor", name).cls
        assert issubclass(cls, Executor)
        assert set(cls.cli_shorthands.values()) <= set(cls.Params.model_fields)


def test_an_equality_claim_without_a_tolerance_is_refused_where_it_is_written(write_suite):
    finding = ('findings:\n  - claim: "the log-det is near 0"\n    source: a test\n    metric: logdet\n'
               '    value: logdet_cov\n    holds: ["elbo ~ 0"]\n')
    path = write_suite(TINY_SUITE + finding)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:29: findings[0].holds[0]:") and "needs the finding's `tolerance`" in problem
    write_suite(TINY_SUITE + finding + "    tolerance: 0.5\n", "ok.yaml")
    load_suite(path.parent / "ok.yaml")  # with one, it is fine


def test_a_comparison_that_tests_no_run_is_refused(write_suite):
    finding = ('findings:\n  - claim: "x"\n    metric: logdet\n    value: logdet_cov\n'
               '    holds: ["elbo < elbo", "1 < 2", "elbo@z=2 < elbo"]\n')
    path = write_suite(TINY_SUITE + finding)
    assert problems_of(path) == [
        f"{path}:28: findings[0].holds[0]: 'elbo < elbo' compares 'elbo' with itself: it tests nothing",
        f"{path}:28: findings[0].holds[1]: '1 < 2' compares two numbers: it tests no run"]


def test_a_filter_or_a_term_matching_no_planned_run_is_refused_listing_what_the_runs_have(write_suite):
    path = write_suite(TINY_SUITE.replace("    title: Log-det of the code covariance\n",
                                          "    title: Log-det of the code covariance\n    where: {latent_dim: 8}\n")
                       + 'findings:\n  - claim: "z matters"\n    metric: logdet\n    value: logdet_cov\n'
                         '    where: {seed: [0, 3]}\n    holds: ["elbo@z=2 < elbo@z=16"]\n')
    text = path.read_text().splitlines()
    line = {key: 1 + next(i for i, t in enumerate(text) if key in t) for key in ("latent_dim: 8", "[0, 3]", "@z=16")}
    assert sorted(problems_of(path)) == sorted([
        f"{path}:{line['latent_dim: 8']}: leaderboards[0].where.latent_dim: latent_dim 8 matches no planned "
        "run of this table (they have: 2)",
        f"{path}:{line['[0, 3]']}: findings[0].where.seed[1]: seed 3 matches no planned run of this finding "
        "(they have: 0)",
        f"{path}:{line['@z=16']}: findings[0].holds[0]: 'elbo@z=16': method 'elbo' has no planned run with "
        "latent_dim 16 (it has: 2)"])


def test_a_column_on_a_metric_none_of_the_tables_methods_compute_is_refused(write_suite):
    two_metrics = TINY_SUITE.replace("logdet: {name: logdet_cov}", "logdet: {name: logdet_cov}\n  mmd: {name: mmd}")
    column = "      - {header: MMD, metric: mmd, value: mmd}\n"
    path = write_suite(two_metrics.replace("objective: {name: elbo}", "objective: {name: elbo}\n    metrics: [logdet]")
                       .replace("objective: {name: vimae}", "objective: {name: vimae}\n    metrics: [logdet]")
                       + column)
    line = len(path.read_text().splitlines())
    assert problems_of(path) == [f"{path}:{line}: leaderboards[0].columns[1].metric: no method of this table "
                                 "computes metric 'mmd' (they compute: logdet)"]
    # only vimae_n computes it, and the table's `where` keeps elbo alone
    path = write_suite(two_metrics.replace("objective: {name: elbo}",
                                           "objective: {name: elbo}\n    metrics: [logdet]\n    latent_dims: [3]")
                       .replace("    title: Log-det of the code covariance\n",
                                "    title: Log-det of the code covariance\n    where: {latent_dim: 3}\n")
                       + column, "where.yaml")
    line = len(path.read_text().splitlines())
    assert problems_of(path) == [f"{path}:{line}: leaderboards[0].columns[1].metric: no method of this table "
                                 "computes metric 'mmd' at latent_dim = 3 (they compute: logdet)"]


def test_a_misspelt_method_in_a_profile_is_an_unknown_method_at_its_line(write_suite):
    path = write_suite(TINY_SUITE + "profiles:\n  cpu:\n    methods:\n      elbow: {label: E}\n")
    line = len(path.read_text().splitlines())
    assert problems_of(path, "cpu") == [f"{path}:{line}: profiles.cpu.methods.elbow: unknown method 'elbow' "
                                        "(did you mean 'elbo'?) (methods: elbo, vimae_n)"]


def test_a_profile_may_shrink_the_grid_under_a_filter_that_another_profile_fills(write_suite):
    path = write_suite(TINY_SUITE.replace("latent_dim: [2]", "latent_dim: [2, 8]")
                       .replace("    title: Log-det of the code covariance\n",
                                "    title: Log-det of the code covariance\n    where: {latent_dim: 8}\n")
                       + "profiles:\n  ci: {grid: {latent_dim: [2]}}\n  typo: {grid: {latent_dim: [2]}}\n")
    load(path, "ci")
    path.write_text(path.read_text().replace("where: {latent_dim: 8}", "where: {latent_dim: 80}"))
    [problem] = problems_of(path, "ci")
    assert "leaderboards[0].where.latent_dim: latent_dim 80 matches no planned run of this table (they have: 2)" in problem


def test_a_where_on_a_grid_param_suggests_the_close_value(write_suite):
    path = write_suite(TINY_SUITE.replace("seed: [0]}", "seed: [0], params: {encoder.activation: [relu, elu]}}")
                       .replace("    title: Log-det of the code covariance\n",
                                "    title: Log-det of the code covariance\n    where: {encoder.activation: rleu}\n"))
    [problem] = problems_of(path)
    assert problem.endswith("leaderboards[0].where.encoder.activation: encoder.activation 'rleu' matches no planned "
                            "run of this table (did you mean 'relu'?) (they have: elu, relu)")


def test_a_misspelt_figure_of_the_disentanglement_metrics_suggests_the_written_name(write_suite):
    path = write_suite(TINY_SUITE.replace("dataset: {name: digits}", "dataset: {name: dsprites}")
                       .replace("  logdet: {name: logdet_cov}", "  logdet: {name: logdet_cov}\n"
                                "  tc: {name: gaussian_tc}\n  mig: {name: mig}\n"
                                "  figures: {name: disentanglement_figures, which: [traversals]}")
                       + "    figures: [travesals.png]\n")
    [problem] = problems_of(path)
    assert problem == (f"{path}:27: leaderboards[0].figures[0]: no metric writes a figure 'travesals.png' "
                       "(did you mean 'traversals.png'?) (written: traversals.png)")


def test_an_unknown_method_in_a_finding_term_lists_the_methods(write_suite):
    finding = ('findings:\n  - claim: "c"\n    metric: logdet\n    value: logdet_cov\n'
               '    holds: ["infovae_swdd > elbo"]\n')
    path = write_suite(TINY_SUITE + finding)
    assert problems_of(path) == [f"{path}:28: findings[0].holds[0]: unknown method 'infovae_swdd' "
                                 "(methods: elbo, vimae_n)"]


def test_an_unclosed_bracket_points_at_the_line_it_opens_not_the_end_of_the_file(write_suite):
    path = write_suite("name: x\ncitation: c\ndataset: {name: digits}\nmetrics: {a: {name: svm}\n"
                       "grid: {latent_dim: [2]}\n")
    with pytest.raises(Exception) as info:
        load_suite(path)
    assert str(info.value) == (f"{path}:4: not valid YAML: the '{{' opened at line 4 is not closed by "
                               "line 5: expected ',' or '}', but got '<scalar>'")


def test_a_budget_raised_at_one_latent_size_changes_only_the_runs_at_that_size(write_suite):
    base = TINY_SUITE.replace("latent_dim: [2]", "latent_dim: [2, 3]")
    before = {r.slug: r for r in load(write_suite(base, "before.yaml")).runs}
    after = {r.slug: r for r in load(write_suite(base.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    training_at: {3: {epochs: 5}}"),
        "after.yaml")).runs}
    changed = sorted(name for name in after if after[name].key != before[name].key)
    assert changed == ["vimae_n__z3__s0"]
    assert after["vimae_n__z3__s0"].config["training"]["epochs"] == 5
    assert after["vimae_n__z3__s0"].config["training"]["batch_size"] == 50  # the rest is the suite's


def test_a_training_override_misspelt_clashing_with_the_grid_or_keyed_by_text_is_refused(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}",
        "objective: {name: vimae}\n    training_at: {2: {epocs: 5, optimiser: {lr: 0.1}}}")
        .replace("grid: {latent_dim: [2], seed: [0]}",
                 "grid: {latent_dim: [2, 3], seed: [0], params: {training.optimiser.lr: [0.1, 0.2]}}"))
    problems = problems_of(path)
    assert len(problems) == 2, problems
    assert any(p.startswith(f"{path}:13: methods.vimae_n.training_at[2]: sets training.optimiser.lr, which "
                            "grid.params also sets (training.optimiser.lr): the grid's values would win")
               for p in problems)
    assert any(p.startswith(f"{path}:13: methods.vimae_n.training_at[2].epocs: unknown key 'epocs' "
                            "(did you mean 'epochs'") for p in problems)
    # a quoted '3' would sit beside a profile's 3 after the merge and silently replace it
    [problem] = problems_of(write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    training_at: {'2': {epochs: 4}}"), "text.yaml"))
    assert "methods.vimae_n.training_at" in problem and "valid integer (got '2')" in problem


def test_a_training_override_at_a_size_no_profile_runs_is_refused_but_one_a_profile_drops_is_not(write_suite):
    text = TINY_SUITE.replace("objective: {name: vimae}",
                              "objective: {name: vimae}\n    training_at: {3: {epochs: 5}}")
    [problem] = problems_of(write_suite(text, "none.yaml"))
    assert problem.endswith("methods.vimae_n.training_at[3]: method 'vimae_n' has no planned run at latent "
                            "size 3 (it has: 2)")
    # the suite runs z = 3 and a profile runs z = 2 only: the override is unused there, not wrong
    both = text.replace("latent_dim: [2]", "latent_dim: [2, 3]") + \
        "profiles:\n  small:\n    grid: {latent_dim: [2], seed: [0]}\n"
    assert [r.latent_dim for r in load(write_suite(both, "both.yaml"), "small").runs] == [2, 2]


def test_a_profile_raising_one_methods_budget_at_one_size_says_so_for_the_others(write_suite):
    # like `training`, a per-size budget a profile gives one method is written for the others too
    base = TINY_SUITE.replace("latent_dim: [2]", "latent_dim: [2, 3]")
    one = base + "profiles:\n  small:\n    methods:\n      vimae_n: {training_at: {3: {epochs: 5}}}\n"
    [problem] = problems_of(write_suite(one, "one.yaml"), "small")
    assert "methods.elbo.training_at: profile small gives vimae_n training_at {3: {epochs: 5}} but leaves " \
           "elbo's" in problem
    both = one + "      elbo: {training_at: {}}\n"
    runs = load(write_suite(both, "both.yaml"), "small").runs
    assert {(r.method, r.latent_dim): r.config["training"]["epochs"] for r in runs} == {
        ("elbo", 2): 2, ("elbo", 3): 2, ("vimae_n", 2): 2, ("vimae_n", 3): 5}


def test_a_profiles_and_a_child_suites_deviations_add_to_the_ones_they_inherit(write_suite):
    # a deviation of the whole suite stays true under every profile: a profile's own list must not hide it
    write_suite(TINY_SUITE + 'deviations: ["parent: lr not given"]\n', "base.yaml")
    child = write_suite("""
        extends: base.yaml
        name: child
        deviations: ["child: smaller net", "parent: lr not given"]
        profiles:
          cpu:
            deviations: ["cpu: 2 epochs", 3]
        """, "child.yaml")
    suite, _ = load_suite(child)
    assert suite.deviations == ["parent: lr not given", "child: smaller net"]
    with pytest.raises(SuiteInvalid) as info:
        load_suite(child, "cpu")
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{child}:6: deviations[3]:")  # the bad entry's own line, at its merged index
    suite, _ = load_suite(write_suite(child.read_text().replace(", 3]", "]"), "child.yaml"), "cpu")
    assert suite.deviations == ["parent: lr not given", "child: smaller net", "cpu: 2 epochs"]
    # a base's profile deviations stay under the child's profile of the same name
    write_suite(TINY_SUITE + 'deviations: ["parent: lr not given"]\nprofiles:\n  cpu:\n    deviations: ["parent cpu"]\n',
                "base.yaml")
    suite, _ = load_suite(child, "cpu")
    assert suite.deviations == ["parent: lr not given", "child: smaller net", "parent cpu", "cpu: 2 epochs"]


def test_an_infinite_parameter_is_refused_at_validate_not_after_training(write_suite):
    path = write_suite(TINY_SUITE.replace("{name: elbo}", "{name: beta_vae, beta: .inf}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:7: methods.elbo.objective.beta:") and "finite number" in problem


@pytest.mark.parametrize("alias", ["deviations: &r [*r]", "description: &r {a: *r}"])
def test_an_alias_inside_the_node_it_names_is_one_message_not_a_recursion(write_suite, capsys, alias):
    path = write_suite(TINY_SUITE + alias + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "an alias refers to a node that contains it" in err


def test_aliases_that_expand_past_any_real_suite_are_refused(write_suite, capsys):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = write_suite(TINY_SUITE + "extra:\n" + "".join(f"  {line}\n" for line in levels))
    assert main(["validate", str(path)]) == 2
    assert "the aliases expand to more than 100,000 values" in capsys.readouterr().err


def test_a_written_profile_key_and_a_list_of_profiles_are_refused(write_suite, capsys):
    path = write_suite(TINY_SUITE + "profile: paper\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:24: profile: not a suite field" in capsys.readouterr().err
    path = write_suite(TINY_SUITE + "profiles:\n  - tiny\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:24: profiles: must be a mapping" in capsys.readouterr().err


def test_keys_the_source_reads_are_suggested_and_case_alone_is_a_close_name(write_suite, capsys):
    path = write_suite(TINY_SUITE + "profils: {}\n")
    assert "did you mean 'profiles'?" in problems_of(path)[0]
    assert main(["run", str(write_suite(TINY_SUITE)), "--only", "ELBO"]) == 2
    assert "did you mean 'elbo'" in capsys.readouterr().err


def test_a_network_that_cannot_take_the_datasets_images_is_refused_at_validate(write_suite):
    path = write_suite(TINY_SUITE.replace("encoder: {name: mlp, hidden: [32]}", "encoder: {name: wae_conv}", 1))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:8: methods.elbo.encoder: wae_conv supports image shapes")
    assert "got (1, 8, 8)" in problem


def test_two_methods_with_one_label_or_two_tables_with_one_id_are_refused(write_suite):
    text = TINY_SUITE.replace("label: VIMAE-n", "label: ELBO-VAE").replace(
        "leaderboards:\n", "leaderboards:\n  - {id: t, title: again, columns: [{header: h, metric: logdet, "
                           "value: logdet_cov}]}\n")
    problems = problems_of(write_suite(text))
    assert any("methods.vimae_n.label: methods label 'ELBO-VAE' is already used by methods.elbo.label"
               in p for p in problems), problems
    assert any("leaderboards[1].id: leaderboards id 't' is already used by leaderboards[0].id" in p
               for p in problems), problems
    # A method switched off, or one in another table, may share a label (a child suite replacing it).
    off = TINY_SUITE.replace("label: VIMAE-n", "label: ELBO-VAE\n    enabled: false")
    load(write_suite(off))
    apart = TINY_SUITE.replace("label: VIMAE-n", "label: ELBO-VAE").replace(
        "  - id: t\n", "  - id: v\n    methods: [vimae_n]\n    title: V\n    columns: [{header: h, metric: logdet, "
                        "value: logdet_cov}]\n  - id: t\n    methods: [elbo]\n")
    load(write_suite(apart))


def test_a_default_profile_that_is_not_a_name_is_located(write_suite, capsys):
    bad = write_suite(TINY_SUITE + "profiles:\n  small: {}\ndefault_profile: [small]\n", "listed.yaml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "default_profile: must be the name of one profile, not a list (['small'])" in err


def test_a_label_or_header_the_page_would_read_as_markdown_is_refused_where_written(write_suite, capsys):
    from conftest import TINY_SUITE
    bad = write_suite(TINY_SUITE.replace("label: ELBO-VAE", "label: \"ELBO [fast] <b>\"")
                      .replace("header: log-det/dim", "header: \"`log-det`\""), "marked.yaml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (f"{bad}:6: methods.elbo.label: holds '<', '[', ']', which the leaderboard page would read "
            "as Markdown or HTML; write it without them (got 'ELBO [fast] <b>')") in err
    assert "leaderboards[0].columns[0].header: holds '`'" in err
    fine = write_suite(TINY_SUITE.replace("label: ELBO-VAE", "label: \"ELBO-VAE* (β>1)\""), "fine.yaml")
    assert main(["validate", str(fine)]) == 0


def test_a_disabled_method_is_not_refused_for_its_divergence(write_suite):
    path = write_suite(TINY_SUITE.replace(
        "objective: {name: vimae}", "objective: {name: vimae}\n    divergence: {name: stein}\n    enabled: false"))
    assert list(load(path).suite.methods) == ["elbo", "vimae_n"]  # planned without it, as before
