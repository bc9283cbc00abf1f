"""Model initialization at scale: peak host RSS per rank and init time, before and after.

*Before* is the trainer's former path (copied here verbatim, so it can still be measured):
every rank builds the whole model in fp32 on the host from `torch.manual_seed(seed)`, then
DeepSpeed AutoTP splits it. *After* is `suite.train.model.build_model(..., materialize=False)`
plus `suite.train.init.materialize_in_engine`: parameters are memory-free placeholders
through AutoTP, and each rank then fills only its shard, one parameter at a time, from a
generator seeded by (seed, parameter name).

Each measurement runs in fresh processes (torchrun, gloo, `DS_ACCELERATOR=cpu`), one per TP
rank, and times model construction through `deepspeed.initialize` (ZeRO stage 0, no
optimizer: what is left is the model's own memory). `ru_maxrss` is the process's peak RSS;
`baseline_rss_gb` is the RSS after imports and joining the process group, before any
model is built.

Run (one measurement at a time; 1.4b fp32 is 5.6 GB per copy, TP=2 before needs ~12 GB):
`PYTHONPATH=. .venv/bin/python benchmarks/bench_init.py [--size 1.4b] [--modes before after]
[--tp 1 2]`. Writes/updates `benchmarks/results/init.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "init.json"
SEED = 1234
GB = 1024**3


def _rss_gb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GB


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # KiB on Linux


def _hf_config(size: str, tp: int):
    from model_zoo import get_family, get_size, pad_vocab

    family = get_family("pythia")
    config = family.to_hf_config(get_size("pythia", size), pad_vocab(50277, tp), 2048)
    config.use_cache = False
    config._attn_implementation = "sdpa"
    return family, config


def _build_before(config, seed: int):
    """The former `suite.train.model.build_model`: the whole model, fp32, on the host."""
    import torch
    import transformers

    cls = transformers.GPTNeoXForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls._from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def _ds_config(family, tp: int) -> dict:
    from types import SimpleNamespace

    from suite.train.engine import autotp_partition_config

    config: dict = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 0},
        "steps_per_print": 10**12,
    }
    if tp > 1:
        run = SimpleNamespace(family=family)  # the partition rules read only the family
        config["tensor_parallel"] = {
            "autotp_size": tp,
            "partition_config": autotp_partition_config(run),
        }
    return config


def worker(mode: str, size: str, tp: int, out: Path) -> None:
    """One rank: build and split the model, report time and memory."""
    import logging

    import deepspeed
    import torch

    from suite.train.distributed import init_distributed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    deepspeed.utils.logger.setLevel(logging.WARNING)
    env = init_distributed()
    family, config = _hf_config(size, tp)
    baseline = _rss_gb()
    started = time.perf_counter()
    if mode == "before":
        model = _build_before(config, SEED)
        engine, *_ = deepspeed.initialize(model=model, config=_ds_config(family, tp))
    else:
        from suite.train.init import materialize_in_engine
        from suite.train.model import build_model

        model = build_model(config, SEED, materialize=False)
        with materialize_in_engine(model, family.init_rules, SEED):
            engine, *_ = deepspeed.initialize(model=model, config=_ds_config(family, tp))
    seconds = time.perf_counter() - started
    local = sum(p.numel() * p.element_size() for p in engine.module.parameters())
    torch.distributed.barrier()
    record = {
        "rank": env.rank,
        "init_s": round(seconds, 2),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
        "baseline_rss_gb": round(baseline, 3),
        "rss_after_gb": round(_rss_gb(), 3),
        "local_params_gb": round(local / GB, 3),
    }
    (out / f"rank{env.rank}.json").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(mode: str, size: str, tp: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=str(REPO))
        env["OMP_NUM_THREADS"] = str(threads)
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(tp),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            __file__, "--worker", mode, "--size", size, "--out", tmp,
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(
                f"{mode} tp={tp} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(tp)]
    return {"mode": mode, "tp": tp, "wall_s": round(wall, 1), "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1.4b", help="pythia ladder size (default 1.4b)")
    parser.add_argument("--modes", nargs="+", default=["before", "after"])
    parser.add_argument("--tp", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per rank")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.size, int(os.environ.get("WORLD_SIZE", "1")), Path(args.out))
        return

    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if result.get("size") != args.size:
        result = {}
    measurements = {(m["mode"], m["tp"]): m for m in result.get("measurements", [])}
    for mode in args.modes:
        for tp in args.tp:
            measurement = measure(mode, args.size, tp, args.threads)
            print(json.dumps(measurement), flush=True)
            measurements[(mode, tp)] = measurement
    import torch

    from model_zoo import get_family, get_size, pad_vocab

    params = get_family("pythia").total_params(get_size("pythia", args.size), pad_vocab(50277))
    result = {
        "benchmark": "model init: peak host RSS per rank and time, build → deepspeed.initialize "
        "(ZeRO 0, no optimizer), gloo on CPU, fresh processes",
        "size": args.size,
        "params": params,
        "fp32_model_gb": round(params * 4 / GB, 3),
        "omp_threads_per_rank": args.threads,
        "measurements": [measurements[key] for key in sorted(measurements)],
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
