"""The model side of the trainer: `factory` builds it, `pretrained` loads pretrained files into it
non-strictly, `optimizer` groups its parameters for AdamW."""

from unimed_train.model.factory import SCHEMA_PREFIXES, Built, build_model, hf_text_cfg
from unimed_train.model.optimizer import param_groups
from unimed_train.model.pretrained import LoadReport, load_checkpoint_nonstrict, read_state_dict

__all__ = [
    "SCHEMA_PREFIXES",
    "Built",
    "LoadReport",
    "build_model",
    "hf_text_cfg",
    "load_checkpoint_nonstrict",
    "param_groups",
    "read_state_dict",
]
