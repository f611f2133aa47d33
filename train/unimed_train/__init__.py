"""unimed_train: the bundled contrastive trainer and evaluator, built on open_clip and PyTorch DDP.

Installed under its own name, apart from the data pipeline (`unimed_data`), as open_clip keeps
`open_clip` (the library) apart from `open_clip_train` (the program). Needs the `train` extra.
"""
