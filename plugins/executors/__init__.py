"""Built-in executors: this machine, or a Ray cluster."""
