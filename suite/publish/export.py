"""Export a consolidated model as a transformers folder plus `scaling_suite.json`.

The trainer gathers tensor-parallel shards into one `PreTrainedModel` and calls
`export_checkpoint`; the folder it writes is what gets published as revision `step{N}`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from data_order.atomic import atomic_directory
from suite.errors import ConfigError, SuiteError
from suite.publish.metadata import (
    METADATA_FILE,
    CheckpointMeta,
    digest_folder,
    metadata_document,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from suite.publish.model_card import CardContext

#: safetensors' dtype names for the torch dtypes we train in.
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def export_checkpoint(
    model: PreTrainedModel,
    tokenizer_file: Path,
    out_dir: Path,
    meta: CheckpointMeta,
    *,
    eos_token: str = "<|endoftext|>",
    bos_token: str | None = None,
    card: CardContext | None = None,
) -> Path:
    """Write `model` (consolidated), its tokenizer and metadata to `out_dir`, atomically.

    The folder loads with `AutoModelForCausalLM.from_pretrained(out_dir)` and
    `AutoTokenizer.from_pretrained(out_dir)`. Weights are saved in the model's own dtype
    (checked after writing: Pythia's converter once saved a bf16 model as fp16). An existing
    `out_dir` (a re-export after a resume) is replaced as a whole. With `card`, the folder
    also gets its model card (`README.md`, `suite.publish.model_card`), rendered from the
    metadata just written.
    """
    from tokenizers import Tokenizer
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    tokenizer_file = Path(tokenizer_file)
    if not tokenizer_file.is_file():
        raise ConfigError("tokenizer_file", str(tokenizer_file), "pass an existing tokenizer.json")
    # Check the special tokens against the raw vocabulary: PreTrainedTokenizerFast would
    # silently *add* a missing one as a new token id the model has no embedding for.
    vocabulary = Tokenizer.from_file(str(tokenizer_file))
    for name, token in (("eos_token", eos_token), ("bos_token", bos_token)):
        if token is not None and vocabulary.token_to_id(token) is None:
            raise ConfigError(name, token, f"use a token of {tokenizer_file}'s vocabulary")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file), eos_token=eos_token, bos_token=bos_token or eos_token
    )
    dtype = _model_dtype(model)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not (tmp / "generation_config.json").exists():
            generation = GenerationConfig.from_model_config(model.config)
            generation.eos_token_id = tokenizer.eos_token_id
            generation.bos_token_id = tokenizer.bos_token_id
            generation.save_pretrained(tmp)
        _check_saved_dtype(tmp, dtype)
        files = digest_folder(tmp, exclude=(METADATA_FILE,))
        document = metadata_document(meta, dtype, files)
        (tmp / METADATA_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        if card is not None:
            from suite.publish.model_card import write_card

            write_card(tmp, card)
    return out_dir


def _model_dtype(model: PreTrainedModel) -> str:
    dtypes = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
    if len(dtypes) != 1:
        raise SuiteError(
            f"model has parameters in several dtypes {sorted(dtypes)}; cast it to one dtype "
            "before exporting so the published dtype is unambiguous"
        )
    return dtypes.pop()


def _check_saved_dtype(folder: Path, dtype: str) -> None:
    """Refuse to produce an export whose tensors or config.json claim another dtype."""
    from safetensors import safe_open

    expected = _SAFETENSORS_DTYPE.get(dtype)
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                saved = handle.get_slice(key).get_dtype()
                if expected is not None and saved != expected:
                    raise SuiteError(
                        f"{shard.name}:{key} was saved as {saved} but the model is {dtype}; "
                        "the export would silently change the dtype — fix the save path"
                    )
    config = json.loads((folder / "config.json").read_text())
    saved_config_dtype = config.get("dtype", config.get("torch_dtype"))
    if saved_config_dtype not in (None, dtype):
        raise SuiteError(
            f"config.json says dtype={saved_config_dtype!r} but the weights are {dtype}; "
            "set model.config.dtype before exporting"
        )
