"""ACT training, policy runtime, executors, evaluation and bag conversion."""
