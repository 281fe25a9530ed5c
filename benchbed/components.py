"""The component base classes, at the path plugins import them from.

They live in ``benchbed.plugin_api.components``; this module is the public
name third-party plugins use (``from benchbed.components import Divergence``).
"""

from benchbed.plugin_api.components import *  # noqa: F401,F403
