"""The first-GPU check: Pythia's real shapes through `suite train` on CUDA, measured and asserted.

Started by `benchmarks/gpu_check.sh` (which adds the total time guard); see README.md, "On a
GPU machine". For each size (160m, 1b) × precision (bf16, fp16) × TP (1, and 2 where there
are 2+ GPUs) it runs the real `suite train suite=pythia size=…` for 30 updates under
`benchmarks/gpu_probe.py` (plain `python` on one GPU, `torch.distributed.run` on several) and
writes, after every run, `benchmarks/results/gpu.json`:

* tokens/s/GPU and MFU (median over the updates after the first 5: allocator and kernel
  warm-up), MFU as the trainer logs it (`cluster.peak_flops_per_gpu` set from the GPU's name);
* peak GPU memory (max over ranks, `torch.cuda.max_memory_allocated`) against the plan's
  per-GPU estimate for the same run (`suite.planning.plan_rows`, what `suite plan --format
  json` prints);
* whether flash-attention really ran (the probe counts calls into the flash-attn package),
  skipped updates and the loss scale (fp16), every update's loss;
* per size and precision, the largest |loss(TP=2) − loss(TP=1)| over the updates.

Assertions (exit code 1, each named in the summary): a run crashed or timed out; a run did
not train the real preset (layers, width, heads, vocabulary 50304, positions 2048,
activation checkpointing on, the asked attention implementation); flash-attention was asked
for but the flash-attn kernels were never called; TP=2 and TP=1 saw different batches or
their losses differ by more than `--loss-tol`. Runs the time budget leaves no room for are
skipped and reported (exit code 3, "incomplete"). `--dry-run` prints every command and
validates every run's config without a GPU (exit 0).

Same global batch for both TP degrees, so their losses are comparable: every run uses all
GPUs (world = G) and `global_batch = micro × G`; a TP=t run has dp = G/t and micro × t
samples per rank, i.e. the same samples per GPU (tokens/s/GPU comparable too).

Data: `benchmarks/real_shape_data.py` (pre-shuffled Zipf token ids < 50277, a 50277-token
stub tokenizer) — seconds to build, offline. Its docstring says why not the stdlib corpus.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

# Beside this file: `python benchmarks/gpu_check.py` has benchmarks/ on sys.path.
from real_shape_data import write_dataset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu.json"
#: Pythia's embedding rows at TP=1 (50277 padded to a multiple of 128). Forced for TP=2 too:
#: the padding rule (128 × TP) would give 50432 rows there, another model than TP=1's.
PADDED_VOCAB = 50304
#: Dense bf16/fp16 tensor-core peaks (vendor data sheets, no sparsity), by name fragment.
#: The first match wins, so the more specific names come first.
PEAK_FLOPS = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
)
#: Updates left out of the throughput medians: the first ones pay for cuBLAS/flash-attn
#: autotuning, the caching allocator's growth and DeepSpeed's first-step set-up.
WARMUP_UPDATES = 5
#: A run is not started with less than this left of the budget (it could not finish).
MIN_RUN_SECONDS = 45


@dataclass(frozen=True)
class Run:
    """One `suite train` of the check."""

    size: str
    precision: str
    attention: str
    tp: int
    gpus: int
    micro_batch: int
    """Samples per rank per update (= the check's micro batch × tp)."""
    steps: int

    @property
    def dp(self) -> int:
        return self.gpus // self.tp

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.dp

    @property
    def tag(self) -> str:
        kernel = {"flash_attention_2": "fa2"}.get(self.attention, self.attention)
        return f"{self.size}-{self.precision}-{kernel}-tp{self.tp}"

    def overrides(self, data: Path, root: Path, machine: dict) -> list[str]:
        """Hydra overrides: the `pythia` preset, made small enough to finish in the budget."""
        return [
            "suite=pythia", f"size={self.size}", f"sizes=[{self.size}]", "dataset=pile",
            f"datasets.pile.path={data}", f"root={root}",
            f"precision={self.precision}", f"attention={self.attention}",
            f"train_steps={self.steps}", f"global_batch={self.global_batch}",
            f"parallel.gpus={self.gpus}", f"parallel.tp={self.tp}",
            f"parallel.micro_batch={self.micro_batch}", "parallel.grad_accum=1",
            f"padded_vocab={PADDED_VOCAB}",
            # Nothing but the trained updates: no store, no eval, checkpoints at 0 and the end
            # (step0 is always exported), no resume checkpoint inside 30 updates.
            "publish.store=none", "eval.every=0", "checkpoints.log_until=0",
            f"checkpoints.every={self.steps}", f"checkpoints.resume_every={self.steps}",
            f"cluster.gpus_per_node={self.gpus}",
            f"cluster.peak_flops_per_gpu={machine['peak_flops_per_gpu']:.6g}",
            f"cluster.gpu_memory_gb={machine['memory_gb']:.4g}",
        ]  # fmt: skip

    def command(self, python: str, overrides: list[str]) -> list[str]:
        probe = str(REPO / "benchmarks" / "gpu_probe.py")
        if self.gpus == 1:
            return [python, "-u", probe, *overrides]
        launcher = [python, "-u", "-m", "torch.distributed.run", "--standalone"]
        return [*launcher, "--nproc_per_node", str(self.gpus), probe, *overrides]


@dataclass
class Check:
    """The check's state: written to the results file after every run."""

    machine: dict
    settings: dict
    runs: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    status: str = "running"
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    finished: str | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str) + "\n")
        tmp.replace(path)  # a reader (or a killed check) never sees half a file


# --- the machine ---------------------------------------------------------------------------

_DETECT = r"""
import json, importlib.metadata as md
out = {}
for name in ("torch", "transformers", "deepspeed", "flash-attn"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
import torch
out["cuda"] = torch.cuda.is_available()
out["gpus"] = torch.cuda.device_count() if out["cuda"] else 0
if out["gpus"]:
    props = torch.cuda.get_device_properties(0)
    out["name"], out["memory_gb"] = props.name, props.total_memory / 1e9
    out["cuda_version"] = torch.version.cuda
try:
    import flash_attn
    out["flash_attn_error"] = None
except Exception as err:
    out["flash_attn_error"] = (f"{type(err).__name__}: {err}".splitlines() or ["?"])[0]
print(json.dumps(out))
"""


def detect(python: str) -> dict:
    """torch/CUDA/flash-attn facts, from a child process: a flash-attn wheel built for another
    torch can crash its importer, and the check's own process never holds a CUDA context."""
    done = subprocess.run(
        [python, "-c", _DETECT], capture_output=True, text=True, timeout=300, env=_child_env({})
    )
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: cannot inspect torch/CUDA:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_flops(name: str) -> tuple[float, str]:
    for fragment, flops in PEAK_FLOPS:
        if re.search(rf"\b{fragment}\b", name, re.IGNORECASE):
            return flops, f"{fragment} dense bf16/fp16"
    return 312e12, f"unknown GPU {name!r}: A100's 312e12 assumed (set --peak-flops)"


# --- running -------------------------------------------------------------------------------


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    # The repository need not be installed on the GPU machine: import it from here.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_env(run: Run, device: str, probe_dir: Path) -> dict[str, str]:
    if device == "cpu":
        # As the tests run DeepSpeed: gloo, one thread per process (2-core CI machines).
        extra = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    else:
        threads = max(1, (os.cpu_count() or 1) // run.gpus)
        extra = {"DS_ACCELERATOR": "cuda", "OMP_NUM_THREADS": str(threads)}
    return _child_env(extra | {"GPU_PROBE_DIR": str(probe_dir)})


def execute(
    command: list[str], env: dict[str, str], log: Path, timeout: float
) -> tuple[int, float]:
    """Run to completion (or `timeout`), output to `log`; returns (exit code, seconds).

    The child gets its own process group, so a timeout stops torchrun *and* its ranks."""
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            code = 124
        except BaseException:  # the outer guard's SIGTERM/Ctrl-C: leave no rank behind
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    return code, time.perf_counter() - started


# --- reading a run -------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def read_run(run: Run, root: Path, probe_dir: Path) -> dict:
    """Metrics, probe records and run record of a finished (or crashed) run."""
    run_dir = root / "pythia" / "runs" / f"pythia-{run.size}"
    updates = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if "loss" in record and "step" in record:
                updates.append(record)
    files = sorted(probe_dir.glob("rank*.json"), key=lambda p: int(p.stem.removeprefix("rank")))
    probes = [json.loads(p.read_text()) for p in files]
    steady = [u for u in updates if u["step"] > WARMUP_UPDATES] or updates
    tokens_per_s = _median([u["tokens_per_s"] for u in steady if u.get("tokens_per_s")])
    peaks = [p["max_memory_allocated_gb"] for p in probes if p.get("max_memory_allocated_gb")]
    reserved = [p["max_memory_reserved_gb"] for p in probes if p.get("max_memory_reserved_gb")]
    scales = [u["loss_scale"] for u in updates if u.get("loss_scale") is not None]
    return {
        "updates": len(updates),
        "losses": [u["loss"] for u in updates],
        "batch_hashes": [u.get("batch_hash") for u in updates],
        "tokens_per_s_per_gpu": tokens_per_s / run.gpus if tokens_per_s else None,
        "mfu": _median([u["mfu"] for u in steady if u.get("mfu") is not None]),
        "step_seconds_median": _median([u["step_seconds"] for u in steady if "step_seconds" in u]),
        "peak_memory_gb": max(peaks) if peaks else None,
        # The trainer's own figure (rank 0, after the last update): there even if the probe
        # could not write its record.
        "peak_memory_gb_rank0_metrics": updates[-1].get("max_memory_allocated_gb")
        if updates
        else None,
        "peak_memory_reserved_gb": max(reserved) if reserved else None,
        "skipped_updates": updates[-1].get("skipped_updates") if updates else None,
        "loss_scale_final": scales[-1] if scales else None,
        "loss_scale_min": min(scales) if scales else None,
        "model": probes[0]["model"] if probes else {},
        "calls_per_rank": [p["calls"] for p in probes],
        "ranks_reported": len(probes),
        "run_dir": str(run_dir),
    }


def expected_model(run: Run) -> dict:
    """What the probe must read off the trained module for the real preset."""
    from model_zoo import get_size

    spec = get_size("pythia", run.size)
    return {
        "attn_implementation": run.attention,
        "num_hidden_layers": spec.n_layers,
        "hidden_size": spec.d_model,
        "num_attention_heads": spec.n_heads,
        "vocab_size": PADDED_VOCAB,
        "max_position_embeddings": 2048,
        "activation_checkpointing": True,
    }


def assess(run: Run, result: dict) -> list[str]:
    """The assertions on one run; each failure is one line naming the run."""
    failures = []
    if result["status"] != "ok":
        return [f"{run.tag}: {result['status']} (exit {result['exit_code']}, log {result['log']})"]
    if result["updates"] != run.steps:
        failures.append(f"{run.tag}: {result['updates']} update lines, expected {run.steps}")
    if result["ranks_reported"] != run.gpus:
        failures.append(f"{run.tag}: {result['ranks_reported']} of {run.gpus} ranks reported")
    model = result["model"]
    for key, value in expected_model(run).items():
        if model.get(key) != value:
            failures.append(f"{run.tag}: model {key}={model.get(key)!r}, expected {value!r}")
    if run.attention == "flash_attention_2":
        calls = [_kernel_calls(c, run.attention) for c in result["calls_per_rank"]]
        if not calls or min(calls) == 0:
            failures.append(
                f"{run.tag}: flash-attention claimed but its kernels were not called "
                f"(flash-attn calls per rank: {calls})"
            )
    losses = result["losses"]
    if losses and (losses[-1] is None or not math.isfinite(losses[-1])):
        failures.append(f"{run.tag}: final loss is {losses[-1]}")
    return failures


def compare_tp(
    base: Run, base_result: dict, other: Run, other_result: dict, tol: float
) -> tuple[dict, list[str]]:
    """TP=t against TP=1 on the same batches: largest per-update loss difference."""
    a, b = base_result["losses"], other_result["losses"]
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    diffs = [abs(x - y) for x, y in pairs]
    same = base_result["batch_hashes"] == other_result["batch_hashes"]
    row = {
        "size": base.size,
        "precision": base.precision,
        "tp": [base.tp, other.tp],
        "updates_compared": len(diffs),
        "max_abs_loss_diff": max(diffs) if diffs else None,
        "first_update_diff": diffs[0] if diffs else None,
        "tolerance": tol,
        "same_batches": same,
    }
    failures = []
    label = f"{base.size} {base.precision} TP={other.tp} vs TP={base.tp}"
    if not diffs or len(diffs) != base.steps or len(a) != len(b):
        failures.append(f"{label}: losses not comparable ({len(a)} vs {len(b)} updates)")
    elif not same:
        failures.append(f"{label}: the runs trained on different batches")
    elif max(diffs) > tol:
        failures.append(f"{label}: max |Δloss| {max(diffs):.4g} > tolerance {tol}")
    row["ok"] = not failures
    return row, failures


# --- the check -----------------------------------------------------------------------------


def plan_runs(args, gpus: int, attention: str) -> list[Run]:
    tps = [1, 2] if gpus >= 2 else [1]
    return [
        Run(size, precision, attention, tp, gpus, args.micro_batch * tp, args.steps)
        for size in args.sizes
        for precision in args.precisions
        for tp in tps
    ]


def validate(run: Run, overrides: list[str]) -> dict:
    """Resolve the run's config as `suite train` will (no GPU): layout, DeepSpeed config, plan."""
    from suite.config import resolve_run
    from suite.errors import SuiteError
    from suite.planning import plan_row
    from suite.settings import load_suite
    from suite.train.engine import deepspeed_config

    cfg = load_suite(overrides)
    spec = resolve_run(cfg, run.size, "pile", vocab=50277)
    spec.layout.check_world(run.gpus)
    deepspeed_config(cfg, spec)
    checks = {
        "seq_len": (spec.seq_len, 2048),
        "padded_vocab": (spec.padded_vocab, PADDED_VOCAB),
        "tp": (spec.tp, run.tp),
        "dp": (spec.dp, run.dp),
        "activation_checkpointing": (cfg.activation_checkpointing, True),
        "precision": (cfg.precision, run.precision),
        "attention": (cfg.attention, run.attention),
    }
    for name, (got, want) in checks.items():
        if got != want:
            raise SuiteError(f"{name}={got!r}, expected {want!r}")
    row = plan_row(cfg, spec, len(cfg.checkpoint_schedule().steps()))
    return {"plan_memory_gb": row.memory_per_gpu_gb, "plan_fits": row.fits, "params": row.params}


def _kernel_calls(calls: dict, attention: str) -> int:
    """Calls into the kernel the run asked for (flash-attn's entry points, or PyTorch SDPA)."""
    if attention == "flash_attention_2":
        return calls.get("flash_attn_func", 0) + calls.get("flash_attn_varlen_func", 0)
    return calls.get("scaled_dot_product_attention", 0) if attention == "sdpa" else 0


def summary(check: Check, out: Path) -> str:
    m = check.machine
    lines = [
        f"gpu_check: {m.get('name', '?')} ×{m.get('gpus', 0)}, torch {m.get('torch')}, "
        f"transformers {m.get('transformers')}, deepspeed {m.get('deepspeed')}, "
        + (
            f"flash-attn {m.get('flash-attn')}"
            if not m.get("flash_attn_error")
            else f"flash-attn not loaded ({m.get('flash_attn_error')})"
        ),
        f"{'run':<24}{'status':<9}{'tok/s/GPU':>10}{'MFU':>7}{'peak GB':>9}{'plan GB':>9}"
        f"{'attn calls':>12}{'skipped':>8}{'scale':>8}  {'loss first → last':<18}{'wall':>6}",
    ]
    for r in check.runs:
        calls = [_kernel_calls(c, r["attention"]) for c in r.get("calls_per_rank", [])]
        losses = [x for x in r.get("losses", []) if x is not None]

        def fmt(value, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        lines.append(
            f"{r['tag']:<24}{r['status']:<9}{fmt(r.get('tokens_per_s_per_gpu'), ',.0f'):>10}"
            f"{fmt(r.get('mfu'), '.1%'):>7}{fmt(r.get('peak_memory_gb'), '.1f'):>9}"
            f"{fmt(r.get('plan_memory_gb'), '.1f'):>9}{(str(min(calls)) if calls else '-'):>12}"
            f"{fmt(r.get('skipped_updates'), 'd'):>8}{fmt(r.get('loss_scale_final'), '.3g'):>8}  "
            f"{(f'{losses[0]:.3f} → {losses[-1]:.3f}' if losses else '-'):<18}"
            f"{fmt(r.get('wall_s'), '.0f'):>5}s"
        )
    for c in check.comparisons:
        diff = c["max_abs_loss_diff"]
        lines.append(
            f"TP={c['tp'][1]} vs TP={c['tp'][0]} {c['size']} {c['precision']}: max |Δloss| "
            f"{'-' if diff is None else f'{diff:.3g}'} over {c['updates_compared']} updates "
            f"(tolerance {c['tolerance']}), same batches {c['same_batches']}: "
            f"{'ok' if c['ok'] else 'FAILED'}"
        )
    lines += [f"FAILED: {failure}" for failure in check.failures]
    lines.append(f"RESULT: {check.status.upper()} ({len(check.runs)} runs) → {out}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(
        prog="gpu_check", description=__doc__.split("\n\n")[0], epilog="See README.md."
    )
    parser.add_argument("--dry-run", action="store_true", help="print and validate, run nothing")
    parser.add_argument("--gpus", type=int, help="GPUs to use (default: all; dry run: 8)")
    parser.add_argument("--sizes", type=lambda s: s.split(","), default=["160m", "1b"])
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=["bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=30, help="updates per run")
    parser.add_argument("--micro-batch", type=int, default=8, help="samples per GPU per update")
    parser.add_argument(
        "--attention",
        choices=["auto", "flash_attention_2", "sdpa"],
        default="auto",
        help="auto: flash_attention_2 where flash-attn loads (dry run: assumed), else sdpa",
    )
    parser.add_argument(
        "--loss-tol",
        type=float,
        default=0.05,
        help="max |loss(TP=2) - loss(TP=1)| over the updates, nats (default 0.05, see README)",
    )
    parser.add_argument("--budget-s", type=float, default=480, help="time for all runs")
    parser.add_argument("--run-timeout-s", type=float, default=300, help="cap for one run")
    parser.add_argument("--peak-flops", type=float, help="peak FLOP/s per GPU (default: by name)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--work", type=Path, help="data and run folders (default: a temp dir)")
    parser.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: the whole path on gloo processes (for the tests; no MFU or GPU memory)",
    )
    parser.add_argument("--keep-exports", action="store_true", help="keep exported checkpoints")
    parser.add_argument(
        "--summary", action="store_true", help="print the summary of --out (after a guard stop)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summary:
        if not args.out.is_file():
            print(f"gpu_check: no results at {args.out}", file=sys.stderr)
            return 1
        fields = json.loads(args.out.read_text())
        check = Check(**fields)
        if check.status == "running":  # stopped from outside: say so, keep what was measured
            check.status = "incomplete"
            check.failures.append("stopped by the total time guard before the check finished")
            check.save(args.out)
        print(summary(check, args.out), flush=True)
        return 1
    python = sys.executable
    started = time.monotonic()
    machine = detect(python)
    if args.dry_run and not machine["gpus"]:
        machine |= {"name": "NVIDIA H200 (assumed: dry run)", "memory_gb": 141.0}
        gpus = args.gpus or 8
    elif args.device == "cpu":
        machine |= {"name": "cpu (gloo)", "memory_gb": 80.0}
        gpus = args.gpus or 2
    else:
        if not machine["gpus"]:
            print(
                "gpu_check: no CUDA device visible (torch.cuda.is_available() is False); "
                "use --dry-run here",
                file=sys.stderr,
            )
            return 2
        gpus = min(args.gpus or machine["gpus"], machine["gpus"])
    machine["gpus"] = gpus
    peak, source = (
        (args.peak_flops, "--peak-flops") if args.peak_flops else peak_flops(machine["name"])
    )
    machine |= {"peak_flops_per_gpu": peak, "peak_flops_source": source}

    flash_loads = machine.get("flash_attn_error") is None
    if args.attention != "auto":
        attention = args.attention
    elif args.device == "cpu":
        attention = "sdpa"  # flash-attn has no CPU kernels
    elif flash_loads or args.dry_run:
        attention = "flash_attention_2"
    else:
        attention = "sdpa"
    if attention == "sdpa" and args.attention == "auto" and args.device == "cuda":
        print(
            f"gpu_check: flash-attn does not load ({machine['flash_attn_error']}): the flash "
            "runs are SKIPPED, every run uses attention=sdpa",
            flush=True,
        )
    elif args.dry_run and not flash_loads and attention == "flash_attention_2":
        print(
            "gpu_check: dry run: flash-attn does not load here; the commands show "
            "attention=flash_attention_2, which a GPU machine without it replaces by sdpa"
        )

    runs = plan_runs(args, gpus, attention)
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check-{os.getpid()}"
    work = work.resolve()
    samples = args.steps * args.micro_batch * gpus
    data = write_dataset(work / "data" / "synthetic", samples)
    from data_order import open_dataset

    dataset = open_dataset(data)
    assert dataset.seq_len == 2048 and dataset.vocab_size == 50277, dataset
    settings = {
        "steps": args.steps,
        "micro_batch_per_gpu": args.micro_batch,
        "sizes": args.sizes,
        "precisions": args.precisions,
        "attention": attention,
        "loss_tolerance": args.loss_tol,
        "budget_s": args.budget_s,
        "device": args.device,
        "data": {"prefix": str(data), "samples": samples, "kind": "synthetic Zipf ids < 50277"},
        "work": str(work),
        "flash_note": (
            "flash_attention_2 (flash-attn loads)"
            if attention == "flash_attention_2"
            else f"sdpa: flash runs skipped ({machine.get('flash_attn_error') or args.attention})"
        ),
    }
    check = Check(machine, settings)
    from suite.errors import SuiteError

    planned = []
    for run in runs:
        overrides = run.overrides(data, work / "runs" / run.tag, machine)
        try:
            plan = validate(run, overrides)
        except SuiteError as err:  # the one line `suite train` would print, before any run
            print(f"gpu_check: {run.tag}: invalid config: {err}", file=sys.stderr)
            return 2
        planned.append((run, overrides, plan))

    if args.dry_run:
        print(
            f"gpu_check: dry run for {gpus} × {machine['name']} "
            f"(peak {peak:.3g} FLOP/s: {source}); data {data} ({samples} samples)"
        )
        for run, overrides, plan in planned:
            env = run_env(run, args.device, work / "probe" / run.tag)
            shown = {k: env[k] for k in ("DS_ACCELERATOR", "OMP_NUM_THREADS", "GPU_PROBE_DIR")}
            prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items())
            print(
                f"[{run.tag}] tp {run.tp} × dp {run.dp}, micro {run.micro_batch}, global batch "
                f"{run.global_batch}, plan {plan['plan_memory_gb']:.1f} GB/GPU: config valid"
            )
            print(f"  {prefix} {shlex.join(run.command(python, overrides))}")
        print(
            f"gpu_check: dry run OK: {len(planned)} runs validated; results would go to {args.out}"
        )
        return 0

    # The shell's time guard sends SIGTERM: unwind through `execute`, which then stops the
    # run in flight (its own process group), instead of dying and leaving ranks on the GPUs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    check.save(args.out)
    print(
        f"gpu_check: {len(planned)} runs on {gpus} × {machine['name']}, budget "
        f"{args.budget_s:.0f}s, results → {args.out}",
        flush=True,
    )
    done: dict[tuple[str, str, int], tuple[Run, dict]] = {}
    flash_crashed = False
    for run, overrides, plan in planned:
        if flash_crashed and run.attention == "flash_attention_2":
            # flash-attn imported but a run with it crashed: measure the rest with SDPA, so
            # the lease still yields throughput and memory (the crash stays a failure).
            run = replace(run, attention="sdpa")
            overrides = run.overrides(data, work / "runs" / run.tag, machine)
        left = args.budget_s - (time.monotonic() - started)
        result: dict = {"tag": run.tag, **asdict(run), "dp": run.dp}
        result |= {"global_batch": run.global_batch, **plan}
        if left < MIN_RUN_SECONDS:
            result |= {"status": "skipped", "reason": f"time budget: {left:.0f}s left"}
            check.runs.append(result)
            check.save(args.out)
            print(f"[{run.tag}] SKIPPED: {left:.0f}s of the budget left", flush=True)
            continue
        root, probe_dir = work / "runs" / run.tag, work / "probe" / run.tag
        for stale in (root, probe_dir):  # a rerun trains again rather than skipping
            shutil.rmtree(stale, ignore_errors=True)
        probe_dir.mkdir(parents=True)
        log = work / f"{run.tag}.log"
        command = run.command(python, overrides)
        print(f"[{run.tag}] {shlex.join(command)}", flush=True)
        code, wall = execute(
            command, run_env(run, args.device, probe_dir), log, min(left, args.run_timeout_s)
        )
        status = "ok" if code == 0 else ("timeout" if code == 124 else "crashed")
        result |= {"status": status, "exit_code": code, "wall_s": wall, "log": str(log)}
        result |= {"command": shlex.join(command)}
        result |= read_run(run, root, probe_dir)
        if result["peak_memory_gb"] and plan["plan_memory_gb"]:
            result["peak_vs_plan"] = result["peak_memory_gb"] / plan["plan_memory_gb"]
        if not args.keep_exports:  # 1b: 2 GB per export; the check keeps only its figures
            shutil.rmtree(Path(result["run_dir"]) / "exports", ignore_errors=True)
        failures = assess(run, result)
        if status != "ok":
            tail = log.read_text(errors="replace").splitlines()[-25:] if log.is_file() else []
            print("\n".join(f"  | {line}" for line in tail), flush=True)
        check.runs.append(result)
        check.failures += failures
        if status != "ok" and run.attention == "flash_attention_2" and not flash_crashed:
            flash_crashed = True
            check.settings["flash_note"] = f"{run.tag} failed: later runs use attention=sdpa"
            print(f"gpu_check: {run.tag} failed: the remaining runs use attention=sdpa", flush=True)
        base = done.get((run.size, run.precision, 1))
        if run.tp > 1 and base is not None and status == "ok" and base[1]["status"] == "ok":
            row, problems = compare_tp(base[0], base[1], run, result, args.loss_tol)
            check.comparisons.append(row)
            check.failures += problems
        done[(run.size, run.precision, run.tp)] = (run, result)
        check.save(args.out)
        print(
            f"[{run.tag}] {status} in {wall:.0f}s" + "".join(f"\n  FAILED: {f}" for f in failures),
            flush=True,
        )

    skipped = any(r["status"] == "skipped" for r in check.runs)
    check.status = "failed" if check.failures else ("incomplete" if skipped else "passed")
    check.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    check.save(args.out)
    print(summary(check, args.out), flush=True)
    return {"failed": 1, "incomplete": 3}.get(check.status, 0)


if __name__ == "__main__":
    sys.exit(main())
