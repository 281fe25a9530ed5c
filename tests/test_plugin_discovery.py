"""Plugins are found through the same hooks whether built in, installed
through a ``benchbed`` entry point, or named on the command line."""

from __future__ import annotations

import textwrap

import pytest

from benchbed.plugin_api import hookspecs
from benchbed.plugin_api import registry as plugins
from benchbed.plugin_api.components import BASES
from benchbed.plugin_api.kinds import HOOKS, KINDS, TABLE
from benchbed.cli import main
from benchbed.errors import PluginError

PLUGIN_MODULE = '''
from benchbed import hookimpl
from benchbed.plugin_api.components import Divergence, Params

class Zero(Divergence):
    """A divergence that is always zero."""
    def forward(self, codes):
        return codes.z.sum() * 0.0

@hookimpl
def register_divergences(register):
    register({name!r}, Zero)
'''


def make_distribution(root, dist: str, module: str, divergence: str) -> None:
    """A throwaway installed distribution: a dist-info folder with a
    ``benchbed`` entry point, and its module, on sys.path."""
    (root / f"{module}.py").write_text(PLUGIN_MODULE.format(name=divergence))
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[benchbed]\n{module} = {module}\n")


@pytest.fixture
def reload_after(monkeypatch):
    yield
    monkeypatch.undo()
    plugins.configure()


def test_builtins_register_through_the_hooks():
    registry = plugins.load_registry(autoload=False)
    assert "mmd" in registry.names("divergence")
    source = registry.get("objective", "elbo").source
    assert source.distribution == "benchbed" and source.plugin.startswith("benchbed_plugins.")


def test_every_built_in_module_with_a_hook_is_a_default_plugin():
    import importlib
    import pkgutil

    import benchbed_plugins
    hooked = []
    for info in pkgutil.walk_packages(benchbed_plugins.__path__, "benchbed_plugins."):
        module = importlib.import_module(info.name)
        if any(hasattr(module, hook) for hook in HOOKS):
            hooked.append(info.name)
    assert sorted(plugins.DEFAULT_PLUGINS) == sorted(hooked)


def test_one_table_gives_each_kind_its_hook_base_and_registry_slot():
    registry = plugins.load_registry(autoload=False)
    assert KINDS == tuple(k.name for k in TABLE)
    for kind in TABLE:
        base = BASES[kind.name]
        assert base.__name__ == kind.base and base.kind == kind.name
        spec = getattr(hookspecs, kind.hook)
        assert spec.benchbed_spec is not None and kind.does in spec.__doc__
        assert registry.names(kind.name), kind.name  # every kind has a built-in
        assert all(issubclass(r.cls, base) and r.kind == kind.name
                   for r in registry.all() if r.kind == kind.name)


def test_an_installed_distribution_is_found_through_its_entry_point(tmp_path, monkeypatch, reload_after):
    make_distribution(tmp_path, "benchbed-zero", "benchbed_zero_plugin", "zero")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = plugins.load_registry()
    reg = registry.get("divergence", "zero")
    assert (reg.source.distribution, reg.source.version) == ("benchbed-zero", "1.2.3")


def test_autoload_can_be_turned_off(tmp_path, monkeypatch, reload_after):
    make_distribution(tmp_path, "benchbed-zero", "benchbed_zero_plugin2", "zero2")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    assert "zero2" not in plugins.load_registry().names("divergence")


def test_two_plugins_claiming_one_name_is_an_error_naming_both(tmp_path, monkeypatch, reload_after):
    make_distribution(tmp_path, "benchbed-clash", "benchbed_clash_plugin", "mmd")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry()
    message = str(info.value)
    assert "divergence 'mmd' is registered twice" in message
    assert "benchbed_plugins.divergences.mmd (benchbed" in message and "benchbed-clash 1.2.3" in message


def test_a_module_can_be_loaded_by_import_path(tmp_path, monkeypatch, reload_after):
    (tmp_path / "my_local_plugin.py").write_text(PLUGIN_MODULE.format(name="local_zero"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV_PLUGINS, "my_local_plugin")
    assert "local_zero" in plugins.load_registry().names("divergence")


def test_a_misspelt_hook_is_reported(tmp_path, monkeypatch, reload_after):
    (tmp_path / "typo_plugin.py").write_text(textwrap.dedent('''
        from benchbed import hookimpl
        @hookimpl
        def register_divergence(register):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=["typo_plugin"])
    assert "register_divergence" in str(info.value) and "register_divergences" in str(info.value)


def test_registering_a_non_component_is_refused(tmp_path, monkeypatch, reload_after):
    (tmp_path / "bad_plugin.py").write_text(textwrap.dedent('''
        from benchbed import hookimpl
        @hookimpl
        def register_priors(register):
            register("flat", object)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=["bad_plugin"])
    assert "not a subclass of benchbed.components.Prior" in str(info.value)



@pytest.mark.parametrize("name", ["my prior", "", "2d", "-x", "a/b", "ok\n"])
def test_a_name_a_suite_cannot_write_plainly_is_refused(name, tmp_path, monkeypatch, reload_after):
    module = f"named_plugin_{abs(hash(name))}"  # a fresh module per case: imports are cached
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f'''
        from benchbed import hookimpl
        from benchbed_plugins.priors import NormalPrior
        @hookimpl
        def register_priors(register):
            register({name!r}, NormalPrior)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=[module])
    assert f"bad name {name!r}" in str(info.value)


def test_names_with_dashes_and_dots_register(tmp_path, monkeypatch, reload_after):
    (tmp_path / "dotted_plugin.py").write_text(textwrap.dedent('''
        from benchbed import hookimpl
        from benchbed_plugins.priors import NormalPrior
        class Wide(NormalPrior):
            pass
        @hookimpl
        def register_priors(register):
            register("normal-v2.1", Wide)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "normal-v2.1" in plugins.load_registry(extra_modules=["dotted_plugin"]).names("prior")

OBJECTIVE_PLUGIN = '''
from benchbed import hookimpl
from benchbed.plugin_api.components import Objective

class Declared(Objective):
    """Says it takes the MMD only, but defaults to {default!r}."""
    accepts_divergence = frozenset({{"mmd"}})
    default_divergence = {{"name": {default!r}}}

class OldStyle(Objective):
    """Written before accepts_divergence: only a default divergence."""
    default_divergence = {{"name": "stein"}}

@hookimpl
def register_objectives(register):
    register("declared_{default}", Declared)
    register("old_style_{default}", OldStyle)
'''


def test_an_objective_refusing_its_own_default_divergence_is_a_plugin_error(tmp_path, monkeypatch,
                                                                            reload_after):
    (tmp_path / "contract_plugin.py").write_text(OBJECTIVE_PLUGIN.format(default="stein"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=["contract_plugin"])
    assert "objective 'declared_stein' refuses its own default_divergence" in str(info.value)
    assert "takes only the divergence 'mmd', not 'stein'" in str(info.value)


def test_an_objective_with_only_a_default_divergence_takes_any(tmp_path, monkeypatch, reload_after):
    (tmp_path / "contract_plugin_ok.py").write_text(OBJECTIVE_PLUGIN.format(default="mmd"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = plugins.load_registry(extra_modules=["contract_plugin_ok"])
    old = registry.get("objective", "old_style_mmd").cls
    assert old.describe_divergence() == "any (default 'stein')"
    assert old.divergence_refusal("adversarial") is None and old.divergence_refusal(None) is not None
    assert registry.get("objective", "declared_mmd").cls.divergence_refusal("kl") is not None


def test_plugins_command_lists_distribution_version_and_registrations(tmp_path, monkeypatch, capsys,
                                                                      reload_after):
    make_distribution(tmp_path, "benchbed-zero", "benchbed_zero_plugin3", "zero3")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.configure()
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "benchbed_zero_plugin3  [benchbed-zero 1.2.3]" in out
    assert "divergence: zero3" in out
    for kind in ("objective", "divergence", "prior", "architecture", "corruption", "metric",
                 "dataset", "executor"):
        assert f"  {kind}: " in out, kind


def test_a_hook_that_raises_is_reported_with_the_plugin_name(tmp_path, monkeypatch, reload_after):
    (tmp_path / "raising_plugin.py").write_text(textwrap.dedent('''
        from benchbed import hookimpl
        @hookimpl
        def register_metrics(register):
            raise RuntimeError("boom")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=["raising_plugin"])
    assert "raising_plugin" in str(info.value) and "register_metrics" in str(info.value)
    assert "boom" in str(info.value)


def test_params_that_would_accept_typos_are_refused(tmp_path, monkeypatch, reload_after):
    (tmp_path / "lax_plugin.py").write_text(textwrap.dedent('''
        from pydantic import BaseModel
        from benchbed import hookimpl
        from benchbed.plugin_api.components import Prior
        class Lax(Prior):
            class Params(BaseModel):
                scale: float = 1.0
        @hookimpl
        def register_priors(register):
            register("lax", Lax)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_registry(extra_modules=["lax_plugin"])
    assert "prior 'lax'" in str(info.value) and "benchbed.components.Params" in str(info.value)


def test_help_describes_the_tool_and_only_run_loads_plugins_for_its_flags(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "The ``benchbed`` command" not in out
    assert "benchmark the representations that autoencoding generative models learn" in out
    assert "Exit codes" in out

    def no_plugins():
        raise AssertionError("the plugins were loaded for a command without executor flags")
    monkeypatch.setattr("benchbed.cli._executor_flags", no_plugins)
    with pytest.raises(SystemExit):
        main(["validate", "--help"])


def test_plugins_json_verbose_and_by_name_give_what_the_text_listing_shows(capsys):
    import json
    assert main(["plugins", "--json", "-v"]) == 0
    listing = json.loads(capsys.readouterr().out)
    [objectives] = [e for e in listing if e["plugin"] == "benchbed_plugins.objectives"]
    mmd_vae = next(c for c in objectives["components"] if c["name"] == "mmd_vae")
    assert mmd_vae["kind"] == "objective" and "'mmd' only" in mmd_vae["divergence"]
    assert {"name": "lambda", "required": False} .items() <= next(
        p for p in mmd_vae["params"] if p["name"] == "lambda").items()
    assert main(["plugins", "--json", "mmd_vae"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["params"] == mmd_vae["params"] and shown["source"].startswith("benchbed_plugins.objectives")


INFINITE_DEFAULT = '''
import math
from benchbed import hookimpl
from benchbed.plugin_api.components import Divergence, Params

class Clipped(Divergence):
    """A divergence whose clip is off by default."""
    class Params(Params):
        clip: float = math.inf

    def forward(self, codes):
        return codes.z.sum() * 0.0

@hookimpl
def register_divergences(register):
    register("clipped", Clipped)
'''


def test_a_default_of_inf_gives_standard_json_in_the_schema_and_the_listing(tmp_path, monkeypatch, capsys,
                                                                           reload_after):
    import json

    def strict(text):  # what editors and other JSON readers do: no Infinity, no NaN
        def refuse(constant):
            raise ValueError(f"not standard JSON: {constant}")
        return json.loads(text, parse_constant=refuse)

    (tmp_path / "clipped_plugin.py").write_text(INFINITE_DEFAULT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV_PLUGINS, "clipped_plugin")
    plugins.configure()
    assert main(["plugins", "--json", "clipped"]) == 0
    [shown] = strict(capsys.readouterr().out)
    assert shown["params"] == [{"name": "clip", "required": False, "default": "inf", "description": ""}]
    assert main(["plugins", "--json", "-v"]) == 0
    strict(capsys.readouterr().out)
    assert main(["schema"]) == 0
    assert "clipped" in json.dumps(strict(capsys.readouterr().out))
