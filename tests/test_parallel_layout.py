"""One parallel layout, one rule set: the rules themselves, and planning, SLURM and the
process-group check agreeing on every run of the shipped suites."""

from __future__ import annotations

import re
from dataclasses import asdict, fields

import pytest

from suite.config import RunSpec, resolve_all, resolve_layout, resolve_run
from suite.errors import ConfigError
from suite.launch.suite_resources import slurm_resources
from suite.parallel import ParallelLayout
from suite.planning import plan_rows
from suite.settings import load_suite


# (gpus, tp, gpus_per_node) → (dp, nodes, ranks_per_node)
@pytest.mark.parametrize(
    ("gpus", "tp", "per_node", "expected"),
    [
        (1, 1, 8, (1, 1, 1)),  # single node
        (4, 2, 8, (2, 1, 4)),
        (8, 8, 8, (1, 1, 8)),
        (6, 3, 8, (2, 1, 6)),  # one node: tp need not divide gpus_per_node
        (2, 2, 2, (1, 1, 2)),
        (32, 1, 8, (32, 4, 8)),  # multi node (Pythia's layouts)
        (128, 2, 8, (64, 16, 8)),
        (256, 4, 8, (64, 32, 8)),
        (16, 8, 8, (2, 2, 8)),
        (4, 2, 2, (2, 2, 2)),  # the mini suite's 2-rank "nodes"
    ],
)
def test_valid_layouts(gpus, tp, per_node, expected):
    layout = ParallelLayout(gpus=gpus, tp=tp, gpus_per_node=per_node)
    assert (layout.dp, layout.nodes, layout.ranks_per_node) == expected
    assert layout.dp * layout.tp == layout.world_size == gpus
    assert layout.nodes * layout.ranks_per_node == gpus


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # gpus not a multiple of tp
        (
            {"gpus": 6, "tp": 4},
            r"^gpus=6: not divisible by tp=4; use a multiple of 4 \(e\.g\. 4\)$",
        ),
        ({"gpus": 3, "tp": 2, "gpus_per_node": 2}, r"^gpus=3: not divisible by tp=2"),
        # tp larger than a node, single- or multi-node
        ({"gpus": 32, "tp": 16}, r"^tp=16: a tensor-parallel group must live inside one node"),
        ({"gpus": 16, "tp": 16}, r"^tp=16: .* gpus_per_node=8; use tp <= 8$"),
        # a job over several nodes with uneven ranks per node
        ({"gpus": 12}, r"^gpus=12: spans 2 nodes but is not a multiple of gpus_per_node=8"),
        ({"gpus": 3, "gpus_per_node": 2}, r"^gpus=3: spans 2 nodes"),
        # a TP group straddling two nodes
        ({"gpus": 24, "tp": 3}, r"^tp=3: does not divide gpus_per_node=8, so a TP group would"),
        ({"gpus": 48, "tp": 6}, r"^tp=6: does not divide gpus_per_node=8"),
        # not whole numbers >= 1
        ({"gpus": 0}, r"^gpus=0: use a whole number >= 1$"),
        ({"gpus": 8, "tp": 0}, r"^tp=0: use a whole number >= 1$"),
        ({"gpus": 2.5}, r"^gpus=2.5: use a whole number >= 1$"),
        ({"gpus": True}, r"^gpus=True: use a whole number >= 1$"),
        ({"gpus": 8, "micro_batch": 0}, r"^micro_batch=0: use a whole number >= 1$"),
        ({"gpus": 8, "grad_accum": -1}, r"^grad_accum=-1: use a whole number >= 1$"),
        ({"gpus": 8, "gpus_per_node": 0}, r"^gpus_per_node=0: use a whole number >= 1$"),
    ],
)
def test_invalid_layouts(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ParallelLayout(**kwargs)


def test_ranks_map_to_groups_and_the_world_must_match():
    layout = ParallelLayout(gpus=8, tp=2, micro_batch=4, grad_accum=3, gpus_per_node=4)
    assert layout.global_batch == 4 * 4 * 3
    assert [layout.dp_rank(r) for r in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [layout.tp_rank(r) for r in range(8)] == [0, 1] * 4
    for bad in (-1, 8):
        with pytest.raises(ConfigError, match=rf"^rank={bad}: use a rank in 0 … 7"):
            layout.dp_rank(bad)
    layout.check_world(8)
    with pytest.raises(ConfigError) as err:
        layout.check_world(6)
    assert str(err.value) == (
        "world_size=6: dp × tp = 4 × 2 = 8 ranks but the job has world_size=6 processes; "
        "start 8 processes or change the run's gpus (= dp × tp) / tp"
    )


SUITES = [
    ["suite=pythia"],
    ["suite=mini"],
    ["suite=mini", "parallel.gpus=4", "parallel.micro_batch=4"],  # two 2-rank nodes
    ["suite=mini", "sizes=[360k]", "parallel.gpus=4", "parallel.tp=2", "parallel.micro_batch=8"],
]


@pytest.mark.parametrize("overrides", SUITES, ids=" ".join)
def test_planning_slurm_and_the_process_group_agree(overrides):
    cfg = load_suite(overrides)
    runs = resolve_all(cfg)
    rows = {row.run: row for row in plan_rows(cfg)}
    assert len(rows) == len(runs) == len(cfg.runs())
    for run in runs:
        layout = run.layout
        # One object: the trainer's check (no vocabulary) resolves the same layout.
        assert resolve_layout(cfg, run.size_name) == layout
        assert layout.gpus_per_node == cfg.cluster.gpus_per_node
        assert (run.gpus, run.tp, run.dp) == (layout.gpus, layout.tp, layout.dp)
        assert (run.micro_batch, run.grad_accum) == (layout.micro_batch, layout.grad_accum)
        assert run.global_batch == layout.global_batch == cfg.global_batch
        # Planning.
        row = rows[run.run_name]
        assert (row.gpus, row.tp, row.dp, row.nodes) == (
            layout.gpus,
            layout.tp,
            layout.dp,
            layout.nodes,
        )
        assert (row.micro_batch, row.grad_accum) == (layout.micro_batch, layout.grad_accum)
        # SLURM: one task per rank, the same number on every node.
        job = slurm_resources(cfg, run)
        assert job.layout is layout
        assert (job.gpus, job.tp, job.dp) == (layout.gpus, layout.tp, layout.dp)
        assert (job.nodes, job.tasks_per_node) == (layout.nodes, layout.ranks_per_node)
        assert job.nodes * job.tasks_per_node == layout.world_size
        assert f"dp={layout.dp} x tp={layout.tp}" in job.describe()
        # The process group: SLURM's task count is the world the trainer accepts.
        layout.check_world(job.nodes * job.tasks_per_node)
        with pytest.raises(ConfigError, match="^world_size="):
            layout.check_world(layout.world_size + 1)
        # Every TP group is consecutive ranks on one node; DP ranks cover 0 … dp-1.
        groups: dict[int, set[int]] = {}
        for rank in range(layout.world_size):
            groups.setdefault(layout.dp_rank(rank), set()).add(rank // job.tasks_per_node)
        assert sorted(groups) == list(range(layout.dp))
        assert all(len(nodes) == 1 for nodes in groups.values())


@pytest.mark.parametrize(
    ("overrides", "size", "message"),
    [
        (
            ["suite=mini", "parallel.gpus=3"],
            "360k",
            "parallel.gpus=3: spans 2 nodes but is not a multiple of gpus_per_node=2; "
            "use a multiple of 2 (every node runs the same number of ranks) (size 360k)",
        ),
        (["suite=mini", "default_resources.gpus=3"], "360k", "default_resources.gpus=3: spans"),
        (["suite=mini", "cluster.gpus_per_node=0"], "360k", "cluster.gpus_per_node=0: use a"),
        (
            ["suite=pythia", "resources={12b:{gpus:256,tp:16}}", "cluster.gpus_per_node=16"],
            "12b",
            "resources.12b.tp=16: size 12b has n_heads=40",
        ),
        (
            ["suite=pythia", "resources={6.9b:{gpus:48,tp:6}}"],
            "6.9b",
            "resources.6.9b.tp=6: does not divide",
        ),
        (["suite=pythia", "resources={6.9b:{gpus:48,tp:6}}"], "6.9b", "straddle"),
        # Each field is named where it is set: micro_batch in `parallel`, tp in `resources`.
        (
            ["suite=pythia", "parallel.micro_batch=0"],
            "70m",
            "parallel.micro_batch=0: use a whole number >= 1 (size 70m)",
        ),
        (
            ["suite=pythia", "parallel.micro_batch=16", "resources={70m:{tp:3}}"],
            "70m",
            "resources.70m.gpus=32: not divisible by tp=3",
        ),
    ],
)
def test_layout_errors_name_the_field_as_written(overrides, size, message):
    cfg = load_suite(overrides)
    with pytest.raises(ConfigError) as err:
        resolve_layout(cfg, size)
    assert message in str(err.value)


def test_slurm_errors_name_the_suite_fields():
    cfg = load_suite(["suite=mini", "default_resources.time_minutes=1"])
    run = resolve_run(cfg, "160k", "stdlib")
    with pytest.raises(ConfigError, match=r"^slurm\.signal_delay_s=120: .*\(run mini-160k\)$"):
        slurm_resources(cfg, run)


@pytest.mark.parametrize(
    ("suite", "size", "dataset"),
    [("suite=pythia", "70m", "pile"), ("suite=pythia", "12b", "pile-deduped"),
     ("suite=mini", "160k", "stdlib")],
)  # fmt: skip
def test_config_hash_ignores_node_size_but_not_the_layout(suite, size, dataset):
    from suite.train.factory import config_hash

    cfg = load_suite([suite])
    run = resolve_run(cfg, size, dataset)
    # The node size only places ranks: the weights do not depend on it.
    wider = load_suite([suite, f"cluster.gpus_per_node={2 * cfg.cluster.gpus_per_node}"])
    assert config_hash(wider, resolve_run(wider, size, dataset)) == config_hash(cfg, run)
    # The batch split does (accumulation order of the gradient sums).
    accum = run.grad_accum * 2
    split = (
        load_suite(
            [
                suite,
                f"parallel.micro_batch={run.micro_batch // 2 or 1}",
                f"parallel.grad_accum={accum}",
            ]
        )
        if run.micro_batch > 1
        else None
    )
    if split is not None:
        assert config_hash(split, resolve_run(split, size, dataset)) != config_hash(cfg, run)


def test_runspec_fields_are_the_flat_ones_and_layout_is_not_a_field():
    cfg = load_suite(["suite=pythia"])
    run = resolve_run(cfg, "6.9b", "pile")
    # The fields (what asdict(run), hence the config hash, holds) are those from before the layout.
    assert [f.name for f in fields(RunSpec)] == [
        *("suite", "run_name", "repo_id", "size_name", "size", "family", "dataset_name"),
        *("dataset", "vocab", "padded_vocab", "gpus", "tp", "dp", "micro_batch", "grad_accum"),
        *("global_batch", "seq_len", "train_steps", "lr", "time_minutes"),
        *("seed", "init_seed", "data_seed"),  # config_hash keeps the pre-seed-axis hash
    ]
    assert "layout" not in asdict(run)
    layout_view = {k: asdict(run)[k] for k in ("gpus", "tp", "dp", "micro_batch", "grad_accum")}
    assert layout_view == {"gpus": 128, "tp": 2, "dp": 64, "micro_batch": 8, "grad_accum": 2}
    assert re.search(r"gpus=128, tp=2", repr(run.layout))
