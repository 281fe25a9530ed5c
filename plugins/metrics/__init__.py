"""Built-in evaluation metrics and their shared helpers."""
