"""Tokenizers: train a byte-level BPE offline, find the EOS id, tokenize documents in parallel.

Only this module imports `tokenizers`. Training is deterministic: the same corpus and
vocabulary size give the same `tokenizer.json` bytes (checked by a test), because the BPE
trainer breaks frequency ties by byte order and we feed it the documents in corpus order.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from data_order.corpus import Document
from data_order.errors import DataConfigError

#: GPT-NeoX's end-of-document token; id 0 in tokenizers we train, like Pythia's.
EOS_TOKEN = "<|endoftext|>"
EOS_CANDIDATES = (EOS_TOKEN, "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>")
#: Documents handed to a worker at a time: big enough to amortise pickling, small enough
#: to keep both cores busy and the progress bar moving.
CHUNK_CHARS = 1 << 20
#: Chunks submitted ahead per worker process: 2 keeps each busy while the parent reads the
#: next, and bounds the text held in memory to ~2 x workers x CHUNK_CHARS whatever the shard.
IN_FLIGHT_PER_WORKER = 2


def train_bytelevel_bpe(texts: Iterable[str], vocab_size: int) -> str:
    """Train a GPT-2-style byte-level BPE on `texts`; returns the tokenizer JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.to_str()


def load_tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json)


def tokenizer_info(tokenizer_json: str, eos_token: str | None) -> tuple[int, int]:
    """(vocab size incl. added tokens, EOS id) of a tokenizer JSON."""
    tokenizer = load_tokenizer(tokenizer_json)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    candidates = (eos_token,) if eos_token else EOS_CANDIDATES
    for name in candidates:
        if name in vocab:
            return tokenizer.get_vocab_size(with_added_tokens=True), vocab[name]
    raise DataConfigError(
        "eos_token",
        eos_token,
        f"the tokenizer has none of {list(candidates)}; set eos_token to its end-of-document token",
    )


@dataclass
class TokenizedDocument:
    id: str  #: document id (see corpus.Document)
    text_sha256: str  #: hash of the UTF-8 text: exact-dedup key and held-out split key
    tokens: np.ndarray  #: token ids followed by one EOS


_worker_tokenizer = None


def _init_worker(tokenizer_json: str) -> None:
    # One core per worker process: rayon threads inside each would oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_json)


def _encode_chunk(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    # encode_batch_fast skips the character offsets we never use; same ids as encode_batch.
    ids = [e.ids for e in _worker_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _chunks(documents: Iterable[Document]) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    chars = 0
    for doc in documents:
        chunk.append(doc)
        chars += len(doc.text)
        if chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def tokenize_documents(
    documents: Iterable[Document],
    tokenizer_json: str,
    eos_id: int,
    workers: int,
    progress: bool = False,
    description: str = "tokenize",
) -> Iterator[TokenizedDocument]:
    """Tokenize `documents` in order with `workers` processes (1: in this process)."""
    from tqdm import tqdm

    pending: list[list[Document]] = []

    def texts_of(chunks: Iterable[list[Document]]) -> Iterator[list[str]]:
        for chunk in chunks:
            pending.append(chunk)
            yield [d.text for d in chunk]

    chunks = _chunks(documents)
    head = list(itertools.islice(chunks, 2))
    if len(head) < 2:
        workers = 1  # a single chunk: starting worker processes would cost more than it saves
    # None: only on a terminal — in a log or a pipe a bar is noise around the real messages.
    bar = tqdm(desc=description, unit="doc", disable=None if progress else True, leave=False)
    with _pool(tokenizer_json, workers) as encode_many:
        try:
            for flat, lengths in encode_many(texts_of(itertools.chain(head, chunks))):
                chunk = pending.pop(0)
                bounds = np.concatenate([[0], np.cumsum(lengths)])
                for j, doc in enumerate(chunk):
                    tokens = np.empty(lengths[j] + 1, dtype=np.int64)
                    tokens[:-1] = flat[bounds[j] : bounds[j + 1]]
                    tokens[-1] = eos_id
                    yield TokenizedDocument(
                        doc.id, hashlib.sha256(doc.text.encode("utf-8")).hexdigest(), tokens
                    )
                bar.update(len(chunk))
        finally:
            bar.close()


def _bounded_imap(pool, chunks: Iterable[list[str]], in_flight: int) -> Iterator:
    """`pool.imap(_encode_chunk, chunks)` that reads at most `in_flight` chunks ahead.

    `Pool.imap` hands its whole input iterator to a feeder thread that consumes it as fast
    as it can: the parent would hold every not-yet-tokenized chunk of the shard (the whole
    shard's text when the workers are slower than the reader). Here a chunk is read only
    when one of the `in_flight` submitted chunks has come back, in order.
    """
    pending: collections.deque = collections.deque()
    for chunk in chunks:
        if len(pending) >= in_flight:
            yield pending.popleft().get()
        pending.append(pool.apply_async(_encode_chunk, (chunk,)))
    while pending:
        yield pending.popleft().get()


class _pool:
    """Context manager giving an ordered `map` over chunks: a process pool or in-process."""

    def __init__(self, tokenizer_json: str, workers: int):
        self.tokenizer_json, self.workers = tokenizer_json, workers
        self.pool = None

    def __enter__(self):
        if self.workers <= 1:
            _init_worker_in_process(self.tokenizer_json)
            return lambda chunks: map(_encode_chunk, chunks)
        # spawn, not fork: the parent may already run rayon threads (tokenizer training).
        self.pool = multiprocessing.get_context("spawn").Pool(
            self.workers, initializer=_init_worker, initargs=(self.tokenizer_json,)
        )
        return lambda chunks: _bounded_imap(self.pool, chunks, IN_FLIGHT_PER_WORKER * self.workers)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
        return False


def _init_worker_in_process(tokenizer_json: str) -> None:
    # In-process, the tokenizer's own rayon threads parallelise encode_batch.
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_json)
