"""The plugin hooks, at their old path (they live in ``benchbed.plugin_api.hookspecs``;
plugins mark hooks with ``benchbed.hookimpl``)."""

from benchbed.plugin_api.hookspecs import *  # noqa: F401,F403
