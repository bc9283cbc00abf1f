"""Flags derived from dataclass fields: each knob's default, type and help defined once."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

import pytest

from data_order import PrepareConfig
from data_order.config import DEDUP_METHODS, DedupMethod
from suite.cli_fields import (
    add_dataclass_arguments,
    dataclass_from_args,
    field_default,
    field_docs,
    flag_name,
)
from suite.commands import prepare as prepare_cmd
from suite.config import PRECISIONS, DataConfig
from suite.launch import dry_run
from suite.launch.resources import SlurmResources, SlurmSite

#: Flags users type today (README, data_order/README.md, tests): they must keep working.
PREPARE_FLAGS_IN_USE = [
    "--input",
    "--text-field",
    "--tokenizer",
    "--vocab-size",
    "--eos-token",
    "--seq-len",
    "--seed",
    "--dedup",
    "--deduped-only",
    "--minhash-threshold",
    "--num-perm",
    "--shingle-size",
    "--eval-fraction",
    "--eval-min-docs",
    "--max-epochs",
    "--global-batch",
    "--workers",
    "--shards",
    "--shard",
    "--tokenizer-only",
    "--out",
    "--name",
    "--overwrite",
    "--no-progress",
]
DRY_RUN_FLAGS_IN_USE = [
    "--gpus",
    "--tp",
    "--time-minutes",
    "--job-name",
    "--folder",
    "--gpus-per-node",
    "--cpus-per-task",
    "--mem-per-gpu-gb",
    "--cpu-only",
    "--partition",
    "--account",
    "--qos",
    "--constraint",
    "--setup",
    "--sbatch",
    "--signal-delay-s",
    "--max-requeues",
]


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def _assert_defaults_come_from(parser: argparse.ArgumentParser, cls: type, exclude=()) -> None:
    by_dest = {action.dest: action for action in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        action = by_dest[f.name]  # every field has a flag storing into its name
        default = field_default(f)
        if default is dataclasses.MISSING:
            assert action.required, f.name
        elif isinstance(default, list | tuple) and not isinstance(default, str):
            # repeatable flag: None stands for "the dataclass default"
            assert action.default is None, f.name
        else:
            assert action.default == default, (f.name, action.default, default)


def test_prepare_cli_defaults_are_the_prepare_config_defaults():
    parser = prepare_cmd.build_parser()
    _assert_defaults_come_from(parser, PrepareConfig, exclude=("shard_index",))
    # and parsing no flag at all gives exactly PrepareConfig()
    args = parser.parse_intermixed_args(["--input", "stdlib"])
    assert prepare_cmd.config_from_args(args) == PrepareConfig()
    assert prepare_cmd.config_from_args(parser.parse_intermixed_args([])) == PrepareConfig()


def test_prepare_keeps_every_flag_users_type():
    actions = _actions(prepare_cmd.build_parser())
    assert set(PREPARE_FLAGS_IN_USE) <= set(actions), set(PREPARE_FLAGS_IN_USE) - set(actions)
    assert actions["--dedup"].choices == DEDUP_METHODS == get_args(DedupMethod)
    assert actions["--vocab-size"].type is int and actions["--minhash-threshold"].type is float
    # the help is the field's docstring
    docs = field_docs(PrepareConfig)
    assert actions["--seq-len"].help.startswith(docs["seq_len"])
    assert "(default: 2048)" in actions["--seq-len"].help


def test_prepare_flags_parse_into_the_config(tmp_path):
    parser = prepare_cmd.build_parser()
    argv = [
        *("--input", "a.txt", "--input", "b/"),
        *("--vocab-size", "300", "--seq-len", "16", "--dedup", "exact", "--deduped-only"),
        *("--out", str(tmp_path), "--shards", "4", "--shard", "2", "--no-progress"),
        *("--overwrite", "--global-batch", "8", "--name", "tiny", "--minhash-threshold", "0.9"),
    ]
    cfg = prepare_cmd.config_from_args(parser.parse_intermixed_args(argv))
    assert cfg == PrepareConfig(
        inputs=["a.txt", "b/"],
        vocab_size=300,
        seq_len=16,
        dedup="exact",
        emit_standard=False,
        out_dir=str(tmp_path),
        num_shards=4,
        shard_index=2,
        progress=False,
        overwrite=True,
        global_batch=8,
        name="tiny",
        minhash_threshold=0.9,
    )
    cfg = prepare_cmd.config_from_args(parser.parse_intermixed_args(["--shard", "1/3"]))
    assert (cfg.num_shards, cfg.shard_index) == (3, 1)
    with pytest.raises(SystemExit):
        parser.parse_intermixed_args(["--dedup", "fuzzy"])


def test_dry_run_flags_come_from_slurm_site_and_resources():
    parser = dry_run._parser()
    assert set(DRY_RUN_FLAGS_IN_USE) <= set(_actions(parser))
    _assert_defaults_come_from(parser, SlurmSite, exclude=("extra_sbatch",))
    _assert_defaults_come_from(parser, SlurmResources, exclude=("site", "host_memory"))
    args = parser.parse_args(["--gpus", "16", "--setup", "module load x", "--cpu-only"])
    site = dataclass_from_args(SlurmSite, args, extra_sbatch={})
    assert site == SlurmSite(setup=("module load x",), cpu_only=True)
    assert dataclass_from_args(SlurmResources, args, site=site) == SlurmResources(16, site=site)


def test_suite_data_config_and_prepare_config_agree_on_shared_knobs():
    # The same knob has the same default in both, except where the docs say why not.
    suite, standalone = DataConfig(), PrepareConfig()
    for name in ("tokenizer", "text_field", "minhash_threshold", "eval_fraction"):
        assert getattr(suite, name) == getattr(standalone, name), name
    # Documented differences: the suite defaults to Pythia's tokenizer vocabulary and to one
    # tokenizing process; a standalone `suite prepare` trains a small BPE on all CPUs.
    assert (suite.vocab_size, standalone.vocab_size) == (50277, 8192)
    assert (suite.workers, standalone.workers) == (1, 0)
    docs = field_docs(PrepareConfig)
    assert "50,277" in docs["vocab_size"] and "data.workers" in docs["workers"]


def test_choice_values_are_defined_once_as_literals():
    from model_zoo import Precision

    assert PRECISIONS == get_args(Precision) == ("fp32", "bf16", "fp16")
    assert DEDUP_METHODS == ("none", "exact", "minhash")


# --- the helper on its own ---------------------------------------------------------------


@dataclass
class Toy:
    """A dataclass exercising every supported annotation."""

    size: int
    """Required: no default. 100% of it."""
    mode: Literal["a", "b"] = "a"
    """One of two modes."""
    ratio: float | None = None
    """Optional ratio."""
    names: list[str] = field(default_factory=lambda: ["x"])
    """Some names."""
    verbose: bool = False
    """Say more."""
    color: bool = True
    """Use colours."""


def _toy_parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_arguments(parser, Toy, **kwargs)
    return parser


def test_helper_types_defaults_and_round_trip():
    parser = _toy_parser()
    assert set(_actions(parser)) >= {"--size", "--mode", "--ratio", "--names", "--verbose"}
    assert "--no-color" in _actions(parser)
    assert field_docs(Toy)["size"] == "Required: no default. 100% of it."
    parser.format_help()  # '%' in a docstring does not break argparse's formatting
    assert dataclass_from_args(Toy, parser.parse_args(["--size", "3"])) == Toy(3)
    args = parser.parse_args(
        ["--size", "3", "--mode", "b", "--ratio", "0.5", "--names", "p", "--names", "q"]
        + ["--verbose", "--no-color"]
    )
    assert dataclass_from_args(Toy, args) == Toy(3, "b", 0.5, ["p", "q"], True, False)
    assert dataclass_from_args(Toy, args, size=9).size == 9  # explicit values win
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --size is required
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser.parse_args(["--size", "1", "--mode", "c"])


def test_helper_renames_excludes_and_rejects_unknown_types():
    parser = _toy_parser(
        exclude=("names",), flags={"size": "--n"}, overrides={"size": {"help": "h"}}
    )
    actions = _actions(parser)
    assert "--names" not in actions and "--size" not in actions and actions["--n"].help == "h"
    assert actions["--n"].dest == "size" and actions["--n"].metavar == "N"
    assert flag_name("eval_min_docs") == "--eval-min-docs"

    @dataclass
    class Bad:
        table: dict[str, str] = field(default_factory=dict)

    with pytest.raises(TypeError, match="table: no command-line flag"):
        add_dataclass_arguments(argparse.ArgumentParser(), Bad)
    add_dataclass_arguments(argparse.ArgumentParser(), Bad, exclude=("table",))
