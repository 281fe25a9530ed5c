"""The hooks a benchbed plugin implements: one per kind in ``benchbed.plugin_api.kinds.TABLE``.

Every hook receives a ``register(name, cls)`` callback. Call it once per
component the plugin provides; ``cls`` subclasses the matching base in
``benchbed.components``. The built-in plugins (``benchbed_plugins``) use
exactly these hooks. A plugin implements only the hooks it needs::

    from benchbed import hookimpl

    @hookimpl
    def register_divergences(register):
        register("energy", EnergyDistance)

The hooks: register_objectives, register_divergences, register_priors,
register_architectures, register_corruptions, register_metrics,
register_datasets, register_executors (``benchbed plugins`` lists them with
what each kind does).
"""

import pluggy

from benchbed.plugin_api.kinds import TABLE, Kind

hookspec = pluggy.HookspecMarker("benchbed")
hookimpl = pluggy.HookimplMarker("benchbed")


def _spec(kind: Kind):
    def hook(register):
        pass

    hook.__name__ = hook.__qualname__ = kind.hook
    hook.__module__ = __name__
    hook.__doc__ = (f"Register {kind.name} components (``benchbed.components.{kind.base}``): "
                    f"{kind.does}; e.g. {kind.examples}.")
    return hookspec(hook)


for _kind in TABLE:
    globals()[_kind.hook] = _spec(_kind)
del _kind
