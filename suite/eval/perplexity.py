"""Perplexity of a checkpoint on fixed token windows: nats/token, bits/byte, perplexity.

Windows are `[n, seq_len + 1]` token rows like training samples (contract 2): the held-out
split's first `eval.samples` samples (exactly the in-loop evaluation's set), or an extra set
read with `data_order`'s readers and packed the same way (each document + EOS, concatenated,
cut every seq_len tokens). Bits per byte divide the summed loss by the UTF-8 bytes the
predicted tokens stand for, so tokenizers of different vocabularies compare (the Pile's and
Paloma's convention); EOS stands for no bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PerplexityResult:
    nll_sum: float  #: summed cross-entropy over predicted tokens, nats
    tokens: int  #: predicted tokens
    bytes: int  #: UTF-8 bytes those tokens decode to
    sample_nll: np.ndarray  #: mean nll of each window (for the standard error)

    def metrics(self) -> dict[str, tuple[float, float]]:
        """metric → (value, stderr); stderr over windows for `nll`, NaN where none."""
        nll = self.nll_sum / self.tokens
        windows = len(self.sample_nll)
        stderr = (
            float(np.std(self.sample_nll, ddof=1) / math.sqrt(windows)) if windows > 1 else math.nan
        )
        bpb = self.nll_sum / (math.log(2) * self.bytes) if self.bytes else math.nan
        return {
            "nll": (nll, stderr),
            "bits_per_byte": (bpb, math.nan),
            "perplexity": (math.exp(min(nll, 700.0)), math.nan),
        }


def token_byte_lengths(tokenizer_json: Path) -> np.ndarray:
    """UTF-8 bytes each token id stands for (special tokens: 0).

    Byte-level BPE (GPT-2/NeoX, ours) writes one character per byte, so a token's byte count
    is its length; other tokenizers fall back to decoding the id alone.
    """
    from tokenizers import Tokenizer
    from tokenizers.pre_tokenizers import ByteLevel

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    byte_chars = set(ByteLevel.alphabet())  # the 256 characters standing for the 256 bytes
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    lengths = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    for token, index in vocab.items():
        if token in special:
            continue
        if all(ch in byte_chars for ch in token):
            lengths[index] = len(token)
        else:
            lengths[index] = len(tokenizer.decode([index]).encode("utf-8"))
    return lengths


def pack_documents(
    token_lists: list[list[int]], eos_id: int, seq_len: int, max_tokens: int
) -> np.ndarray:
    """Documents + EOS, concatenated, as `[n, seq_len + 1]` windows with a shared boundary
    token (contract 2), covering at most `max_tokens` predicted tokens."""
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        stream.append(eos_id)
        if len(stream) > max_tokens + 1:
            break
    windows = min((len(stream) - 1) // seq_len, max(1, max_tokens // seq_len))
    flat = np.asarray(stream, dtype=np.int64)
    return np.stack([flat[k * seq_len : k * seq_len + seq_len + 1] for k in range(windows)])


def set_windows(
    inputs: list[str],
    tokenizer_json: Path,
    text_field: str,
    eos_id: int,
    seq_len: int,
    max_tokens: int,
) -> np.ndarray:
    """An extra perplexity set's windows, read with `data_order`'s readers."""
    from tokenizers import Tokenizer

    from data_order.corpus import expand_inputs, read_documents

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    token_lists, total = [], 0
    for document in read_documents(expand_inputs(list(inputs)), text_field):
        ids = tokenizer.encode(document.text, add_special_tokens=False).ids
        token_lists.append(ids)
        total += len(ids) + 1
        if total > max_tokens + 1:
            break
    return pack_documents(token_lists, eos_id, seq_len, max_tokens)


def perplexity(
    model, windows: np.ndarray, byte_lengths: np.ndarray, batch_size: int
) -> PerplexityResult:
    """Cross-entropy of `model` predicting tokens 1…L of each window from the ones before.

    Logits are cast to float32 before the softmax (a bf16/fp16 model's loss is then only as
    rough as its logits), sums are accumulated in float64.
    """
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    sample_nll = np.zeros(len(windows), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            chunk = torch.from_numpy(windows[start : start + batch_size]).to(device)
            logits = model(input_ids=chunk[:, :-1], use_cache=False).logits.float()
            losses = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="none"
            )
            sample_nll[start : start + len(chunk)] = (
                losses.view(len(chunk), -1).double().mean(dim=1).cpu().numpy()
            )
    targets = windows[:, 1:]
    tokens = int(targets.size)
    nll_sum = float(sample_nll.sum() * targets.shape[1])
    return PerplexityResult(nll_sum, tokens, int(byte_lengths[targets].sum()), sample_nll)
