"""benchbed: a plugin-based benchmark of autoencoding generative models."""

__version__ = "0.1.0"
# Part of every built-in run's key: bump it when a change alters what training
# computes, not for every release, so published records stay valid.
RESULTS_VERSION = "0.1.0"

from benchbed.plugin_api.hookspecs import hookimpl  # noqa: E402  (public API for plugins)

__all__ = ["__version__", "hookimpl"]
