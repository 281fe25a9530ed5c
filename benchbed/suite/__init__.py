"""Stage 1, the suite: YAML read with line numbers, the protocol models, loading with
complete checks, and the JSON Schema."""
