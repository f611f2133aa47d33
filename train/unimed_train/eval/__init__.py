"""Evaluation of CLIP models on CLIP_benchmark-layout eval sets: `python -m unimed_train.eval`.

The task and protocol names live here, not in the runner, so that `--help` imports no torch."""

TASKS = ("zeroshot", "linear_probe", "retrieval")
PROTOCOLS = ("unimed",)  # scoring protocols of published tables (`--protocol`); see protocols.py
