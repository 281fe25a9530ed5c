"""Loading plugins and the registry of what they registered.

Plugins come, in this order, from the built-ins (``DEFAULT_PLUGINS``, the ``benchbed_plugins``
package), from distributions with an entry point in the ``benchbed`` group (unless
``BENCHBED_DISABLE_PLUGIN_AUTOLOAD`` is set), and from modules named in ``BENCHBED_PLUGINS`` or by
``benchbed --plugin``. Two plugins registering one name in one kind is an error naming both.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pluggy

import benchbed
from benchbed.plugin_api import hookspecs
from benchbed.plugin_api.components import BASES, Component
from benchbed.plugin_api.kinds import HOOKS, KINDS, TABLE
from benchbed.errors import PluginError, UnknownComponent

ENTRY_POINT_GROUP = "benchbed"
ENV_DISABLE_AUTOLOAD = "BENCHBED_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "BENCHBED_PLUGINS"
BUILTIN_PACKAGE = "benchbed_plugins"
BUILTIN_DISTRIBUTION = "benchbed"
LOCAL_MODULE = "local module"  # the distribution of a module named by --plugin or BENCHBED_PLUGINS
# A suite writes a name as a bare YAML scalar (`name: mmd`) and the CLI takes it as an argument.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")

# The built-in plugin modules, loaded in this order (a new built-in module is
# added here; tests/test_plugin_discovery.py checks none is left out).
DEFAULT_PLUGINS: tuple[str, ...] = tuple(f"{BUILTIN_PACKAGE}.{name}" for name in (
    # data
    "datasets.digits", "datasets.mnist", "datasets.fashion_mnist", "datasets.celeba", "datasets.dsprites",
    # models and training
    "architectures.mlp", "architectures.conv", "architectures.pixelcnn", "priors", "objectives",
    "btcvae", "factorvae",
    "divergences.kl", "divergences.mmd", "divergences.stein", "divergences.adversarial",
    # evaluation
    "corruptions", "metrics.recon", "metrics.svm", "metrics.latent_metrics", "metrics.nll",
    "metrics.class_ce", "metrics.fid", "metrics.figures",
    "metrics.disentanglement.beta_vae_score", "metrics.disentanglement.factorvae_score",
    "metrics.disentanglement.mig", "metrics.disentanglement.sap", "metrics.disentanglement.dci",
    "metrics.disentanglement.gaussian_tc", "metrics.disentanglement.figures",
    # execution
    "executors.local", "executors.ray",
))


@dataclass(frozen=True)
class Source:
    """Where a plugin came from, for listings and error messages."""

    plugin: str  # module or entry point name
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.plugin} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    cls: type[Component]
    source: Source


class Registry:
    """What every loaded plugin registered, by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}
        self.sources: list[Source] = []

    def add(self, registration: Registration) -> None:
        kind, name = registration.kind, registration.name
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} {name!r} is registered twice: by {existing.source} "
                f"and by {registration.source}. Uninstall or rename one of them.")
        self._entries[kind][name] = registration

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> Registration:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponent(kind, name, self._entries[kind]) from None

    def create(self, kind: str, spec: dict[str, Any] | str) -> Component:
        """Build a component from ``{"name": ..., **params}`` or a bare name."""
        if isinstance(spec, str):
            spec = {"name": spec}
        spec = dict(spec)
        cls = self.get(kind, spec.pop("name")).cls
        return cls(cls.Params(**spec))

    def by_source(self) -> dict[Source, dict[str, list[str]]]:
        out: dict[Source, dict[str, list[str]]] = {s: {} for s in self.sources}
        for kind in KINDS:
            for name, reg in sorted(self._entries[kind].items()):
                out.setdefault(reg.source, {}).setdefault(kind, []).append(name)
        return out

    def all(self) -> Iterable[Registration]:
        for kind in KINDS:
            yield from (self._entries[kind][n] for n in sorted(self._entries[kind]))


def _register_module(pm: pluggy.PluginManager, module: Any, name: str) -> None:
    if pm.get_plugin(name) is not None or pm.is_registered(module):
        return
    pm.register(module, name=name)


def load_registry(extra_modules: Iterable[str] = (), autoload: bool | None = None) -> Registry:
    """Load every plugin and collect what it registers."""
    pm = pluggy.PluginManager("benchbed")
    pm.add_hookspecs(hookspecs)
    sources: dict[str, Source] = {}
    for module in map(importlib.import_module, DEFAULT_PLUGINS):
        _register_module(pm, module, module.__name__)
        sources[module.__name__] = Source(module.__name__, BUILTIN_DISTRIBUTION, benchbed.__version__)

    if autoload is None:
        autoload = not os.environ.get(ENV_DISABLE_AUTOLOAD)
    if autoload:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist, version = (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")
            try:
                module = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                raise PluginError(f"plugin {ep.name!r} from distribution {dist!r} failed to "
                                  f"load: {type(exc).__name__}: {exc}") from exc
            _register_module(pm, module, ep.name)
            sources[ep.name] = Source(ep.value, dist, version)

    env_modules = [m.strip() for m in os.environ.get(ENV_PLUGINS, "").split(",") if m.strip()]
    for path in [*env_modules, *extra_modules]:
        try:
            module = importlib.import_module(path)
        except Exception as exc:
            hint = ("; --plugin and BENCHBED_PLUGINS take a module name importable from "
                    "PYTHONPATH (e.g. `PYTHONPATH=plugins_dir benchbed --plugin my_plugin ...`), "
                    "not a file path") if path.endswith(".py") or "/" in path or "\\" in path else ""
            raise PluginError(f"could not import plugin module {path!r}: "
                              f"{type(exc).__name__}: {exc}{hint}") from exc
        _register_module(pm, module, path)
        sources.setdefault(path, Source(path, LOCAL_MODULE, _digest(module)))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} (hooks are: {', '.join(HOOKS)})") from exc

    registry = Registry()
    registry.sources = list(dict.fromkeys(sources.values()))
    for entry in TABLE:
        kind, hook_name, base = entry.name, entry.hook, BASES[entry.name]
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            source = sources[impl.plugin_name]

            def register(name: str, cls: type, _kind=kind, _base=base, _source=source) -> None:
                if not (isinstance(cls, type) and issubclass(cls, _base)):
                    raise PluginError(f"{_source} registered {_kind} {name!r} as {cls!r}, "
                                      f"which is not a subclass of benchbed.components.{_base.__name__}")
                if not isinstance(name, str) or not NAME.fullmatch(name):
                    raise PluginError(f"{_source} registered a {_kind} with a bad name {name!r}: a name is "
                                      "a letter, then letters, digits, '_', '-' or '.'")
                if cls.Params.model_config.get("extra") != "forbid":
                    raise PluginError(f"{_source}: {_kind} {name!r} has a Params model that accepts "
                                      "unknown keys; subclass benchbed.components.Params so typos "
                                      "in suites are caught")
                _check_contract(_source, _kind, name, cls)
                registry.add(Registration(_kind, name, cls, _source))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:  # a broken plugin must say who it is
                raise PluginError(f"plugin {source} failed in {hook_name}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return registry


def _digest(module: Any) -> str:
    """A local module's version: a digest of its source (every .py of a package), as it has no release."""
    files = sorted(Path(next(iter(module.__path__))).rglob("*.py")) if hasattr(module, "__path__") else [
        Path(module.__file__)] if getattr(module, "__file__", None) else []
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return f"sha256:{digest.hexdigest()[:12]}" if files else "-"


def _check_contract(source: Source, kind: str, name: str, cls: type[Component]) -> None:
    """What a base declares about its subclasses, checked once at registration."""
    if kind == "objective" and cls.default_divergence is not None:
        refusal = cls.divergence_refusal(cls.default_divergence.get("name"))
        if refusal is not None:
            raise PluginError(f"{source}: objective {name!r} refuses its own default_divergence: "
                              f"it {refusal}")


_REGISTRY: Registry | None = None
_EXTRA: tuple[str, ...] = ()


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry(_EXTRA)
    return _REGISTRY


def configure(extra_modules: Iterable[str] = ()) -> Registry:
    """(Re)load the registry with extra plugin modules (``--plugin``)."""
    global _REGISTRY, _EXTRA
    _EXTRA = tuple(extra_modules)
    _REGISTRY = None
    return get_registry()
