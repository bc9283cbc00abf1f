"""The DeepSpeed tensor- and data-parallel trainer (docs/architecture.md, "The trainer in one page").

`train_run(cfg, size, dataset)` trains one run of the suite; heavy imports (torch,
deepspeed, transformers) happen inside it, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.train.run import RunResult


def train_run(cfg, size: str, dataset: str) -> RunResult:
    from suite.train.run import train_run as _train_run

    return _train_run(cfg, size, dataset)


__all__ = ["train_run"]
