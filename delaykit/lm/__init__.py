"""The multi-stream language model: temporal transformer, depth transformer, heads and generation."""
