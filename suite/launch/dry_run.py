"""Print the sbatch script of one run without submitting anything.

    python -m suite.launch.dry_run --gpus 128 --tp 2 --partition gpu --account eleuther

The script is rendered by submitit itself (see resources.render_sbatch), so it is what the
SLURM launcher would submit for a run with these resources. `suite sweep` can expose the
same for every run of a sweep.
"""

from __future__ import annotations

import argparse
import sys

from suite.errors import ConfigError, SuiteError
from suite.launch.resources import SlurmResources, SlurmSite, render_sbatch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suite.launch.dry_run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--gpus", type=int, required=True, help="total ranks (dp x tp)")
    parser.add_argument("--tp", type=int, default=1, help="tensor-parallel degree")
    parser.add_argument("--time-minutes", type=int, default=60)
    parser.add_argument("--job-name", default="suite")
    parser.add_argument("--folder", default="submitit/%j", help="submitit folder (logs)")
    parser.add_argument("--gpus-per-node", type=int, default=SlurmSite.gpus_per_node)
    parser.add_argument("--cpus-per-task", type=int, default=SlurmSite.cpus_per_task)
    parser.add_argument("--mem-per-gpu-gb", type=int, default=None)
    parser.add_argument("--cpu-only", action="store_true", help="ranks are CPU tasks (gloo)")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--qos")
    parser.add_argument("--constraint")
    parser.add_argument("--setup", action="append", default=[], help="shell line (repeatable)")
    parser.add_argument(
        "--sbatch", action="append", default=[], metavar="FLAG=VALUE", help="extra sbatch flag"
    )
    parser.add_argument("--signal-delay-s", type=int, default=SlurmSite.signal_delay_s)
    parser.add_argument("--max-requeues", type=int, default=SlurmSite.max_requeues)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        extra = {}
        for item in args.sbatch:
            flag, _, value = item.partition("=")
            if not flag.strip():
                raise ConfigError("--sbatch", item, "use FLAG=VALUE, or FLAG for a bare flag")
            extra[flag] = value
        site = SlurmSite(
            partition=args.partition,
            account=args.account,
            qos=args.qos,
            constraint=args.constraint,
            setup=tuple(args.setup),
            extra_sbatch=extra,
            gpus_per_node=args.gpus_per_node,
            cpus_per_task=args.cpus_per_task,
            mem_per_gpu_gb=args.mem_per_gpu_gb,
            cpu_only=args.cpu_only,
            signal_delay_s=args.signal_delay_s,
            max_requeues=args.max_requeues,
        )
        resources = SlurmResources(
            gpus=args.gpus, tp=args.tp, time_minutes=args.time_minutes, site=site
        )
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# {resources.describe()}; requeues on timeout: {site.max_requeues}")
    print(render_sbatch(resources, args.folder, job_name=args.job_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
