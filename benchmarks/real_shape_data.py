"""A Pythia-shaped dataset in seconds, offline: pre-shuffled samples of synthetic token ids.

Training Pythia's real shapes needs samples of 2049 token ids below the GPT-NeoX-20B
tokenizer's 50,277 and a `tokenizer.json` (the trainer exports it with every checkpoint).
Neither the Pile nor that tokenizer is reachable offline, and training a 50k BPE on the
embedded stdlib corpus costs tens of seconds and yields only ~1,500 samples of 2049 tokens
(3.2M tokens): too few for 30 updates of 64 samples on 8 GPUs. So this writes the data
directly in the layout Pythia released and the trainer reads as is (`data_order`'s
pre-shuffled layout, `data_order/README.md`):

* `<prefix>.bin/.idx` — one Megatron item of `seq_len + 1` uint16 ids per sample, in
  training order (position j is item j);
* `<prefix>.json` — our sidecar: fingerprint, vocabulary (50,277), EOS id (0), tokenizer;
* `<prefix>.tokenizer.json` — a byte-level BPE with exactly `vocab_size` tokens and no
  merges (EOS `<|endoftext|>` = 0, the 256 byte symbols, then filler tokens): enough for the
  export's `PreTrainedTokenizerFast` and for decoding, never used to tokenize text.

Token ids are drawn i.i.d. from a Zipf law (p ∝ 1/(rank + 2.7)), not uniformly: a model
can learn the unigram distribution within a few updates, so the loss visibly falls from
ln(V) ≈ 10.8 towards the law's entropy (≈ 8.1 nats) and a broken update shows. Seeded:
the same arguments give the same bytes and the same fingerprint.

Used by `benchmarks/gpu_check.py` (the GPU check) and, as a subprocess, by the real-shape
test (`tests/test_real_shapes.py`). Run: `python benchmarks/real_shape_data.py PREFIX
--samples 1920`; prints the prefix to pass as `datasets.<name>.path=`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

#: Pythia's tokenizer size (GPT-NeoX-20B BPE) and its end-of-document id.
PYTHIA_VOCAB, PYTHIA_EOS_ID, EOS_TOKEN = 50277, 0, "<|endoftext|>"
#: Zipf offset: the most frequent id gets ~3.7% of the mass rather than the ~9% of a plain
#: 1/rank law, so no single token dominates the loss (as in natural text).
ZIPF_OFFSET = 2.7


def _fingerprint(samples: int, seq_len: int, vocab_size: int, seed: int) -> str:
    params = {"kind": "synthetic-zipf", "offset": ZIPF_OFFSET, "samples": samples}
    params |= {"seq_len": seq_len, "vocab_size": vocab_size, "seed": seed, "version": 1}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return f"synthetic-zipf-{digest}"


def write_tokenizer(path: Path, vocab_size: int = PYTHIA_VOCAB) -> Path:
    """A byte-level BPE `tokenizer.json` with `vocab_size` tokens, EOS first, no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {EOS_TOKEN: PYTHIA_EOS_ID}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    while len(vocab) < vocab_size:  # unreachable by merges: ids only a model can emit
        vocab[f"<|filler_{len(vocab)}|>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS_TOKEN])
    tokenizer.save(str(path))
    return path


def write_dataset(
    prefix: str | Path,
    samples: int,
    seq_len: int = 2048,
    vocab_size: int = PYTHIA_VOCAB,
    seed: int = 1234,
) -> Path:
    """Write `samples` pre-shuffled samples of `seq_len + 1` Zipf-distributed ids at `prefix`.

    Returns the prefix (what `datasets.<name>.path=` takes). Idempotent: a dataset already
    there with the same fingerprint is kept as is (runs sharing a work folder build once).
    """
    from data_order.atomic import write_json
    from data_order.indexed import IndexedWriter, token_dtype

    prefix = Path(prefix).resolve()
    fingerprint = _fingerprint(samples, seq_len, vocab_size, seed)
    sidecar = Path(f"{prefix}.json")
    if sidecar.is_file() and json.loads(sidecar.read_text()).get("fingerprint") == fingerprint:
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = Path(f"{prefix}.tokenizer.json")
    write_tokenizer(tokenizer, vocab_size)
    weights = 1.0 / (np.arange(vocab_size, dtype=np.float64) + ZIPF_OFFSET)
    cumulative = np.cumsum(weights / weights.sum())
    rng = np.random.Generator(np.random.PCG64(seed))
    writer = IndexedWriter(prefix, token_dtype(vocab_size))
    try:
        for _ in range(samples):
            ids = np.searchsorted(cumulative, rng.random(seq_len + 1), side="right")
            writer.add_item(np.minimum(ids, vocab_size - 1))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    # The sidecar last: `open_dataset` trusts it, so it never describes a half-written file.
    write_json(
        sidecar,
        {
            "kind": "preshuffled",
            "fingerprint": fingerprint,
            "num_positions": samples,
            "seq_len": seq_len,
            "vocab_size": vocab_size,
            "eos_id": PYTHIA_EOS_ID,
            "default_global_batch": 1024,
            "tokenizer": tokenizer.name,
            "synthetic": "i.i.d. Zipf token ids (benchmarks/real_shape_data.py)",
        },
    )
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", type=Path, help="output prefix (<prefix>.bin/.idx/.json)")
    parser.add_argument("--samples", type=int, required=True, help="samples to write")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--vocab-size", type=int, default=PYTHIA_VOCAB)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    print(write_dataset(args.prefix, args.samples, args.seq_len, args.vocab_size, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
