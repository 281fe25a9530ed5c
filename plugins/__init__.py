"""benchbed's built-in plugins.

Installed as the ``benchbed_plugins`` package. Every module here that
implements a ``register_*`` hook is loaded as a plugin, through exactly the
hooks a third-party plugin uses.
"""
