"""The plugin registry, at its old path (it lives in ``benchbed.plugin_api.registry``):
``get_registry``, ``load_registry``, ``configure`` and friends keep working from here."""

from benchbed.plugin_api.registry import *  # noqa: F401,F403
