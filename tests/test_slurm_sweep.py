"""The mini sweep on a real Slurm: `suite sweep … hydra/launcher=slurm`, DP=2 jobs, requeue.

Everything is real: sbatch through hydra-submitit-launcher (our per-run launcher), 2 SLURM
tasks per job (one gloo rank each, DeepSpeed on CPU), the local checkpoint store. The sweep
processes run without DS_ACCELERATOR and OMP_NUM_THREADS in their environment: the jobs must
set them themselves (`suite.launch.env.cpu_job_defaults`).

- `slurm_sweep`: 2 sizes × 2 datasets, uninterrupted — the reference.
- `interrupted_sweep`: the 160k runs again, one put back in the queue with `scontrol requeue`
  (SIGTERM), the other sent the time-limit warning (USR2, submitit requeues it) while
  training; both must finish exactly as the uninterrupted ones did.
- `local_sweep`: the 160k runs on the local launcher in one process (world 1): the data a
  step trains on must not depend on the layout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from slurm_cluster import REPO, job_info, slurm_cluster  # noqa: F401  (pytest fixture)

CORPUS = str(Path(sysconfig.get_paths()["stdlib"]) / "encodings" / "*.py")
STEPS = 12
EXPECTED_STEPS = [0, 1, 2, 4, 6, 12]  # log-spaced to 4, every 6, final
RUNS = ["mini-160k", "mini-160k-deduped", "mini-250k", "mini-250k-deduped"]
#: A job of 2 tasks × 1 core each, "GPU" = task on this CPU-only cluster.
SLURM_DP2 = [
    "parallel.gpus=2",
    "parallel.micro_batch=8",  # global batch 16 = 8 × dp 2
    "slurm.cpu_only=true",
    "cluster.gpus_per_node=2",
    "hydra/launcher=slurm",
]


def overrides(root: Path, sizes: list[str]) -> list[str]:
    """test_e2e_sweep's shortened mini suite, with a resume checkpoint every 2 updates."""
    return [
        f"root={root}",
        f"sizes=[{','.join(sizes)}]",
        f"train_steps={STEPS}",
        "checkpoints.log_until=4",
        "checkpoints.every=6",
        "checkpoints.resume_every=2",
        "eval.every=6",
        "eval.samples=8",
        "seq_len=64",
        "data.vocab_size=512",
        f"datasets={{stdlib:{{inputs:[{CORPUS}]}},stdlib-deduped:{{inputs:[{CORPUS}]}}}}",
    ]


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "suite.cli", "sweep", "--no-report", *args]


def sweep_environment(**extra: str) -> dict[str, str]:
    """The submitting shell: the repo on PYTHONPATH (sbatch exports it to the job), and none of
    the CPU settings — the job must decide DS_ACCELERATOR and its thread count itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("DS_ACCELERATOR", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env | extra


def run_sweep(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(*args),
        capture_output=True,
        text=True,
        timeout=480,
        env=env or sweep_environment(),
        cwd=root,  # not the repo: the jobs must find the packages through PYTHONPATH
    )


def train_records(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row.get("loss") is not None]


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def final_weights(root: Path, run: str) -> dict:
    from safetensors.torch import load

    from suite.publish.store import open_store

    blob = open_store(f"local:{root}/store").read_file(
        f"local/{run}", f"step{STEPS}", "model.safetensors"
    )
    assert blob is not None, f"{run}: no model.safetensors at step{STEPS}"
    return load(blob)


def describe(output: str, root: Path) -> str:
    """The sweep's output and rank 0's job logs, for a failure message."""
    logs = "\n".join(
        f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(root.glob("mini/.submitit/*/*_0_log.*"))
    )
    return f"{output[-5000:]}\n{logs}"


@pytest.fixture(scope="module")
def slurm_sweep(slurm_cluster, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("slurm-sweep")
    result = run_sweep(root, *overrides(root, ["160k", "250k"]), *SLURM_DP2)
    assert result.returncode == 0, describe(result.stdout + result.stderr, root)
    return root, result


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The 160k runs on the local launcher, one process (world 1, micro batch 16)."""
    root = tmp_path_factory.mktemp("local-sweep")
    local = ["parallel.gpus=1", "parallel.micro_batch=16", "publish.store=none"]
    result = run_sweep(
        root,
        *overrides(root, ["160k"]),
        *local,
        env=sweep_environment(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="2"),
    )
    assert result.returncode == 0, describe(result.stdout + result.stderr, root)
    return root


def _training_job(run_dir: Path) -> str | None:
    """The run's SLURM job id once it has done at least one update, else None."""
    try:
        if not train_records(run_dir):
            return None
        return run_info(run_dir).get("slurm_job_id")
    except (OSError, ValueError):
        return None  # files being written right now


@pytest.fixture(scope="module")
def interrupted_sweep(slurm_sweep, tmp_path_factory):
    """The 160k runs once more; each job is interrupted after its first update.

    Asks for `slurm_sweep` (the reference) so the two sweeps do not share the 2 cores."""
    root = tmp_path_factory.mktemp("interrupted-sweep")
    sweep = subprocess.Popen(
        sweep_command(*overrides(root, ["160k"]), *SLURM_DP2),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=sweep_environment(),
        cwd=root,
    )
    runs = root / "mini" / "runs"
    # Preemption / `scontrol requeue`: SLURM sends SIGTERM to every task and requeues the job.
    # Time-limit warning: what `--signal=USR2@signal_delay_s` sends to the job's tasks; the
    # trainer saves, then submitit's handler requeues the job.
    interrupt = {
        "mini-160k": lambda job: ["scontrol", "requeue", job],
        "mini-160k-deduped": lambda job: ["scancel", "--signal=USR2", job],
    }
    job_ids: dict[str, str] = {}
    try:
        # Both jobs start together (array tasks): interrupt each right after its first update.
        deadline = time.monotonic() + 240
        while len(job_ids) < len(interrupt) and time.monotonic() < deadline:
            for run, command in interrupt.items():
                job = None if run in job_ids else _training_job(runs / run)
                if job:
                    subprocess.run(command(job), check=True, timeout=30)
                    job_ids[run] = job
            time.sleep(0.05)
        assert len(job_ids) == len(interrupt), f"never saw both runs train: {job_ids}"
        output, _ = sweep.communicate(timeout=420)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, describe(output, root)
    return root, job_ids


@pytest.mark.slurm
@pytest.mark.slow
def test_every_run_finishes_and_publishes_every_scheduled_step(slurm_sweep):
    from suite.publish.store import open_store

    root, result = slurm_sweep
    store = open_store(f"local:{root}/store")
    runs = root / "mini" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == RUNS
    job_ids = set()
    for name in RUNS:
        info = run_info(runs / name)
        assert info["status"] == "complete", info
        assert (info["dp"], info["micro_batch"], info["global_batch"]) == (2, 8, 16)
        job_ids.add(info["slurm_job_id"])
        revisions = store.list_revisions(f"local/{name}")
        assert sorted(int(r[4:]) for r in revisions if r.startswith("step")) == EXPECTED_STEPS
        assert "main" in revisions
        assert [r["step"] for r in train_records(runs / name)] == list(range(1, STEPS + 1))
    assert len(job_ids) == 4  # one SLURM job per run
    # Each job really had 2 tasks: both ranks of every job wrote a submitit log.
    for job in job_ids:
        assert job_info(job)["NumTasks"] == "2"
        assert len(list((root / "mini" / ".submitit" / job).glob(f"{job}_*_log.out"))) == 2


@pytest.mark.slurm
@pytest.mark.slow
def test_batches_are_the_same_across_sizes_and_layouts(slurm_sweep, local_sweep):
    root, _ = slurm_sweep
    runs, local_runs = root / "mini" / "runs", local_sweep / "mini" / "runs"

    def hashes(directory: Path, name: str) -> list[str]:
        return [r["batch_hash"] for r in train_records(directory / name)]

    for dataset in ("", "-deduped"):
        dp2 = hashes(runs, f"mini-160k{dataset}")
        assert len(dp2) == STEPS
        assert hashes(runs, f"mini-250k{dataset}") == dp2  # across sizes
        assert hashes(local_runs, f"mini-160k{dataset}") == dp2  # world 1 vs DP=2 on SLURM
        assert run_info(local_runs / f"mini-160k{dataset}")["dp"] == 1
    assert hashes(runs, "mini-160k") != hashes(runs, "mini-160k-deduped")


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize(
    ("run", "signal_name"), [("mini-160k", "SIGTERM"), ("mini-160k-deduped", "SIGUSR2")]
)
def test_an_interrupted_job_resumes_exactly(slurm_sweep, interrupted_sweep, run, signal_name):
    reference_root, _ = slurm_sweep
    root, job_ids = interrupted_sweep
    run_dir = root / "mini" / "runs" / run
    info = run_info(run_dir)
    assert info["status"] == "complete", info
    assert info["slurm_job_id"] == job_ids[run]
    assert info["interrupted_by"] == signal_name
    assert info["slurm_restarts"] == 1 and job_info(job_ids[run])["Restarts"] == "1"
    # It stopped mid-run with a checkpoint of the update it was in, and resumed from there.
    assert 0 < info["interrupted_at"] < STEPS
    assert info["resumed_from"] == info["interrupted_at"]
    log = Path(info["logs"]).read_text()
    assert f"resuming at step {info['resumed_from']}" in log
    records = train_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # none twice, none lost
    reference = train_records(reference_root / "mini" / "runs" / run)
    # Bitwise: fp32 on CPU, one thread per rank in both jobs, same data and init, so every
    # float sum happens in the same order; any resume error would change the losses.
    assert [r["loss"] for r in records] == [r["loss"] for r in reference]
    assert [r["batch_hash"] for r in records] == [r["batch_hash"] for r in reference]
    weights, reference_weights = final_weights(root, run), final_weights(reference_root, run)
    assert weights.keys() == reference_weights.keys()
    for name, tensor in weights.items():
        assert tensor.equal(reference_weights[name]), name


@pytest.mark.slurm
@pytest.mark.slow
def test_status_shows_jobs_steps_checkpoints_and_logs(slurm_sweep):
    root, _ = slurm_sweep
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli", "status", str(root / "mini"), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=sweep_environment(),
    )
    assert result.returncode == 0, result.stderr
    rows = {row["run"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == RUNS
    for name, row in rows.items():
        info = run_info(root / "mini" / "runs" / name)
        assert row["status"] == "complete"
        assert (
            re.fullmatch(r"\d+_\d", row["slurm_job_id"])
            and row["slurm_job_id"] == info["slurm_job_id"]
        )
        assert row["slurm_state"] == "COMPLETED"
        assert (row["last_step"], row["train_steps"]) == (STEPS, STEPS)
        assert row["last_published"] == f"step{STEPS}"
        log = Path(row["logs"])
        assert log.parent == root / "mini" / ".submitit" / row["slurm_job_id"]
        assert f"[{name}] step {STEPS}/{STEPS}" in log.read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_a_second_sweep_submits_nothing(slurm_sweep):
    root, _ = slurm_sweep
    submitted = sorted(p.name for p in (root / "mini" / ".submitit").iterdir())
    again = run_sweep(root, *overrides(root, ["160k", "250k"]), *SLURM_DP2)
    assert again.returncode == 0, describe(again.stdout + again.stderr, root)
    assert "4 runs complete, 0 to train" in again.stdout
    assert sorted(p.name for p in (root / "mini" / ".submitit").iterdir()) == submitted


# ---- fast unit tests (no cluster): the pieces the jobs above rely on ----


def test_a_stop_signal_sets_the_flag_and_is_handed_to_the_earlier_handler():
    import signal

    from suite.train.preemption import PreemptionWatcher, TrainingInterrupted

    seen = []
    original = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        watcher = PreemptionWatcher(signals=(signal.SIGUSR2,)).install()
        assert watcher.agreed_signal(world_size=1, device="cpu") == 0
        os.kill(os.getpid(), signal.SIGUSR2)
        assert watcher.received == signal.SIGUSR2 and seen == []  # only flagged, not acted on
        assert watcher.agreed_signal(world_size=1, device="cpu") == signal.SIGUSR2
        stop = TrainingInterrupted(3, watcher.received, "/runs/x", watcher)
        assert "SIGUSR2 after update 3" in str(stop)
        with pytest.raises(SystemExit) as exit_:
            stop.hand_over()
        # The earlier handler (submitit's requeue in a job) ran; it returned, so we exit with
        # the code of a process killed by the signal.
        assert seen == [signal.SIGUSR2] and exit_.value.code == 128 + signal.SIGUSR2
        assert signal.getsignal(signal.SIGUSR2) is not watcher._on_signal  # restored
    finally:
        signal.signal(signal.SIGUSR2, original)


def test_an_ignored_signal_stays_ignored():
    import signal

    from suite.train.preemption import PreemptionWatcher

    original = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        PreemptionWatcher(signals=(signal.SIGUSR2,)).install()
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, original)


def test_cpu_job_defaults_and_job_label():
    from suite.launch.env import cpu_job_defaults, slurm_job_label

    job = {"SLURM_PROCID": "1", "SLURM_CPUS_PER_TASK": "3", "SLURM_JOB_ID": "40"}
    assert cpu_job_defaults(False, job) == {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "3"}
    # GPU nodes: threads too (all node cores per rank would thrash), no DS_ACCELERATOR.
    assert cpu_job_defaults(True, job) == {"OMP_NUM_THREADS": "3"}
    assert cpu_job_defaults(True, job | {"OMP_NUM_THREADS": "2"}) == {}
    # Site settings win; outside SLURM the thread count is left to the user.
    assert cpu_job_defaults(False, job | {"OMP_NUM_THREADS": "2", "DS_ACCELERATOR": "x"}) == {}
    assert cpu_job_defaults(False, {}) == {"DS_ACCELERATOR": "cpu"}
    assert slurm_job_label(job) == "40"
    assert slurm_job_label(job | {"SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "1"}) == "12_1"
    assert slurm_job_label({}) is None
