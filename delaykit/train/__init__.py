"""Training loops (codec), their losses and evaluation."""
