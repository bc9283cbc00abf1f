"""`suite seen DOC`: every place a document (or a passage) was trained on, and the first
checkpoint that has seen it.

Answers from the dataset's provenance index (`data_order.provenance`, built once by
`suite prepare`, or here on demand): document id → its token range → the samples holding
it → their global positions through the inverse of each epoch's order. No scan of the data,
except for `--text`, which searches the token stream (linear in its size; see the README).
Never imports torch (like `suite batch`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from suite.commands.batch import _layout, add_layout_arguments, open_data, say
from suite.errors import SuiteError

#: Occurrences printed unless --limit says otherwise.
DEFAULT_LIMIT = 50
#: Matches of --text whose documents the summary line names.
MATCHES_NAMED = 5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="suite seen",
        description="Where a document (or passage) was trained on: epoch, batch, row, DP rank and "
        "micro step, and the first checkpoint step{N} that has seen it.",
    )
    p.add_argument("document", nargs="?", help="corpus id: input file name, or `file:line` / "
                   "`file:row` of a JSONL / Parquet input (documents.jsonl lists them)")  # fmt: skip
    p.add_argument("--text", help="a passage instead of DOC, matched as a token sequence (a scan)")
    p.add_argument("--data", required=True, help="dataset folder (suite prepare)")
    p.add_argument(
        "--run",
        help="a run directory (runs/<run>/ of a sweep): its run.json gives the layout, "
        "train_steps, data seed and data fingerprint; flags given as well must agree",
    )
    p.add_argument("--seed", type=int, help="the run's data_seed (default: the dataset's seed)")
    p.add_argument(
        "--expect-fingerprint",
        help="fail unless the dataset (in the order of --seed) has this fingerprint",
    )
    add_layout_arguments(p)
    p.add_argument(
        "--train-steps",
        type=int,
        help="the run's updates: search batches 0..N-1 and name the first checkpoint "
        "(default: only the first --epochs epochs, no checkpoint)",
    )
    p.add_argument("--epochs", type=int, help="epochs searched without --train-steps (default 1)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="checkpoints.every (default 1000; with --run and neither checkpoint flag: the "
        "steps the run published, from its publish/published.jsonl)",
    )
    p.add_argument("--log-until", type=int, help="checkpoints.log_until (default 512)")
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"occurrences printed (default {DEFAULT_LIMIT}; 0: all)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    # None: not given (1, or the run's with --run). dp_rank/micro_step: read by batch._layout.
    p.set_defaults(dp_size=None, grad_accum=None, dp_rank=None, micro_step=None)
    return p


#: flag -> (where run.json records it: top-level key, or key of identity / identity.layout).
RUN_FIELDS = {
    "global_batch": ("layout", "global_batch"),
    "dp_size": ("layout", "dp"),
    "micro_batch": ("layout", "micro_batch"),
    "grad_accum": ("layout", "grad_accum"),
    "train_steps": ("identity", "train_steps"),
    "seed": ("identity", "data_seed"),
    "expect_fingerprint": ("identity", "data_fingerprint"),
}


def _apply_run(args) -> None:
    """Fill the flags from `--run`'s run.json; a flag given as well must agree with it."""
    from pathlib import Path

    from data_order import DataConfigError
    from suite.rundir import RunDir, read_run

    path = Path(args.run)
    if path.name == "run.json" and path.is_file():  # the record itself: its run directory
        path = path.parent
    record = read_run(RunDir(path))
    identity = record.info.get("identity") or {}
    if record.status in ("not started", "unreadable") or not identity:
        why = record.reason or "no run.json with the run's identity (has it started?)"
        raise DataConfigError("--run", args.run, f"{why}; give a run directory of a sweep")
    for name, (where, key) in RUN_FIELDS.items():
        source = identity.get("layout", {}) if where == "layout" else identity
        value = source.get(key, identity.get("seed") if name == "seed" else None)
        given = getattr(args, name)
        if given is not None and value is not None and given != value:
            flag = "--" + name.replace("_", "-")
            raise DataConfigError(
                flag, given, f"run {args.run} used {value}; leave the flag out or match it"
            )
        setattr(args, name, given if value is None else value)


def _published_steps(run: str, train_steps: int) -> list[int] | None:
    """The steps the run of `--run` published (`publish/published.jsonl`), None when it has
    no readable record: the checkpoint flags' defaults are used then."""
    from pathlib import Path

    path = Path(run)
    if path.name == "run.json":
        path = path.parent
    try:
        lines = (path / "publish" / "published.jsonl").read_text().splitlines()
        steps = {int(json.loads(line)["step"]) for line in lines if line.strip()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(s for s in steps if 0 <= s <= train_steps) or None


def _stop(args, dataset, global_batch: int) -> int:
    """Global positions searched: [0, stop)."""
    from data_order import DataConfigError

    batches = dataset.num_positions // global_batch
    if args.train_steps is not None:
        if not 1 <= args.train_steps <= batches:
            raise DataConfigError(
                "--train-steps",
                args.train_steps,
                f"{dataset.path} orders batches 0..{batches - 1} at global_batch={global_batch}; "
                f"give 1..{batches}",
            )
        return args.train_steps * global_batch
    epochs = dataset.num_positions // dataset.num_samples
    if args.epochs is None:
        args.epochs = 1
    if not 1 <= args.epochs <= epochs:
        raise DataConfigError(
            "--epochs", args.epochs, f"{dataset.path} orders {epochs} epochs; give 1..{epochs}"
        )
    return args.epochs * dataset.num_samples


def _text_spans(index, dataset, text: str) -> tuple[list[tuple[int, int]], str]:
    """Stream ranges where `text` occurs (as tokens) and a line describing the search."""
    import numpy as np

    from data_order import DataConfigError

    if dataset.tokenizer_path is None or not dataset.tokenizer_path.is_file():
        raise DataConfigError("--data", str(dataset.path), "has no tokenizer.json to encode --text")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(dataset.tokenizer_path))
    started = time.perf_counter()
    # A passage from inside a document usually follows a space, which byte-level BPE folds
    # into the first token: try the text as given, then with that space.
    variants = [text] + ([" " + text] if not text[:1].isspace() else [])
    for variant in variants:
        tokens = np.asarray(tokenizer.encode(variant, add_special_tokens=False).ids)
        if tokens.size == 0:
            raise DataConfigError("--text", text, "encodes to no token; give some text")
        starts = index.find_tokens(tokens)
        if starts.size:
            break
    seconds = time.perf_counter() - started
    total = dataset.train.num_tokens
    if not starts.size:
        raise DataConfigError(
            "--text",
            text if len(text) <= 60 else text[:57] + "...",
            f"its {tokens.size} tokens occur nowhere in the {total:,}-token training stream of "
            f"{dataset.path} (searched in {seconds:.2f} s); check the text, or give a document id",
        )
    spans = [(int(s), int(s) + int(tokens.size)) for s in starts]
    where = [
        " + ".join(f"{d.id}[{d.doc_start}:{d.doc_stop}]" for d in index.stream_documents(a, b))
        for a, b in spans[:MATCHES_NAMED]
    ]
    more = f", … {len(spans) - MATCHES_NAMED} more" if len(spans) > MATCHES_NAMED else ""
    return spans, (
        f"text: {tokens.size} tokens, {len(spans)} match(es) in the {total:,}-token stream "
        f"(searched in {seconds:.2f} s): {', '.join(where)}{more}"
    )


def _document_spans(index, doc_id: str) -> tuple[list[tuple[int, int]], str]:
    documents = index.lookup(doc_id)
    spans = [index.document_span(d) for d in documents]
    parts = []
    for start, stop in spans:
        samples = index.span_samples(start, stop)
        parts.append(
            f"{stop - start} tokens (EOS included) at stream [{start}:{stop}), "
            f"samples {samples.start}..{samples.stop - 1}"
        )
    return spans, f"document {doc_id}: " + "; ".join(parts)


def run(args) -> int:
    from data_order import DataConfigError, first_checkpoint, open_index

    if (args.document is None) == (args.text is None):
        raise DataConfigError(
            "document", args.document, "give a document id or --text (exactly one of them)"
        )
    if args.limit < 0:
        raise DataConfigError("--limit", args.limit, "use 0 (all) or a positive count")
    for name, value, what in (
        ("--text", args.text, "the passage"),
        ("document", args.document, "the document id (documents.jsonl lists them)"),
    ):
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
            raise DataConfigError(
                name,
                value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
                f"is not valid UTF-8; give {what} as UTF-8 text",
            ) from None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise DataConfigError(
            "--checkpoint-every",
            args.checkpoint_every,
            "use a positive interval (checkpoints.every)",
        )
    if args.log_until is not None and args.log_until < 0:
        raise DataConfigError(
            "--log-until", args.log_until, "use 0 (no log-spaced steps) or a positive step"
        )
    if args.run is not None:
        _apply_run(args)
    if args.epochs is not None and args.train_steps is not None:
        raise DataConfigError(
            "--epochs",
            args.epochs,
            "the run's train steps (--train-steps or --run) already bound the search to "
            "batches 0..N-1; drop --epochs",
        )
    args.dp_size = 1 if args.dp_size is None else args.dp_size
    args.grad_accum = 1 if args.grad_accum is None else args.grad_accum
    dataset = open_data(args)
    if args.global_batch is not None and args.global_batch < 1:
        raise DataConfigError("--global-batch", args.global_batch, "use a positive batch size")
    layout = _layout(args, args.global_batch or dataset.default_global_batch)
    if layout.global_batch > dataset.num_positions:
        raise DataConfigError(
            "--global-batch",
            layout.global_batch,
            f"more than the {dataset.num_positions} samples {dataset.path} orders; use a "
            "smaller --global-batch",
        )
    stop = _stop(args, dataset, layout.global_batch)
    steps = None
    if args.train_steps is not None:
        from suite.schedule import CheckpointSchedule

        if args.run is not None and args.checkpoint_every is None and args.log_until is None:
            steps = _published_steps(args.run, args.train_steps)
        if steps is None:
            steps = CheckpointSchedule(
                log_until=min(512 if args.log_until is None else args.log_until, args.train_steps),
                every=1000 if args.checkpoint_every is None else args.checkpoint_every,
                total_steps=args.train_steps,
            ).steps()
    index = open_index(dataset, say=say("suite seen"))
    if args.text is not None:
        spans, what = _text_spans(index, dataset, args.text)
    else:
        spans, what = _document_spans(index, args.document)
    found = index.occurrences(spans, layout.global_batch, stop, layout)
    batches = sorted({o.batch for o in found})
    step = first_checkpoint(batches, steps) if steps is not None else None
    if args.json:
        print(
            json.dumps(
                {
                    "data": str(dataset.path),
                    "fingerprint": dataset.fingerprint,
                    "query": {"document": args.document, "text": args.text},
                    "spans": spans,
                    "searched_positions": stop,
                    "first_checkpoint": step,
                    "occurrences": [dataclasses.asdict(o) for o in found],
                }
            )
        )
        return 0
    span = (
        f"batches 0..{stop // layout.global_batch - 1} (train_steps {args.train_steps})"
        if args.train_steps is not None
        else f"epochs 0..{args.epochs - 1} (positions 0..{stop - 1})"
    )
    print(
        f"data {dataset.path}  fingerprint {dataset.fingerprint}  seq_len {dataset.seq_len}  "
        f"seed {dataset.seed}  B={layout.global_batch} (micro {layout.micro_batch} x dp "
        f"{layout.dp_size} x accum {layout.grad_accum})  searched {span}"
    )
    print(what)
    shown = found if args.limit == 0 else found[: args.limit]
    for o in shown:
        print(
            f"  epoch {o.epoch}  batch {o.batch}  row {o.row}  dp_rank {o.dp_rank}  "
            f"micro_step {o.micro_step}  micro_row {o.micro_row}  position {o.position}  "
            f"sample {o.sample}  row[{o.row_start}:{o.row_stop}]"
        )
    if len(found) > len(shown):
        print(f"  … {len(found) - len(shown)} more (--limit 0 prints all, --json gives them all)")
    if not found:
        print("never trained on in the searched span")
    else:
        print(
            f"trained on {len(found)} time(s) in {len(batches)} batch(es), first batch "
            f"{batches[0]}, last {batches[-1]}"
        )
    if steps is None:
        print("first checkpoint: give --train-steps (and the run's checkpoint flags) to name it")
    elif step is None:
        print("first checkpoint: none — no scheduled checkpoint has seen it")
    else:
        print(
            f"first checkpoint that has seen it: step{step} (batch {batches[0]} is consumed by "
            f"update {batches[0] + 1})"
        )
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from data_order import DataError

    try:
        return run(args)
    except (SuiteError, DataError) as err:
        print(f"suite seen: {err}", file=sys.stderr)
        return 2
