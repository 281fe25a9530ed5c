"""Stage 2, the plan: a checked suite expanded into runs with their keys, and the
executor that will run them."""
