"""Built-in divergences between the aggregate posterior and the prior."""
