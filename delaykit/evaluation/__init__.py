"""Measuring models: word error rates and the figures `delaykit eval` reports for each mode."""
