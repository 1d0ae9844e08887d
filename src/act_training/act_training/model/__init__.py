"""Model stage: the ACT network (CVAE encoder, ResNet trunk, transformer) and its loss."""
