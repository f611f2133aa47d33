"""Evaluation of CLIP models on CLIP_benchmark-layout eval sets: `python -m unimed_train.eval`."""
