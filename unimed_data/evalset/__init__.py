"""`unimed-data evalset`: evaluation sets in the CLIP_benchmark webdataset layout.

A source (folder-per-class tree or classification manifest, both read by the build's ingest stage,
or our own build's shards) yields candidates (`sources`), the labels decide the task and classes
(`samples`), images are converted or copied (`images`) and written as `<split>/<n>.tar` with the
metadata files beside them (`layout`, `templates`), all driven by `assemble.write_evalset`; `plan`
checks the command's options against the source they name and collects it. A benchmark recipe
writes many sets at once: UniMed-CLIP's 21 from its evaluation archive (`unimed_sets` says what they
are, `unimed_readers` reads each layout, `unimed_recipe.write_unimed_sets` writes them).
"""

from unimed_data.evalset.assemble import write_evalset
from unimed_data.evalset.samples import EvalSetError
from unimed_data.evalset.unimed_recipe import write_unimed_sets

__all__ = ["EvalSetError", "write_evalset", "write_unimed_sets"]
