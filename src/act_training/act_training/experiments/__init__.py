"""Experiments: the arm-0 -> mirrored-arm-1 transfer experiment."""
