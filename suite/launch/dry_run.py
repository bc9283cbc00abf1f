"""Print the sbatch script of one run without submitting anything.

    python -m suite.launch.dry_run --gpus 128 --tp 2 --partition gpu --account eleuther

The script is rendered by submitit itself (see resources.render_sbatch), so it is what the
SLURM launcher would submit for a run with these resources. `suite sweep` can expose the
same for every run of a sweep.
"""

from __future__ import annotations

import argparse
import sys

from suite.cli_fields import add_dataclass_arguments, dataclass_from_args
from suite.errors import ConfigError, SuiteError
from suite.launch.resources import SlurmResources, SlurmSite, render_sbatch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suite.launch.dry_run", description=__doc__.split("\n")[0]
    )
    # The run's shape and the site's settings: fields of SlurmResources and SlurmSite.
    add_dataclass_arguments(parser, SlurmResources, exclude=("site", "host_memory"))
    add_dataclass_arguments(parser, SlurmSite, exclude=("extra_sbatch",))
    parser.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="extra sbatch flag, FLAG alone for a bare flag (repeatable; SlurmSite.extra_sbatch)",
    )
    parser.add_argument("--job-name", default="suite")
    parser.add_argument("--folder", default="submitit/%j", help="submitit folder (logs)")
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
        site = dataclass_from_args(SlurmSite, args, extra_sbatch=extra)
        resources = dataclass_from_args(SlurmResources, args, site=site)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# {resources.describe()}; requeues on timeout: {site.max_requeues}")
    print(render_sbatch(resources, args.folder, job_name=args.job_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
