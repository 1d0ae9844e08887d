"""Data stage: reading the HDF5 demo layout, the training dataset, normalisation statistics."""
