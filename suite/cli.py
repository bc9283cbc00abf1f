"""The `suite` command: a thin dispatcher to one module per sub-command.

Sub-command modules are imported lazily so that data commands (`suite batch`,
`suite prepare`) never pay for importing torch, deepspeed or transformers.
Each module in `suite.commands` exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "plan": (
        "suite.commands.plan",
        "table of every run the sweep would launch (no weights allocated)",
    ),
    "prepare": (
        "suite.commands.prepare",
        "tokenize, deduplicate, pack and order the suite's datasets",
    ),
    "batch": (
        "suite.commands.batch",
        "reproduce the exact tokens of any batch, per rank, decodable",
    ),
    "train": ("suite.commands.train", "train one run of the suite (DeepSpeed TP x DP)"),
    "sweep": (
        "suite.commands.sweep",
        "run the whole suite: prepare, train every run, publish, report",
    ),
    "publish": (
        "suite.commands.publish",
        "finish publishing a run directory's pending checkpoints",
    ),
    "pull": ("suite.commands.pull", "print the local path of a run's checkpoint at a step"),
    "verify": ("suite.commands.verify", "check what was published against the manifests"),
    "status": ("suite.commands.status", "state of every run of a sweep directory"),
    "report": ("suite.commands.report", "tables and plots of a finished sweep"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: suite COMMAND [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`suite COMMAND --help` describes one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"suite: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # e.g. `suite plan --format csv | head`: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
