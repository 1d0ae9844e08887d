"""Training stage: the training loop, checkpoints, timing of a preset."""
