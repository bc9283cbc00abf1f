"""Every collective of a training run gets tensors on the engine's device (NCCL), and every
rank fsyncs the resume-checkpoint files it wrote itself (shared filesystems).

`collective_probe.py` runs the real `suite train` in 2 gloo processes with `meta` as torch's
default device once the engine exists, so a tensor made without `device=` — which NCCL would
refuse on a GPU cluster — fails here too, naming its call site. It covers the update (loss
sum), evaluation, export gathers, resume saves and the stop-signal agreement.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dist_helpers import REPO, free_port, train_env

pytestmark = pytest.mark.slow

PROBE = Path(__file__).with_name("collective_probe.py")


def _probe(tmp_path: Path, data: Path, *layout: str) -> subprocess.CompletedProcess:
    overrides = [
        "size=160k", "dataset=stdlib", f"datasets.stdlib.path={data}", f"root={tmp_path}",
        "publish.store=none", "seq_len=32", "global_batch=8", "train_steps=6",
        "padded_vocab=512", "checkpoints.log_until=2", "checkpoints.every=4",
        "checkpoints.resume_every=4", "eval.every=3", "eval.samples=8", *layout,
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(PROBE), *overrides,
    ]  # fmt: skip
    (tmp_path / "fsync").mkdir()
    env = train_env({"PROBE_FSYNC_LOG": str(tmp_path / "fsync")})
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "layout",
    [
        ("parallel.gpus=2", "parallel.tp=2", "default_resources.micro_batch=8"),
        ("parallel.gpus=2", "parallel.tp=1", "parallel.micro_batch=2", "parallel.grad_accum=2"),
    ],
    ids=["tp2", "dp2-accum2"],
)
def test_every_collective_gets_tensors_on_the_engine_device(tmp_path, tiny_data, layout):
    result = _probe(tmp_path, tiny_data, *layout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert output.count("[probe] collectives checked against cpu") == 2  # both ranks
    assert "step 6/6" in output  # evaluation (step 3, 6), exports, resume save (step 4)
    # Resume checkpoint of step 4: each file was fsynced by the rank that wrote it — on
    # NFS/Lustre an fsync from another node would not make it durable.
    saved = tmp_path / "mini" / "runs" / "mini-160k" / "resume" / "step4"
    synced = {
        rank: set((tmp_path / "fsync" / f"rank{rank}.txt").read_text().split()) for rank in (0, 1)
    }
    records = {p for p in saved.iterdir() if p.name.startswith("files-rank")}
    files = sorted(set(saved.iterdir()) - records)
    assert files and all(str(p) in synced[0] | synced[1] for p in files), files
    for rank in (0, 1):
        assert str(saved / f"rng-rank{rank}.pt") in synced[rank]
        assert str(saved / f"rng-rank{1 - rank}.pt") not in synced[rank]
        # The rank's record of its files is written atomically (fsynced under a temporary
        # name, then renamed) by that rank.
        record = f"/.files-rank{rank}.json."
        assert any(record in path for path in synced[rank])
        assert not any(record in path for path in synced[1 - rank])
    dp = "parallel.tp=1" in layout
    for rank in (0, 1):  # optimizer partitions: one per DP rank (dp2), or per TP rank (tp2)
        name = f"zero_pp_rank_{rank}_mp_rank_00" if dp else f"zero_pp_rank_0_mp_rank_{rank:02d}"
        assert str(saved / f"{name}_optim_states.pt") in synced[rank]
