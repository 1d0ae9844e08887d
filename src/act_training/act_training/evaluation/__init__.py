"""Evaluation stage: rollouts in the MuJoCo cell, results, the report."""
