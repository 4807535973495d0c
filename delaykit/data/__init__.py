"""Training data: a seeded sentence generator and espeak-ng speech synthesis into manifest corpora."""
