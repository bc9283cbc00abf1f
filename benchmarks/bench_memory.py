"""Peak memory of one training update against the plan's estimate (`suite plan`'s
`memory_per_gpu_gb`, `model_zoo.estimates.memory_per_gpu`), on this CPU, one process.

Pythia's real shapes (seq 2048, vocabulary 50304) at micro batch 1, in bf16 and fp32: the
pythia suite (`load_suite(["suite=pythia", ...])`) with one GPU's worth of parallelism
(gpus=1, tp=1, global batch 1). Each case runs in a fresh interpreter: the model is built
by `suite.train.model.build_model` and wrapped by `suite.train.engine.build_engine` (the
trainer's DeepSpeed engine: ZeRO-1 in bf16, no ZeRO in fp32), then two updates run exactly
as `Trainer.update` does them (`engine_lm_loss`, `engine.backward`, `engine.step`) on
random token ids. The second update is measured: by then Adam's moments exist, so
weights, gradients, optimizer states and the update's activations are live together, as in
every update of a run. Peak = the kernel's high-water mark of resident memory (`VmHWM`,
reset through `/proc/self/clear_refs` after the first update) minus the resident memory
before the model was built (interpreter, torch, DeepSpeed).

`MALLOC_MMAP_THRESHOLD_` is fixed at 64 KiB for the child so every tensor larger than that
is its own mapping, returned to the system when freed: RSS then follows live tensors
instead of glibc's grown heap (its default threshold rises to 32 MiB after the first large
free, after which freed tensors below it stay resident).

Run: `PYTHONPATH=. python benchmarks/bench_memory.py` (~1-2 min); writes
`benchmarks/results/memory_estimate.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "memory_estimate.json"
#: (size, precision) cases of the benchmark; the test measures the same ones.
CASES = (("70m", "bf16"), ("70m", "fp32"), ("160m", "bf16"), ("160m", "fp32"))
DATASET = "pile"


def overrides(size: str, precision: str, loss_chunk_tokens: int | None = None) -> list[str]:
    """The pythia suite, one size, on one process at micro batch 1 (the plan's row for it)."""
    args = [
        "suite=pythia", f"sizes=[{size}]", f"precision={precision}", "parallel.gpus=1",
        "parallel.tp=1", "parallel.micro_batch=1", "parallel.grad_accum=1", "global_batch=1",
    ]  # fmt: skip
    if loss_chunk_tokens is not None:
        args.append(f"loss_chunk_tokens={loss_chunk_tokens}")
    return args


def estimate(size: str, precision: str, loss_chunk_tokens: int | None = None) -> dict:
    """The plan's estimate for the case, by component (bytes), from `suite.planning`."""
    from dataclasses import asdict

    from suite.config import resolve_run
    from suite.planning import plan_memory
    from suite.settings import load_suite

    cfg = load_suite(overrides(size, precision, loss_chunk_tokens))
    memory = plan_memory(cfg, resolve_run(cfg, size, DATASET))
    return {**asdict(memory), "total": memory.total}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(size: str, precision: str, loss_chunk_tokens: int | None) -> dict:
    """Build, train two updates, measure the second (in this process)."""
    import gc

    import deepspeed
    import torch

    from suite.config import resolve_run
    from suite.settings import load_suite
    from suite.train.engine import build_engine, set_learning_rate
    from suite.train.loss import engine_lm_loss
    from suite.train.model import build_model, hf_config

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    deepspeed.init_distributed(dist_backend="gloo")
    cfg = load_suite(overrides(size, precision, loss_chunk_tokens))
    run = resolve_run(cfg, size, DATASET)
    gc.collect()
    before = _status("VmRSS")
    model = build_model(hf_config(run, 0, precision, cfg.attention), cfg.seed,
                        cfg.activation_checkpointing)  # fmt: skip
    engine = build_engine(model, cfg, run)
    del model
    tokens = torch.randint(0, run.vocab, (1, run.seq_len + 1),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    seconds = []
    for update in range(2):
        if update == 1:
            gc.collect()
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        started = time.perf_counter()
        set_learning_rate(engine, run.lr)
        loss = engine_lm_loss(engine, tokens[:, :-1], tokens[:, 1:], cfg.loss_chunk_tokens)
        engine.backward(loss)
        engine.step()
        seconds.append(time.perf_counter() - started)
    return {
        "measured_peak": _status("VmHWM") - before,
        "loss": float(loss),
        "update_seconds": seconds,
        "activation_checkpointing": cfg.activation_checkpointing,
        "loss_chunk_tokens": cfg.loss_chunk_tokens,
        "zero_stage": engine.zero_optimization_stage(),
    }


def measure(
    size: str, precision: str, loss_chunk_tokens: int | None = None, timeout: float = 300
) -> dict:
    """One case in a fresh interpreter: measured peak and the estimate (bytes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        PYTHONPATH=str(REPO), DS_ACCELERATOR="cpu", MALLOC_MMAP_THRESHOLD_="65536",
        MASTER_PORT=str(_free_port()), HF_HUB_OFFLINE="1",
    )  # fmt: skip
    env.setdefault("OMP_NUM_THREADS", "2")
    command = [sys.executable, __file__, "--child", size, precision]
    if loss_chunk_tokens is not None:
        command += ["--loss-chunk-tokens", str(loss_chunk_tokens)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{size} {precision}: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["estimate"] = estimate(size, precision, loss_chunk_tokens)
    return with_ratio({"size": size, "precision": precision, **result})


def with_ratio(case: dict) -> dict:
    """Add the estimate's resident part and measured / resident.

    Resident = the estimate's total less `buffers`: on CPU the pages of a tensor never
    written are not resident, and the only such memory the estimate counts is the unwritten
    rest of ZeRO's gradient bucket (a GPU allocates it all; the gradients copied into the
    bucket are written, and counted in `gradients`).
    """
    resident = case["estimate"]["total"] - case["estimate"]["buffers"]
    return {**case, "estimate_resident": resident, "ratio": case["measured_peak"] / resident}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "PRECISION"))
    parser.add_argument("--loss-chunk-tokens", type=int, default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.loss_chunk_tokens)))
        return 0
    cases = [measure(size, precision) for size, precision in CASES]
    cases += [measure("70m", "bf16", loss_chunk_tokens=0)]  # the unchunked loss, for contrast
    for case in cases:
        print(
            f"{case['size']:>5} {case['precision']} chunk={case['loss_chunk_tokens']}: "
            f"measured {case['measured_peak'] / 1e9:.3f} GB, estimate "
            f"{case['estimate']['total'] / 1e9:.3f} GB, resident part "
            f"{case['estimate_resident'] / 1e9:.3f} GB (ratio {case['ratio']:.3f})"
        )
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.processor() or platform.machine(), "cases": cases}, indent=2
        )
        + "\n"  # fmt: skip
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
