"""`suite batch INDEX`: the exact tokens of a global batch (contract 1), per DP rank (contract 3).

Batch i is rows [i*B, (i+1)*B) of the global order; checkpoint step{N} has seen batches
0 … N-1. `--docs` lists the documents of every row, with their token ranges, from the
dataset's provenance index (`data_order.provenance`; built on demand, saying so). Never imports torch, transformers or deepspeed (tested), so it answers in well
under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from suite.errors import SuiteError

SUMMARY_TOKENS = 12


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="suite batch",
        description="Print or save the tokens of global batch INDEX (0-based; update s consumes batch s-1).",
    )
    p.add_argument("index", type=int, help="first batch index (0-based)")
    p.add_argument("--to", type=int, help="last batch index, INCLUSIVE (default: INDEX)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset folder (suite prepare) or pre-shuffled .bin/.idx prefix",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="order the batches by this seed: a run's data_seed (its identity in run.json); "
        "default: the seed the dataset was prepared with",
    )
    p.add_argument(
        "--expect-fingerprint",
        help="fail unless the dataset (in the order of --seed) has this fingerprint",
    )
    add_layout_arguments(p)
    p.add_argument("--dp-rank", type=int, help="only the rows of this data-parallel rank")
    p.add_argument("--micro-step", type=int, help="only this micro step (needs --dp-rank)")
    p.add_argument(
        "--docs",
        action="store_true",
        help="list the documents of every row: corpus id and token range of each inside the row",
    )
    p.add_argument(
        "--decode", action="store_true", help="decode rows to text with the dataset's tokenizer"
    )
    p.add_argument(
        "--tokenizer", help="tokenizer.json for decoding (pre-shuffled data without one)"
    )
    p.add_argument(
        "--out", help="write the tokens to FILE.npy (int64 array) or FILE.jsonl (one row per line)"
    )
    return p


def add_layout_arguments(p: argparse.ArgumentParser) -> None:
    """The batch layout flags, shared with `suite seen`."""
    p.add_argument(
        "--global-batch",
        type=int,
        help="B in samples (default: the dataset's, else 1024 as Pythia)",
    )
    p.add_argument("--dp-size", type=int, default=1, help="data-parallel ranks (default 1)")
    p.add_argument(
        "--micro-batch", type=int, help="samples per rank per micro step (default B/(dp*accum))"
    )
    p.add_argument("--grad-accum", type=int, default=1, help="micro steps per update (default 1)")


def _layout(args, global_batch: int):
    from data_order import BatchLayout, DataConfigError

    if args.micro_step is not None and args.dp_rank is None:
        raise DataConfigError(
            "--micro-step", args.micro_step, "needs --dp-rank (a micro step is per rank)"
        )
    for flag, value in (
        ("--dp-size", args.dp_size),
        ("--grad-accum", args.grad_accum),
        ("--micro-batch", args.micro_batch),
    ):
        if value is not None and value < 1:
            raise DataConfigError(flag, value, "use a positive count")
    micro = args.micro_batch
    if micro is None:
        share = args.dp_size * args.grad_accum
        if share < 1 or global_batch % share:
            raise DataConfigError(
                "--global-batch",
                global_batch,
                f"is not divisible by dp_size x grad_accum = {share}; give --micro-batch",
            )
        micro = global_batch // share
    return BatchLayout(global_batch, micro, args.dp_size, args.grad_accum)


def _rows(dataset, args, layout, index: int):
    """(tokens [n, seq_len+1], global positions [n], micro step of each row or None)."""
    import numpy as np

    from data_order import rank_rows

    if args.dp_rank is None:
        tokens = dataset.batch(index, layout.global_batch)
        positions = np.arange(index * layout.global_batch, (index + 1) * layout.global_batch)
        return tokens, positions, None
    positions = dataset.rank_positions(layout, index, args.dp_rank, args.micro_step)
    steps = (
        np.full(positions.shape, args.micro_step)
        if args.micro_step is not None
        else (np.repeat(np.arange(layout.grad_accum), layout.micro_batch).reshape(positions.shape))
    )
    assert (positions == rank_rows(layout, index, args.dp_rank, args.micro_step)).all()
    flat = positions.reshape(-1)
    return dataset.samples(dataset.sample_ids(flat), f"batch {index}"), flat, steps.reshape(-1)


def _describe(positions) -> str:
    flat = positions.reshape(-1).tolist()
    contiguous = flat == list(range(flat[0], flat[0] + len(flat)))
    return f"{flat[0]}..{flat[-1]}" if contiguous or len(flat) > 8 else str(flat)


def _save(path: Path, arrays: list, records: list[dict]) -> None:
    import numpy as np

    from data_order.atomic import write_bytes, write_npy

    if path.suffix == ".npy":
        write_npy(path, arrays[0] if len(arrays) == 1 else np.stack(arrays))
    else:
        write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def open_data(args):
    """The dataset of `--data`, in the order of `--seed`, checked against `--expect-fingerprint`."""
    from data_order import DataConfigError, open_dataset

    if not args.data.strip():
        raise DataConfigError("--data", args.data, "give a dataset folder (suite prepare)")
    dataset = open_dataset(args.data, tokenizer_path=getattr(args, "tokenizer", None))
    if args.seed is not None:
        from suite.data_seed import with_data_seed

        if not 0 <= args.seed < 2**63:  # numpy's SeedSequence: non-negative; run.json: 63 bits
            raise DataConfigError("--seed", args.seed, "use an integer in [0, 2**63 - 1]")
        dataset = with_data_seed(dataset, args.seed, None, field="--seed")
    dataset.check_fingerprint(args.expect_fingerprint)
    return dataset


def say(prog: str):
    """A console line on stderr (kept out of stdout, which may be piped)."""
    return lambda line: print(f"{prog}: {line}", file=sys.stderr, flush=True)


def describe_slices(slices) -> str:
    """`row[a:b] id[c:d]/n` for each document of a row: its tokens in the row, in the document."""
    return " | ".join(
        f"row[{s.row_start}:{s.row_stop}] {s.id}[{s.doc_start}:{s.doc_stop}]/{s.doc_tokens}"
        for s in slices
    )


def run(args) -> int:
    from data_order import DataConfigError, batch_hash, open_index

    if args.out and not args.out.endswith((".npy", ".jsonl")):
        raise DataConfigError("--out", args.out, "must end in .npy or .jsonl")
    last = args.index if args.to is None else args.to
    if last < args.index:
        raise DataConfigError(
            "--to", args.to, f"is the last batch, inclusive; give a value >= INDEX={args.index}"
        )
    dataset = open_data(args)
    if args.global_batch is not None and args.global_batch < 1:
        raise DataConfigError("--global-batch", args.global_batch, "use a positive batch size")
    global_batch = args.global_batch or dataset.default_global_batch
    layout = _layout(args, global_batch)
    decoder = None
    if args.decode:
        if dataset.tokenizer_path is None or not dataset.tokenizer_path.is_file():
            raise DataConfigError(
                "--tokenizer", args.tokenizer, "decoding needs a tokenizer.json; give --tokenizer"
            )
        from tokenizers import Tokenizer

        try:
            decoder = Tokenizer.from_file(str(dataset.tokenizer_path))
        except Exception as err:  # tokenizers raises a bare Exception for a bad file
            raise DataConfigError(
                "--tokenizer",
                str(dataset.tokenizer_path),
                f"not a tokenizer.json ({(str(err).splitlines() or ['unreadable'])[0]}); give "
                "the dataset's own",
            ) from None
    # Refuse a range past the data before printing any of it (not after batch 36 of 40).
    batches = dataset.num_positions // layout.global_batch
    if batches == 0:
        raise DataConfigError(
            "--global-batch",
            layout.global_batch,
            f"more than the {dataset.num_positions} samples {dataset.path} orders; use a "
            "smaller --global-batch",
        )
    if not 0 <= args.index <= last < batches:
        wrong_start = args.to is None or not 0 <= args.index < batches
        raise DataConfigError(
            "batch_index" if wrong_start else "--to",
            args.index if wrong_start else args.to,
            f"{dataset.path} has batches 0..{batches - 1} at global_batch={layout.global_batch}",
        )
    print(
        f"data {dataset.path}  fingerprint {dataset.fingerprint}  seq_len {dataset.seq_len}  "
        + (f"seed {dataset.seed}  " if hasattr(dataset, "seed") else "")
        + f"B={layout.global_batch} (micro {layout.micro_batch} x dp {layout.dp_size} x accum {layout.grad_accum})"
    )
    provenance = open_index(dataset, say=say("suite batch")) if args.docs else None
    arrays, records = [], []
    for index in range(args.index, last + 1):
        tokens, positions, steps = _rows(dataset, args, layout, index)
        if args.dp_rank is not None and args.micro_step is None:
            shaped = tokens.reshape(layout.grad_accum, layout.micro_batch, -1)
        else:
            shaped = tokens
        arrays.append(shaped)
        who = (
            ""
            if args.dp_rank is None
            else f" dp_rank {args.dp_rank}"
            + ("" if args.micro_step is None else f" micro_step {args.micro_step}")
        )
        print(
            f"batch {index}{who}: shape {list(shaped.shape)}  hash {batch_hash(shaped)}  "
            f"positions {_describe(positions)}  first tokens {tokens[0, :SUMMARY_TOKENS].tolist()}"
        )
        if decoder is not None and not args.out:
            print(
                f"  row 0: {decoder.decode(tokens[0].tolist(), skip_special_tokens=False)[:300]!r}"
            )
        row_docs = None
        if provenance is not None:
            sample_ids = dataset.sample_ids(positions).tolist()
            row_docs = provenance.samples_documents(sample_ids)
            for i, (pos, sid) in enumerate(zip(positions.tolist(), sample_ids, strict=True)):
                step = "" if steps is None else f" micro_step {int(steps[i])}"
                print(
                    f"  row {pos - index * layout.global_batch}{step} sample {sid}: "
                    + describe_slices(row_docs[i])
                )
        if args.out and args.out.endswith(".jsonl"):
            sample_ids = dataset.sample_ids(positions)
            for row, (pos, sid) in enumerate(
                zip(positions.tolist(), sample_ids.tolist(), strict=True)
            ):
                record = {
                    "batch": index,
                    "position": pos,
                    "sample": sid,
                    "tokens": tokens[row].tolist(),
                }
                if args.dp_rank is not None:
                    record.update(dp_rank=args.dp_rank, micro_step=int(steps[row]))
                if hasattr(dataset, "sample_documents"):
                    record["documents"] = dataset.sample_documents(sid)
                if row_docs is not None:
                    record["spans"] = [
                        {
                            "id": s.id,
                            "row": [s.row_start, s.row_stop],
                            "document": [s.doc_start, s.doc_stop],
                            "doc_tokens": s.doc_tokens,
                        }
                        for s in row_docs[row]
                    ]
                if decoder is not None:
                    record["text"] = decoder.decode(tokens[row].tolist(), skip_special_tokens=False)
                records.append(record)
    if args.out:
        _save(Path(args.out), arrays, records)
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from data_order import DataError

    try:
        return run(args)
    except (SuiteError, DataError) as err:
        print(f"suite batch: {err}", file=sys.stderr)
        return 2
