"""The built-in downstream task, `heldout_continuation`, generated from held-out documents.

The mini suite trains offline on Python's standard library, where no harness task's data
is reachable; this task gives it a downstream metric anyway, in the harness's own terms (a
`multiple_choice` task over a local JSON file, scored by loglikelihood, `acc`/`acc_norm`).

An example: a held-out document's text up to the end of a line (at most `CONTEXT_CHARS`
characters, starting at a line start, without the line break) is the context; the choices
are a line break followed by the document's true next line, or by one of `DISTRACTORS`
lines drawn from *other* held-out documents (each 16–100 characters, indentation kept, all
different); the model should give the true line the highest loglikelihood. Chance is 1/4.
The context ends on a line's last visible character, so context + choice splits into
tokens exactly as the two parts do (a byte-level BPE never merges across that boundary;
ending the context inside the newline-and-indentation run would). Held-out documents never enter the training order, so
this measures generalisation, not memorisation. Examples are drawn with `eval.seed` from
every eligible line, so the task is a pure function of (held-out split, seed, count) — the
same for every checkpoint of a dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_order.atomic import write_bytes
from suite.errors import SuiteError

TASK_NAME = "heldout_continuation"
CONTEXT_CHARS = 256
MIN_CONTEXT_CHARS = 64
LINE_CHARS = (16, 100)
DISTRACTORS = 3


@dataclass(frozen=True)
class BuiltinTask:
    folder: Path  #: holds the task YAML and its JSONL data (an lm-eval include path)
    key: str  #: sha256 of the data: the task's identity in the ledger's parts
    examples: int


def _line_ok(line: str) -> bool:
    text = line.strip()
    return LINE_CHARS[0] <= len(text) <= LINE_CHARS[1] and "\x00" not in text


def _candidates(documents: list[str]) -> tuple[list[tuple[int, int]], list[list[str]]]:
    """(doc, line) pairs that can be a true continuation, and every document's lines."""
    lines = [doc.split("\n") for doc in documents]
    pairs = []
    for d, doc_lines in enumerate(lines):
        before = 0
        for j, line in enumerate(doc_lines):
            # The line before must end in a visible character (see the module docstring).
            if j and before >= MIN_CONTEXT_CHARS and doc_lines[j - 1].strip() and _line_ok(line):
                pairs.append((d, j))
            before += len(line) + 1
    return pairs, lines


def _context(doc_lines: list[str], j: int) -> str:
    """Whole lines before line j, as many as fit in CONTEXT_CHARS, without the last newline."""
    taken: list[str] = []
    size = 0
    for line in reversed(doc_lines[:j]):
        if size + len(line) + 1 > CONTEXT_CHARS and taken:
            break
        taken.append(line.rstrip())
        size += len(line) + 1
    return "\n".join(reversed(taken))[-CONTEXT_CHARS:]


def make_examples(documents: list[str], count: int, seed: int) -> list[dict]:
    """`count` examples (fewer if the documents do not have them), deterministic in `seed`."""
    pairs, lines = _candidates(documents)
    if len(documents) < DISTRACTORS + 1 or not pairs:
        raise SuiteError(
            f"the held-out split has {len(documents)} document(s) and {len(pairs)} usable "
            f"line(s): too few for the built-in task; set eval.builtin_examples=0"
        )
    rng = np.random.default_rng([seed, 0x5E7])
    chosen = rng.choice(len(pairs), size=min(count, len(pairs)), replace=False)
    examples = []
    for index in sorted(chosen.tolist()):
        d, j = pairs[index]
        truth = lines[d][j].rstrip()
        options = {truth.strip()}
        distractors: list[str] = []
        for other in rng.permutation(len(pairs)).tolist():
            od, oj = pairs[other]
            line = lines[od][oj].rstrip()
            if od != d and line.strip() not in options:
                options.add(line.strip())
                distractors.append(line)
                if len(distractors) == DISTRACTORS:
                    break
        if len(distractors) < DISTRACTORS:
            continue
        choices = ["\n" + line for line in (truth, *distractors)]
        order = rng.permutation(len(choices)).tolist()
        examples.append(
            {
                "context": _context(lines[d], j),
                "choices": [choices[k] for k in order],
                "label": order.index(0),
            }
        )
    return examples


def heldout_documents(dataset, tokenizer_json: Path) -> list[str]:
    """The texts of a prepared dataset's held-out documents (the `eval` split)."""
    from tokenizers import Tokenizer

    reader = getattr(dataset, "eval", None)
    if reader is None:
        raise SuiteError(
            f"{dataset.path}: this dataset has no held-out documents for the built-in task; "
            "set eval.builtin_examples=0"
        )
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    return tokenizer.decode_batch(
        [reader[i].tolist() for i in range(reader.count)], skip_special_tokens=True
    )


def _task_yaml(data_file: Path) -> str:
    # target_delimiter "": the choice starts with the line break, so context + choice is the
    # document's own text.
    return f"""# Generated by `suite eval` (suite/eval/builtin_task.py): do not edit.
task: {TASK_NAME}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data_file))}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""


def write_task(folder: Path, documents: list[str], count: int, seed: int) -> BuiltinTask:
    """Generate the task into `folder` (JSONL + YAML, atomically; unchanged files are kept)."""
    import hashlib

    examples = make_examples(documents, count, seed)
    data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in examples).encode()
    data_file = folder / f"{TASK_NAME}.jsonl"
    if not data_file.is_file() or data_file.read_bytes() != data:
        write_bytes(data_file, data)
    yaml_file = folder / f"{TASK_NAME}.yaml"
    text = _task_yaml(data_file.absolute()).encode()
    if not yaml_file.is_file() or yaml_file.read_bytes() != text:
        write_bytes(yaml_file, text)
    return BuiltinTask(folder, hashlib.sha256(data).hexdigest()[:16], len(examples))
