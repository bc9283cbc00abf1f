"""The size ladder and architecture families → transformers configs, with analytic counts.

Pure Python: nothing here imports torch at module level, so planning is instant.
"""

from model_zoo.estimates import (
    BYTES,
    MemoryEstimate,
    Precision,
    flops_per_token,
    gpu_hours,
    memory_per_gpu,
    resume_checkpoint_bytes,
    training_flops,
)
from model_zoo.families import (
    FAMILIES,
    FAMILY_NAMES,
    Family,
    FamilyName,
    get_family,
    pad_vocab,
    swiglu_hidden,
)
from model_zoo.ladder import LADDERS, MINI_LADDER, PYTHIA_LADDER, SizeSpec, get_size

__all__ = [
    "BYTES",
    "FAMILIES",
    "FAMILY_NAMES",
    "LADDERS",
    "MINI_LADDER",
    "PYTHIA_LADDER",
    "Family",
    "FamilyName",
    "MemoryEstimate",
    "Precision",
    "SizeSpec",
    "flops_per_token",
    "get_family",
    "get_size",
    "gpu_hours",
    "memory_per_gpu",
    "pad_vocab",
    "resume_checkpoint_bytes",
    "swiglu_hidden",
    "training_flops",
]
