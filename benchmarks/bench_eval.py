"""`suite eval` over the mini suite's published checkpoints vs the `lm_eval` command line
run once per checkpoint (the way users script it today), and a check that both agree.

Needs a finished mini sweep (`suite sweep root=ROOT`, ~5 min). The sweep directory is
linked into a scratch root (its runs, data and store are read, never written), so the
benchmark starts from an empty ledger without touching the sweep's own.

- `suite eval`: one process over every checkpoint: `ppl/heldout` (256 held-out windows of
  the in-loop eval) and the built-in `heldout_continuation` task (64 examples) on each.
- `lm_eval` CLI: `lm_eval --model hf --model_args pretrained=PATH,dtype=float32 --tasks
  heldout_continuation --include_path TASKS --batch_size 32 --device cpu` per checkpoint:
  only the built-in task (less work than `suite eval` does), same batch size. A fresh
  interpreter per checkpoint is the cost of scripting the CLI: imports, task indexing,
  dataset loading, model loading, every time. The CLI is timed on `--cli-checkpoints`
  checkpoints spread over the sizes (all 160 would take about an hour) and its mean per
  checkpoint is compared with `suite eval`'s mean per checkpoint over all of them.
- Agreement: the CLI's `acc`/`acc_norm` equal the ledger's for the same checkpoints
  (identical requests, fp32; a difference could only come from a tie broken by float noise).

- Unchanged numbers (`--reference-ledger`, optional): the ledger of an earlier evaluation of
  the same store (another code version) against this one's, row for row: `acc`/`acc_norm`
  must be equal, `nll` equal to 1e-6 relative.

Wall time moves with other tenants' load on a shared machine; CPU seconds (of the child
processes) are steadier: both are reported, with the load average.

Run: `PYTHONPATH=. python benchmarks/bench_eval.py --root ROOT [--cli-checkpoints 8]
[--reference-ledger OLD/ledger.parquet]`. Writes `benchmarks/results/eval.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "eval.json"
TASK = "heldout_continuation"


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of a subprocess that must succeed."""
    cpu, wall = _child_cpu(), time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall, cpu = time.perf_counter() - wall, _child_cpu() - cpu
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return wall, cpu, result.stdout


def _scratch_root(root: Path, scratch: Path, name: str) -> Path:
    """A root whose sweep links to the real one's runs/data/store, with its own eval dir."""
    (scratch / name).mkdir(parents=True)
    for entry in ("runs", "sweep.json"):
        os.symlink((root / name / entry).absolute(), scratch / name / entry)
    for entry in ("data", "store"):
        os.symlink((root / entry).absolute(), scratch / entry)
    return scratch


def _spread(frame, count: int) -> list[tuple[str, str]]:
    """`count` (run, revision) pairs drawn over all runs and steps (seeded, so repeatable)."""
    import random

    pairs = sorted(set(zip(frame["run"], frame["revision"], strict=True)))
    return sorted(random.Random(0).sample(pairs, min(count, len(pairs))))


def _against_reference(ledger, reference) -> dict:
    """Largest differences to an earlier ledger of the same checkpoints (same weights)."""
    keys = ["run", "revision", "weights_sha256", "dtype", "task", "metric"]
    both = ledger.merge(reference, on=keys, suffixes=("", "_ref"))
    if len(both) != len(ledger):
        sys.exit(f"the reference ledger matches {len(both)} of {len(ledger)} rows")
    diff = (both["value"] - both["value_ref"]).abs()
    accuracy = both["metric"].isin(["acc", "acc_norm"])
    nll = both["metric"] == "nll"
    return {
        "reference_rows": len(both),
        "reference_max_abs_diff_acc": float(diff[accuracy].max()),
        "reference_max_rel_diff_nll": float((diff[nll] / both.loc[nll, "value_ref"].abs()).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="root of a finished mini sweep")
    parser.add_argument("--name", default="mini", help="suite name (sweep dir = ROOT/NAME)")
    parser.add_argument("--cli-checkpoints", type=int, default=8)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra `suite eval` overrides")
    parser.add_argument(
        "--reference-ledger", type=Path, help="an earlier ledger of the same store to compare with"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from suite.eval.ledger import read_ledger

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1"}
    env.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    scratch = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    try:
        root = _scratch_root(args.root, scratch, args.name)
        load_before = os.getloadavg()
        suite_wall, suite_cpu, out = _timed(
            [sys.executable, "-m", "suite.cli", "eval", f"root={root}", *args.overrides], env
        )
        ledger = read_ledger(root / args.name / "eval" / "ledger.parquet")
        checkpoints = ledger.groupby(["run", "revision"]).ngroups
        print(out.strip().splitlines()[-1])
        builtin = ledger[ledger["task"] == TASK]
        chosen = _spread(builtin, args.cli_checkpoints)
        cli_wall = cli_cpu = 0.0
        diffs = []
        for run, revision in chosen:
            rows = builtin[(builtin["run"] == run) & (builtin["revision"] == revision)]
            dataset = rows["dataset"].iloc[0]
            folder = args.root / "store" / "local" / run / revision
            output = scratch / "cli" / run / revision
            wall, cpu, _ = _timed(
                [
                    str(Path(sys.executable).parent / "lm_eval"),
                    "--model", "hf",
                    "--model_args", f"pretrained={folder},dtype=float32",
                    "--tasks", TASK,
                    "--include_path", str(root / args.name / "eval" / "tasks" / dataset),
                    "--batch_size", str(int(rows["batch_size"].iloc[0])),
                    "--device", "cpu",
                    "--output_path", str(output),
                ],
                env,
            )  # fmt: skip
            cli_wall, cli_cpu = cli_wall + wall, cli_cpu + cpu
            (result_file,) = output.rglob("results_*.json")
            result = json.loads(result_file.read_text())["results"][TASK]
            for metric in ("acc", "acc_norm"):
                ledger_value = float(rows.loc[rows["metric"] == metric, "value"].iloc[0])
                diffs.append(abs(result[f"{metric},none"] - ledger_value))
            print(f"lm_eval CLI {run} {revision}: {wall:.1f}s wall, {cpu:.1f}s CPU")
        per_suite = (suite_wall / checkpoints, suite_cpu / checkpoints)
        per_cli = (cli_wall / len(chosen), cli_cpu / len(chosen))
        figures = {
            "checkpoints": checkpoints,
            "suite_eval_wall_s": round(suite_wall, 2),
            "suite_eval_cpu_s": round(suite_cpu, 2),
            "suite_eval_wall_s_per_checkpoint": round(per_suite[0], 3),
            "suite_eval_tasks": sorted(set(ledger["task"])),
            "cli_checkpoints": len(chosen),
            "cli_wall_s_per_checkpoint": round(per_cli[0], 3),
            "cli_cpu_s_per_checkpoint": round(per_cli[1], 3),
            "cli_tasks": [TASK],
            "speedup_wall": round(per_cli[0] / per_suite[0], 1),
            "speedup_cpu": round(per_cli[1] / per_suite[1], 1),
            "cli_vs_ledger_max_abs_diff_acc": max(diffs) if diffs else None,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "harness_version": str(ledger["harness_version"].iloc[0]),
        }
        if args.reference_ledger:
            figures.update(_against_reference(ledger, read_ledger(args.reference_ledger)))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
