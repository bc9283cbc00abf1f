"""`prepare` as SLURM jobs: every stage a datatrove `SlurmPipelineExecutor`, chained by
job dependencies (`suite prepare --launcher slurm`).

    tokenize (array, one task per shard)
      → [dedup_engine="datatrove" and dedup="minhash":]
        signatures (array, one task per shard) → buckets (array, one task per band)
        → removals (one task)
      → merge (one task: split, exact/near dedup of the single engine if chosen, write)

Each stage is the same code the local `prepare` runs (`build.tokenize_shard`, the
`dedup_engine` stages, `build.prepare`), and records a completion marker per task in
datatrove's logging folders: re-submitting after a failure, a cancel or a node loss skips
the finished tasks. The tokenizer is trained by the submitting process when not given
(`--tokenizer` at cluster scale: shard tasks then read only their own files).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from datatrove.executor import SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from data_order.config import PrepareConfig
from data_order.errors import DataConfigError, DataError

#: SlurmOptions field -> its `suite prepare` flag (what an error names).
FLAGS = {
    "cpus_per_task": "--slurm-cpus",
    "mem_per_cpu_gb": "--slurm-mem-per-cpu-gb",
    "tasks_per_job": "--slurm-tasks-per-job",
}


@dataclass
class SlurmOptions:
    """Where and how the prepare jobs run."""

    partition: str | None = None
    """Partition of every job; None = the cluster's default partition."""
    time: str = "24:00:00"
    """Time limit of each task (sbatch --time)."""
    cpus_per_task: int = 1
    """CPUs per task (tokenizing uses them as worker processes)."""
    mem_per_cpu_gb: int = 2
    """Memory per CPU in GB (sbatch --mem-per-cpu)."""
    tasks_per_job: int = 1
    """Tasks run one after the other by each array job (datatrove's `tasks_per_job`): fewer,
    longer jobs when the tasks are many and short."""

    def __post_init__(self) -> None:
        for name in ("cpus_per_task", "mem_per_cpu_gb", "tasks_per_job"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataConfigError(FLAGS[name], value, "must be an integer >= 1")
        if self.partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", self.partition):
            raise DataConfigError(
                "--slurm-partition", self.partition, "give a partition name (sinfo lists them)"
            )
        # sbatch --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED / INFINITE.
        if not re.fullmatch(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|UNLIMITED|INFINITE", self.time):
            raise DataConfigError(
                "--slurm-time", self.time, "use sbatch's --time format, e.g. 24:00:00 or 2-00:00:00"
            )


class TokenizeShard(PipelineStep):
    """Task i tokenizes shard i (`build.tokenize_shard`, cached like a local run)."""

    type = "🔢 - TOKENIZE"
    name = "shard"

    def __init__(self, cfg: PrepareConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from data_order.build import prepare

        with self.track_time():
            prepare(dataclasses.replace(self.cfg, shard_index=rank, progress=False))


class MergeDatasets(PipelineStep):
    """The last task: `build.prepare` finds every shard (and dedup stage) finished and writes
    the datasets."""

    type = "📦 - MERGE"
    name = "datasets"

    def __init__(self, cfg: PrepareConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from data_order.build import prepare

        with self.track_time():
            for path in prepare(dataclasses.replace(self.cfg, progress=False)):
                print(f"prepared {path}", flush=True)


def default_partition() -> str:
    """The partition `sinfo` marks as default (with a trailing '*')."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as err:
        raise DataError(
            f"sinfo failed ({err}); is Slurm reachable? give --slurm-partition"
        ) from None
    marked = [p.rstrip("*") for p in out if p.endswith("*")]
    if not marked:
        raise DataConfigError(
            "slurm_partition", None, "the cluster has no default partition; give one"
        )
    return marked[0]


def launch(cfg: PrepareConfig, options: SlurmOptions) -> dict[str, str]:
    """Submit every stage of `cfg`; returns stage name → Slurm job id (in submission order)."""
    from data_order.build import _load_corpus, _shard_dir, _work_dir, held_out_documents
    from data_order.dedup_engine import STAGES, plan_for

    if cfg.shard_index is not None:
        raise DataConfigError(
            "shard_index", cfg.shard_index, "--launcher slurm runs every shard; drop --shard"
        )
    # Before anything is written: a cluster without Slurm leaves no tokenizer cache behind.
    partition = options.partition or default_partition()
    # Absolute paths: the pickled stages run in the jobs' own working directory.
    cfg = dataclasses.replace(cfg, out_dir=str(Path(cfg.out_dir).resolve()))
    corpus = _load_corpus(cfg)  # trains and caches the tokenizer if none is given
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    logs = Path(cfg.out_dir) / f".slurm-{corpus.key[:16]}"
    bin_dir = Path(sys.executable).parent

    def executor(name: str, pipeline: list, tasks: int, logging_dir: Path, depends=None):
        return SlurmPipelineExecutor(
            pipeline,
            tasks=tasks,
            time=options.time,
            partition=partition,
            cpus_per_task=options.cpus_per_task,
            mem_per_cpu_gb=options.mem_per_cpu_gb,
            job_name=f"prepare-{name}",
            qos="",  # no QoS directive: clusters without accounting reject unknown ones
            # The jobs run datatrove's `launch_pickled_pipeline` of this Python environment.
            env_command=f"export PATH={bin_dir}:$PATH",
            logging_dir=str(logging_dir),
            slurm_logs_folder=str(logs / "slurm" / name),
            depends=depends,
            tasks_per_job=options.tasks_per_job,
            mail_type="NONE",
        )

    chain = [executor("tokenize", [TokenizeShard(cfg)], cfg.num_shards, logs / "tokenize")]
    if cfg.dedup == "minhash" and cfg.dedup_engine == "datatrove":
        shards = [_shard_dir(cfg, corpus, i) for i in range(cfg.num_shards)]
        plan = plan_for(cfg, _work_dir(cfg, corpus), shards, held_out_documents)
        for name in STAGES:
            pipeline, tasks = plan.stage(name)
            chain.append(executor(name, pipeline, tasks, plan.logs(name), depends=chain[-1]))
    chain.append(executor("merge", [MergeDatasets(cfg)], 1, logs / "merge", depends=chain[-1]))
    chain[-1].run()  # submits its dependencies first, each with afterok on the previous
    names = ["tokenize", *(STAGES if len(chain) > 2 else ()), "merge"]
    return {name: str(ex.job_id) for name, ex in zip(names, chain, strict=True)}
