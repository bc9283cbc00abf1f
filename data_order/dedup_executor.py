"""datatrove's local executor with its tasks' logs in their files only.

datatrove logs every task's setup and statistics (a page per task) to the console when the
task's `local_rank` is 0, and uses `local_rank` for nothing else (its docstring says so);
locally `prepare` prints one line per stage instead. SLURM tasks keep datatrove's logs: they
go to the job's log files. A module of its own so that datatrove is imported only when its
engine runs, and the class pickles by name into the executor's worker processes.
"""

from __future__ import annotations

from datatrove.executor import LocalPipelineExecutor
from loguru import logger


class QuietLocalExecutor(LocalPipelineExecutor):
    """`LocalPipelineExecutor` whose tasks all run as `local_rank` 1: logs to files only."""

    def _launch_run_for_rank(self, *args, **kwargs):
        # In the worker process: its "k/N tasks completed" lines (the stage's line says it).
        logger.disable("datatrove.executor.local")
        return super()._launch_run_for_rank(*args, **kwargs)

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        return super()._run_for_rank(rank, local_rank=1, node_rank=node_rank)
