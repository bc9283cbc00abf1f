"""The evaluation ledger (contract 7): every result of `suite eval` as one row.

A row is one run × revision × task × metric, keyed by (run, revision, weights_sha256, task,
metric) and carrying what makes it reproducible (commit, harness version, dtype, batch size,
seed). On disk:

```
{sweep}/eval/ledger.parquet                               the ledger (COLUMNS, in order)
{sweep}/eval/parts/{run}/{revision}/{weights12}-{dtype}/{task}.parquet   its parts
```

Each finished task of a checkpoint is written at once as its own part (atomically), and the
ledger is the concatenation of the parts, rebuilt atomically at the end of `suite eval`: a
killed evaluation loses at most the task in flight, and the next one finds the parts that
exist and continues. A part whose revision left the store, whose weights changed, or whose
task definition changed is rewritten with `stale=True` (kept, flagged, never silently
mixed with current results).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from data_order.atomic import write_bytes

#: Ledger columns and their pandas dtypes, in order. The report reads them by name.
COLUMNS: dict[str, str] = {
    "run": "string",
    "size": "string",
    "dataset": "string",
    "init_seed": "int64",
    "data_seed": "int64",
    "revision": "string",
    "step": "int64",
    "tokens": "int64",
    "task": "string",
    "metric": "string",
    "value": "float64",
    "stderr": "float64",
    "n": "int64",
    "commit": "string",
    "weights_sha256": "string",
    "harness_version": "string",
    "dtype": "string",
    "batch_size": "int64",
    "eval_seed": "int64",
    "wall_s": "float64",
    "evaluated_at": "string",
    "stale": "bool",
    "params": "int64",
    "non_embedding_params": "int64",
}
#: Not part of a part file: recorded beside the rows so a changed definition is noticed.
TASK_KEY_FIELD = b"suite_task_key"
PARTS_DIR = "parts"


@dataclass(frozen=True)
class PartKey:
    """Where one (run, revision, weights, dtype, task) result lives."""

    run: str
    revision: str
    weights_sha256: str
    dtype: str
    task: str

    def path(self, eval_dir: Path) -> Path:
        slug = self.task.replace("/", "__")
        leaf = f"{self.weights_sha256[:12]}-{self.dtype}"
        return eval_dir / PARTS_DIR / self.run / self.revision / leaf / f"{slug}.parquet"


def empty_frame():
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in COLUMNS.items()})


def as_frame(rows: list[dict]):
    """Rows (dicts with every column) as a frame with the ledger's column order and dtypes."""
    import pandas as pd

    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"ledger rows lack columns {missing}")
    if not rows:
        return empty_frame()
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)


def _parquet_bytes(frame, metadata: dict[bytes, bytes] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_part(path: Path, frame, task_key: str) -> None:
    """One task's rows of one checkpoint, written atomically (all or nothing)."""
    write_bytes(path, _parquet_bytes(frame, {TASK_KEY_FIELD: task_key.encode()}))


def read_part(path: Path):
    """(frame, task_key) of a part file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    key = (table.schema.metadata or {}).get(TASK_KEY_FIELD, b"").decode()
    return table.to_pandas().astype(COLUMNS), key


def part_files(eval_dir: Path, run: str | None = None) -> list[Path]:
    """Every part file (of one run, or of all), in a stable order."""
    root = eval_dir / PARTS_DIR / (run or "")
    return sorted(root.rglob("*.parquet")) if root.is_dir() else []


def set_stale(path: Path, stale: bool) -> bool:
    """Rewrite a part with its rows' `stale` flag set to `stale`; True when it changed."""
    import pyarrow.parquet as pq

    flags = pq.read_table(path, columns=["stale"]).column("stale").to_pylist()
    if all(flag == stale for flag in flags):  # the common case: read one column only
        return False
    frame, key = read_part(path)
    frame["stale"] = stale
    write_part(path, frame, key)
    return True


def merge_parts(eval_dir: Path):
    """The ledger: every part's rows, sorted by run, step, task, metric (stale rows last)."""
    import pandas as pd

    frames = [read_part(path)[0] for path in part_files(eval_dir)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_frame()
    ledger = pd.concat(frames, ignore_index=True).astype(COLUMNS)
    order = ["run", "stale", "step", "task", "metric", "weights_sha256", "dtype"]
    return ledger.sort_values(order, kind="stable").reset_index(drop=True)


def write_ledger(path: Path, ledger) -> bool:
    """Write the ledger atomically unless the file already holds the same rows; True if written."""
    if path.is_file():
        try:
            if read_ledger(path).equals(ledger):
                return False
        except (OSError, ValueError):
            pass  # unreadable: rewritten from the parts below
    write_bytes(path, _parquet_bytes(ledger))
    return True


def read_ledger(path: str | Path):
    """The ledger as a pandas DataFrame with exactly `COLUMNS` (an empty one when absent)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return empty_frame()
    return pq.read_table(path).to_pandas().astype(COLUMNS)[list(COLUMNS)]


def task_key(*parts: object) -> str:
    """A short hash of what defines a task's result (its data, its settings)."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16]
