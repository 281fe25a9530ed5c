"""Disentanglement scores (one module each, with its equation and source), their shared
factor helpers and figures."""
