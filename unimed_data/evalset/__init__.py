"""`unimed-data evalset`: evaluation sets in the CLIP_benchmark webdataset layout.

A source (folder-per-class tree, classification manifest, or our own build's shards) yields
candidates (`sources`), the labels decide the task and classes (`samples`), images are converted
or copied (`images`) and written as `<split>/<n>.tar` with the metadata files beside them
(`layout`, `templates`), all driven by `assemble.write_evalset`.
"""

from unimed_data.evalset.assemble import EvalSetSummary, write_evalset
from unimed_data.evalset.samples import Candidate, Collected, EvalSetError
from unimed_data.evalset.sources import from_build, from_folder, from_manifest
from unimed_data.evalset.templates import load_templates, prompt_ensemble

__all__ = [
    "Candidate",
    "Collected",
    "EvalSetError",
    "EvalSetSummary",
    "from_build",
    "from_folder",
    "from_manifest",
    "load_templates",
    "prompt_ensemble",
    "write_evalset",
]
