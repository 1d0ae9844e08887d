"""Runtime stage: the policy runtime and the executors; the only part the policy node imports."""
