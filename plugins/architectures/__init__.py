"""Built-in architectures (encoder/decoder pairs) and their output heads."""
