"""Bad input and faults, table-driven: every row runs the real `suite` command.

Each row gives the argv, the exit code (2: a user error; 1: a fault that is not the user's,
such as an unreachable Hub), a substring of the message, and whether stderr is exactly one
line (argparse's own errors print its usage first, then one line). Every row also asserts
that no traceback is printed and that nothing on disk changed: a refused command leaves
no half-made run directory, dataset or record behind.

Placeholders in argv (`str.format`: a literal brace is doubled): {data} (a prepared tiny
dataset), {root} (an empty folder the command may not write to), {trained} (the root of a
finished 4-update run), {prepared} (a root with a small `stdlib` dataset prepared), {port}
(a closed port), {file} (a text file: where a folder is wanted, the filesystem refuses; the
tests run as root, so permissions would not), {store} (a local store holding org/x at step0
and step4), {damaged} (a sweep directory whose one run.json is cut short).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dist_helpers import free_port, run_train, train_env


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    expect: str
    one_line: bool = True
    env: dict[str, str] = field(default_factory=dict)


#: A run of the tiny dataset, before the per-row overrides.
TRAIN = (
    "train", "size=160k", "dataset=stdlib", "datasets.stdlib.path={data}", "root={root}",
    "publish.store=none", "seq_len=32", "padded_vocab=512", "global_batch=8",
    "default_resources.micro_batch=8",
)  # fmt: skip
#: The mini suite with only `stdlib`, on the 40 `encodings/cp*.py` files: prepares in seconds.
SMALL_STDLIB = (
    "datasets={{stdlib:{{inputs:[" + str(Path(sysconfig.get_paths()["stdlib"]) / "encodings" / "cp*.py") + "]}}}}",
    "~datasets.stdlib-deduped", "data.vocab_size=512",
)  # fmt: skip
#: The same run, in the root of the finished run.
TRAINED = tuple(a.replace("{root}", "{trained}") for a in TRAIN)

CASES = [
    # Unknown keys, `+` or not, top level and nested, for every command that loads the suite.
    Case("typo", ("plan", "train_stpes=5"), 2, "train_stpes=5: no such field in the suite config; did you mean train_steps?"),
    Case("typo-plus", ("plan", "+train_stpes=5"), 2, "did you mean train_steps?"),
    Case("typo-plusplus", ("plan", "++train_stpes=5"), 2, "did you mean train_steps?"),
    Case("typo-nested", ("plan", "optim.lrr=1"), 2, "optim has no field 'lrr' in the suite config; did you mean optim.lr?"),
    Case("typo-nested-plus", ("plan", "+optim.lrr=1"), 2, "did you mean optim.lr?"),
    Case("typo-dataset-field", ("plan", "+datasets.stdlib.pathh=x"), 2, "did you mean datasets.stdlib.path?"),
    Case("typo-far", ("plan", "+zzzzzz=1"), 2, "no such field in the suite config; the fields are name,"),
    # `???` is OmegaConf's "missing": for a group it used to crash in the finite-number check.
    Case("missing-group", ("plan", "optim=???"), 2, "optim='???': give it a value ('???' marks a value left out)"),
    Case("missing-value", ("plan", "train_steps=???"), 2, "train_steps='???': give it a value"),
    Case("bad-interpolation-list", ("plan", "sizes=${{nope}}"), 2, "sizes: Interpolation key 'nope' not found"),
    Case("bad-dedup-engine", ("plan", "data.dedup_engine=ray"), 2, "data.dedup_engine='ray': use one of: single, datatrove"),
    Case("typo-sweep", ("sweep", "--dry-run", "+checkpoints.evry=3"), 2, "did you mean checkpoints.every?"),
    Case("typo-prepare", ("prepare", "seq_lne=64"), 2, "did you mean seq_len?"),
    Case("typo-train", (*TRAIN, "+train_stpes=5"), 2, "did you mean train_steps?"),
    # Values of the wrong type or out of range.
    Case("not-an-int", ("plan", "train_steps=abc"), 2, "could not be converted to Integer"),
    Case("bad-grammar", ("plan", "train_steps=[1"), 2, "invalid override in train_steps=[1"),
    Case("unknown-suite", ("plan", "suite=nope"), 2, "Could not find 'suite/nope'"),
    Case("unknown-size", ("plan", "size=nope"), 2, "size='nope': known sizes"),
    Case("unknown-sizes", ("plan", "sizes=[nope]"), 2, "sizes='nope': unknown size"),
    Case("zero-steps", ("plan", "train_steps=0"), 2, "train_steps=0: use a positive number"),
    Case("zero-batch", ("plan", "global_batch=0"), 2, "global_batch=0"),
    Case("bad-precision", ("plan", "precision=fp8"), 2, "precision='fp8': use one of"),
    Case("bad-zero-stage", ("plan", "zero_stage=7"), 2, "zero_stage=7"),
    Case("bad-attention", ("plan", "attention=bogus"), 2, "attention='bogus'"),
    Case("bad-store", ("plan", "publish.store=ftp://x"), 2, "publish.store='ftp://x'"),
    Case("negative-lr", ("plan", "optim.lr=-1"), 2, "optim.lr=-1.0"),
    Case("keep-resume-0", ("plan", "checkpoints.keep_resume=0"), 2, "checkpoints.keep_resume=0"),
    Case("plan-format", ("plan", "--format", "xml"), 2, "invalid choice: 'xml'", one_line=False),
    # Training: caught before anything starts (nothing on disk).
    Case("past-the-data", (*TRAIN, "train_steps=100000"), 2, "train_steps=100000: needs 800,000 samples (100000 × global_batch 8) but"),
    Case("past-the-data-fix", (*TRAIN, "train_steps=100000"), 2, "use train_steps <= 4800"),
    Case("fp16-on-cpu", (*TRAIN, "train_steps=4", "precision=fp16"), 2, "precision='fp16': needs a CUDA GPU (DeepSpeed has no fp16 on CPU); use bf16 or fp32 here"),
    Case("flash-on-cpu", (*TRAIN, "train_steps=4", "precision=bf16", "attention=flash_attention_2"), 2, "attention='flash_attention_2'"),
    Case("seq-len-of-data", (*TRAIN, "train_steps=4", "seq_len=64"), 2, "holds samples of seq_len=32"),
    Case("vocab-too-small", (*TRAIN, "train_steps=4", "padded_vocab=100"), 2, "padded_vocab=100"),
    Case("missing-data", (*TRAIN[:3], "datasets.stdlib.path={root}/missing", *TRAIN[4:], "train_steps=4"), 2, "datasets.stdlib.path="),
    Case("world-size", (*TRAIN, "train_steps=4", "parallel.gpus=2", "parallel.micro_batch=4"), 2, "world_size=1: dp × tp = 2 × 1 = 2"),
    Case("bad-tp", (*TRAIN, "train_steps=4", "parallel.tp=3"), 2, "not divisible by tp=3"),
    Case("indivisible-batch", (*TRAIN, "train_steps=4", "global_batch=7"), 2, "global_batch=7"),
    Case("no-size", ("train", "dataset=stdlib", "root={root}"), 2, "size=None: choose the run's size"),
    # A finished run: another identity is refused, naming the leaf field that differs.
    Case("other-seed", (*TRAINED, "train_steps=4", "seed=99"), 2, "seed: saved 1234, now 99"),
    Case("other-micro-batch", (*TRAINED, "train_steps=4", "global_batch=4", "default_resources.micro_batch=4"), 2, "layout.micro_batch: saved 8, now 4"),
    # A root keeps one version of each dataset: other data settings are refused, not rebuilt.
    Case("other-data-settings", ("train", "size=160k", "dataset=stdlib", "root={prepared}", *SMALL_STDLIB, "seed=5", "train_steps=2", "publish.store=none"), 2, "datasets.stdlib='{prepared}/data/mini/stdlib': already prepared under this root with other data settings"),
    # Stores: a user error exits 2, an unreachable server 1, in one line.
    Case("pull-bad-repo", ("pull", "bad repo", "--step", "1", "--store", "local:{root}/store"), 2, "repo='bad repo'"),
    Case("pull-bad-store", ("pull", "org/x", "--step", "1", "--store", "bogus:xx"), 2, "store='bogus:xx'"),
    Case("pull-bad-step", ("pull", "org/x", "--step", "abc"), 2, "'abc' is not a step number", one_line=False),
    Case("pull-hub-down", ("pull", "org/x", "--step", "1", "--store", "hub:http://127.0.0.1:{port}"), 1, "suite pull: cannot reach http://127.0.0.1:{port}: "),
    Case("verify-hub-down", ("verify", "org/x", "--store", "hub:http://127.0.0.1:{port}"), 1, "suite verify: cannot reach http://127.0.0.1:{port}: "),
    Case("pull-hub-offline", ("pull", "org/x", "--step", "1", "--store", "hub:http://127.0.0.1:{port}"), 1, "HF_HUB_OFFLINE is set", env={"HF_HUB_OFFLINE": "1"}),
    Case("pull-hub-missing-repo", ("pull", "org/x", "--step", "1", "--store", "local:{root}/store"), 1, "org/x"),
    # Other commands given what is not theirs.
    Case("status-nothing", ("status", "{root}/nothing"), 2, "no runs in"),
    Case("report-nothing", ("report", "{root}/nothing"), 2, "no run with results to report"),
    Case("publish-nothing", ("publish", "{root}/nothing"), 1, "no publish/target.json"),
    Case("batch-no-data", ("batch", "0", "--data", "{root}/missing"), 2, "{root}/missing"),
    Case("unknown-command", ("nosuchcmd",), 2, "suite: unknown command 'nosuchcmd'; use one of: plan, prepare, batch"),
    Case("command-case", ("PLAN",), 2, "suite: unknown command 'PLAN'; did you mean `suite plan`?"),
    # Hydra's override grammar: no key, no '=', no value, wrong shape, unknown group, sweeps.
    Case("no-key", ("plan", "=5"), 2, "invalid override '=5': no key before '='; write key=value"),
    Case("no-equals", ("plan", "train_steps"), 2, "Error parsing override 'train_steps'"),
    Case("empty-value", ("plan", "train_steps="), 2, "Value '' of type 'str' could not be converted to Integer"),
    Case("list-for-scalar", ("plan", "precision=[bf16]"), 2, "Cannot convert 'list' to string"),
    Case("scalar-for-list", ("plan", "sizes=160k"), 2, "str is not a ListConfig"),
    Case("null-for-int", ("plan", "train_steps=null"), 2, "field 'train_steps' is not Optional"),
    Case("unknown-group", ("plan", "hydra/launcher=nope"), 2, "Could not find 'hydra/launcher/nope'"),
    Case("group-list", ("plan", "suite=[1,2]"), 2, "a config group (suite=, hydra/launcher=) takes one name"),
    Case("dict-typo", ("plan", "datasets={{stdlib: {{pathh: x}}}}"), 2, "datasets.stdlib has no field 'pathh' in the suite config; did you mean datasets.stdlib.path?"),
    Case("dict-typo-nested", ("plan", "optim={{lrr: 1}}"), 2, "optim has no field 'lrr' in the suite config; did you mean optim.lr?"),
    Case("sweep-syntax", ("plan", "size=160k,250k"), 2, "`suite sweep` runs every size and dataset"),
    Case("interpolation", ("plan", "train_steps=${{nope}}"), 2, "train_steps: Interpolation key 'nope' not found"),
    Case("env-interpolation", ("plan", "name=${{oc.env:SUITE_NO_SUCH_VAR}}"), 2, "Environment variable 'SUITE_NO_SUCH_VAR' not found"),
    Case("non-ascii", ("plan", "train_steps=ü"), 2, "quote a value holding spaces, non-ASCII or special characters"),
    Case("line-separator", ("plan", "name='a\x1eb'"), 2, "name='a\\x1eb': use letters, digits"),
    # Values the types allow and the suite cannot use.
    Case("nan", ("plan", "optim.lr=nan"), 2, "optim.lr=nan: use a finite number"),
    Case("mfu", ("plan", "cluster.mfu=2"), 2, "cluster.mfu=2.0: use a fraction in (0, 1]"),
    Case("tiny-flops", ("plan", "cluster.peak_flops_per_gpu=1e-300"), 2, "cluster.peak_flops_per_gpu=1e-300"),
    Case("empty-name", ("plan", "name="), 2, "name='': use letters, digits, '.', '_' or '-'"),
    Case("empty-root", ("sweep", "--dry-run", "root="), 2, "root='': give a folder"),
    Case("size-twice", ("plan", "sizes=[160k,160k]"), 2, "160k is listed twice; list each size once"),
    Case("huge-schedule", ("plan", "train_steps=1000000000"), 2, "over 1,000,000 checkpoints; lower train_steps or raise checkpoints.every"),
    Case("beyond-64-bits", ("plan", "train_steps=9223372036854775807", "checkpoints.every=9223372036854775807"), 2, "beyond 64-bit counts"),
    Case("sweep-unknown-size", ("sweep", "--dry-run", "sizes=[160k,nope]"), 2, "sizes='nope': unknown size in the 'mini' ladder"),
    Case("sweep-flag", ("sweep", "--nope"), 2, "unrecognized arguments: --nope", one_line=False),
    # suite batch: indices, ranks and flags checked before a token is printed.
    Case("batch-negative", ("batch", "-1", "--data", "{data}"), 2, "batch_index=-1: {data} has batches 0.."),
    Case("batch-beyond", ("batch", "0", "--to", "999999", "--data", "{data}"), 2, "--to=999999: {data} has batches 0.."),
    Case("batch-rank", ("batch", "0", "--data", "{data}", "--dp-rank", "2", "--dp-size", "2"), 2, "dp_rank=2: must be in [0, dp_size=2)"),
    Case("batch-micro-step", ("batch", "0", "--data", "{data}", "--micro-step", "0"), 2, "--micro-step=0: needs --dp-rank"),
    Case("batch-zero", ("batch", "0", "--data", "{data}", "--global-batch", "0"), 2, "--global-batch=0: use a positive batch size"),
    Case("batch-too-big", ("batch", "0", "--data", "{data}", "--global-batch", "100000000"), 2, "--global-batch=100000000: more than the"),
    Case("batch-fingerprint", ("batch", "0", "--data", "{data}", "--expect-fingerprint", "deadbeef"), 2, "differs from the expected deadbeef"),
    Case("batch-out-suffix", ("batch", "0", "--data", "{data}", "--out", "{root}/b.txt"), 2, "--out='{root}/b.txt': must end in .npy or .jsonl"),
    Case("batch-out-in-file", ("batch", "0", "--data", "{data}", "--out", "{file}/b.npy"), 1, "suite batch: {file}: File exists [EEXIST]; a file is in the way of a folder"),
    Case("batch-tokenizer", ("batch", "0", "--data", "{data}", "--decode", "--tokenizer", "{file}"), 2, "--tokenizer='{file}': not a tokenizer.json"),
    Case("batch-not-data", ("batch", "0", "--data", "{file}"), 2, "neither a dataset folder nor a .bin/.idx prefix"),
    Case("batch-index", ("batch", "abc", "--data", "{data}"), 2, "argument index: invalid int value: 'abc'", one_line=False),
    # suite prepare: inputs and flags (nothing but empty folders under {root}).
    Case("prepare-missing", ("prepare", "--input", "{root}/missing", "--out", "{root}/out"), 2, "suite prepare: inputs='{root}/missing'"),
    Case("prepare-glob", ("prepare", "--input", "{root}/*.nope", "--out", "{root}/out"), 2, "the glob matches no file; check the pattern"),
    Case("prepare-seq-len", ("prepare", "--input", "{root}/x", "--seq-len", "0", "--out", "{root}/out"), 2, "seq_len=0: must be an integer >= 1"),
    Case("prepare-shard", ("prepare", "--input", "{root}/x", "--shard", "x"), 2, "--shard='x': give I or I/N with integers"),
    Case("prepare-two-modes", ("prepare", "--input", "{root}/x", "seq_len=64"), 2, "cannot be combined with --input; use one mode"),
    Case("prepare-root-in-file", ("prepare", "root={file}/r"), 2, "{file} is a file, not a directory; give a folder"),
    # Other commands: a file where a folder is wanted, a store without the step.
    Case("sweep-root-in-file", ("sweep", "root={file}", "--no-report"), 2, "{file} is a file, not a directory; give a folder"),
    Case("train-root-in-file", (*TRAIN[:4], "root={file}/r", *TRAIN[5:], "train_steps=2"), 2, "suite train: root='{file}/r': {file} is a file, not a directory; give a folder"),
    Case("store-in-file", ("plan", "publish.store=local:{file}/store"), 2, "publish.store='local:{file}/store': {file} is a file, not a directory; give a folder"),
    Case("pull-negative-step", ("pull", "org/x", "--step", "-1"), 2, "'-1': steps start at 0", one_line=False),
    Case("pull-infinite-tokens", ("pull", "org/x", "--tokens", "inf"), 2, "'inf': use a whole, non-negative number of tokens", one_line=False),
    Case("pull-unknown-step", ("pull", "org/x", "--step", "3", "--store", "local:{store}"), 1, "org/x (local:{store}) has no step3; nearest published: step0, step4"),
    Case("pull-store-env", ("pull", "org/x", "--step", "1"), 2, "SUITE_STORE='bogus:x': use local:/path", env={"SUITE_STORE": "bogus:x"}),
    Case("verify-not-a-run", ("verify", "{root}/run"), 2, "not a run directory (no publish/target.json) nor a repo"),
    Case("verify-bad-store", ("verify", "org/x", "--store", "bogus"), 2, "store='bogus'"),
    Case("status-file", ("status", "{file}"), 2, "no runs in {file}"),
    Case("report-file", ("report", "{file}"), 2, "sweep_dir='{file}': a file, not a sweep directory"),
    Case("report-damaged", ("report", "{damaged}"), 2, "run.json: not valid JSON"),
    Case("report-out-in-file", ("report", "{trained}/mini", "--out", "{file}/report"), 1, "suite report: {file}/report: Not a directory [ENOTDIR]"),
    # `suite seen` / `suite batch` layout and query flags (refused before the provenance index).
    Case("seen-text-not-utf8", ("seen", "--text", "\udcff\udcfeab", "--data", "{data}"), 2, "--text='\\\\xff\\\\xfeab': is not valid UTF-8; give the passage as UTF-8 text"),
    Case("seen-doc-not-utf8", ("seen", "\udcff.py", "--data", "{data}"), 2, "document='\\\\xff.py': is not valid UTF-8; give the document id"),
    Case("seen-checkpoint-every", ("seen", "x", "--data", "{data}", "--train-steps", "1", "--checkpoint-every", "0"), 2, "suite seen: --checkpoint-every=0: use a positive interval"),
    Case("seen-log-until", ("seen", "x", "--data", "{data}", "--log-until", "-1"), 2, "suite seen: --log-until=-1: use 0"),
    Case("seen-dp-size", ("seen", "x", "--data", "{data}", "--dp-size", "0"), 2, "suite seen: --dp-size=0: use a positive count"),
    Case("seen-global-batch-huge", ("seen", "x", "--data", "{data}", "--global-batch", "100000000"), 2, "--global-batch=100000000: more than the"),
    Case("seen-run-json", ("seen", "x", "--data", "{data}", "--run", "{trained}/mini/runs/mini-160k/run.json", "--train-steps", "99"), 2, "--train-steps=99: run {trained}/mini/runs/mini-160k/run.json used 4"),
    Case("seen-epochs-and-steps", ("seen", "x", "--data", "{data}", "--epochs", "2", "--train-steps", "3"), 2, "suite seen: --epochs=2: the run's train steps (--train-steps or --run) already bound the search"),
    Case("batch-grad-accum", ("batch", "0", "--data", "{data}", "--grad-accum", "0"), 2, "suite batch: --grad-accum=0: use a positive count"),
    Case("batch-empty-data", ("batch", "0", "--data", ""), 2, "suite batch: --data='': give a dataset folder"),
    # `suite memorization` / `suite cards`.
    Case("memorization-size-out-of-scope", ("memorization", "--dry-run", "root={root}", "sizes=[160k]", "size=250k"), 2, "size='250k': not among the runs in scope (160k)"),
    Case("cards-no-sweep", ("cards", "root={root}"), 2, "suite cards: no sweep at {root}/mini"),
    Case("cards-bad-override", ("cards", "publish.card.overview=maybe"), 2, "is not a valid bool"),
    Case("cards-other-train-steps", ("cards", "datasets.stdlib.path={data}", "root={trained}", "sizes=[160k]", "~datasets.stdlib-deduped", "train_steps=5"), 2, "train_steps=5: mini-160k was trained with train_steps=4"),
    Case("wandb-project-long", ("plan", "logging.wandb.project=" + "a" * 129), 2, "use a printable W&B name of at most 128 characters"),
    # `suite prepare` SLURM and dedup-engine flags.
    Case("prepare-slurm-flag-alone", ("prepare", "--input", "{file}", "--out", "{root}/out", "--slurm-cpus", "4"), 2, "--slurm-cpus=4: a SLURM setting, used only with --launcher slurm"),
    Case("prepare-slurm-time", ("prepare", "--input", "{file}", "--out", "{root}/out", "--launcher", "slurm", "--slurm-time", "abc"), 2, "--slurm-time='abc': use sbatch's --time format"),
    Case("prepare-slurm-partition", ("prepare", "--input", "{file}", "--out", "{root}/out", "--launcher", "slurm", "--slurm-partition", ""), 2, "--slurm-partition='': give a partition name"),
    Case("prepare-dedup-engine", ("prepare", "--input", "{file}", "--out", "{root}/out", "--dedup-engine", "datatrove"), 2, "--dedup-engine=datatrove: runs --dedup minhash only"),
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    """The root of a finished 4-update run (read-only: rows only read it)."""
    root = tmp_path_factory.mktemp("trained")
    argv = [a.format(data=tiny_data, trained=root) for a in TRAINED[1:]]
    result = run_train([*argv, "train_steps=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A root with `SMALL_STDLIB` prepared (read-only: rows only read it)."""
    root = tmp_path_factory.mktemp("prepared")
    argv = [a.format() for a in SMALL_STDLIB]
    result = _suite(["prepare", f"root={root}", *argv], {}, root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """What rows point at without owning it (read-only: rows only read it): a text file, a
    local store holding org/x at step0 and step4, a sweep dir whose run.json is cut short."""
    root = tmp_path_factory.mktemp("scratch")
    (root / "file").write_text("not a dataset, a folder or a tokenizer\n")
    repo = root / "store" / "org" / "x"
    (repo / ".versions" / "v1").mkdir(parents=True)
    (repo / ".versions" / "v1" / "config.json").write_text("{}")
    for revision in ("step0", "step4"):
        (repo / revision).symlink_to(Path(".versions") / "v1", target_is_directory=True)
    run = root / "damaged" / "runs" / "mini-160k"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"status": "compl')
    return root


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and mtime (what 'nothing changed' compares)."""
    if not path.exists():
        return {}
    return {
        p.relative_to(path).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _suite(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *argv],
        env=train_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tiny_data, trained, prepared, scratch, tmp_path):
    root, port = tmp_path / "root", free_port()  # nothing listens on a port just freed
    values = {
        "data": tiny_data, "root": root, "trained": trained, "prepared": prepared, "port": port,
        "file": scratch / "file", "store": scratch / "store", "damaged": scratch / "damaged",
    }  # fmt: skip
    argv = [a.format(**values) for a in case.argv]
    env = {"HF_HUB_OFFLINE": "0"} | case.env
    before = _tree(trained), _tree(prepared), _tree(scratch)
    result = _suite(argv, env, tmp_path)
    stderr = result.stderr
    assert result.returncode == case.code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines, "no message"
    if case.one_line:
        assert len(lines) == 1, stderr
    assert case.expect.format(**values) in (lines[0] if case.one_line else stderr), stderr
    # Nothing left behind: the scratch root was never created, the finished run unchanged.
    assert _tree(root) == {}, _tree(root)
    assert (_tree(trained), _tree(prepared), _tree(scratch)) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "root"], list(tmp_path.iterdir())


def test_debug_flag_and_env_show_the_traceback(tmp_path):
    for argv, env in (
        (["--debug", "plan", "train_stpes=5"], {}),
        (["plan", "train_stpes=5", "--debug"], {}),
        (["plan", "train_stpes=5"], {"SUITE_DEBUG": "1"}),
    ):
        result = _suite(argv, env, tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("suite plan: train_stpes=5:")
    quiet = _suite(["plan", "train_stpes=5"], {"SUITE_DEBUG": "0"}, tmp_path)
    assert len(quiet.stderr.strip().splitlines()) == 1 and "Traceback" not in quiet.stderr


def test_usage_mentions_debug():
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli"], env=train_env(), capture_output=True, text=True
    )
    assert "--debug" in result.stdout and "SUITE_DEBUG=1" in result.stdout
    assert os.environ.get("SUITE_DEBUG") is None  # the flag is the child's, not ours


@pytest.mark.parametrize(
    ("error", "expect"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/r/x"), "/r/x: No space left on device [ENOSPC]; free some space"),
        (PermissionError(errno.EACCES, "Permission denied", "/r"), "/r: Permission denied [EACCES]; make the folder writable"),
        (OSError(errno.EROFS, "Read-only file system", "/r", None, "/s"), "/r -> /s: Read-only file system [EROFS]"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/r"), "check that the path exists"),
        (ConnectionError("Connection refused\nby peer"), "Connection refused\\nby peer; a connection failed; check the network"),
        (TimeoutError(), "suite status: TimeoutError; a connection failed"),
    ],
)  # fmt: skip
def test_a_filesystem_or_network_fault_reads_as_one_line(error, expect, capsys, monkeypatch):
    """What `suite` prints for an OSError no command caught (exit 1: not the user's input)."""
    from suite import cli

    class Failing:
        @staticmethod
        def main(argv):
            raise error

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Failing)
    assert cli.main(["status", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("suite status: ") and expect in err and err.count("\n") == 1, err
    assert err.rstrip().endswith("(--debug shows the traceback)"), err


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--seed", "-1"], "--seed=-1: use an integer in [0, 2**63 - 1]"),
        (["--seed", str(2**63)], f"--seed={2**63}: use an integer in [0, 2**63 - 1]"),
    ],
    ids=["order-cli-negative-seed", "order-cli-huge-seed"],
)
def test_order_cli_bad_seed(argv, expect, tiny_data):
    """`python -m data_order.order_cli`: a bad seed is one line, and no order folder is made."""
    before = _tree(tiny_data)
    result = subprocess.run(
        [sys.executable, "-m", "data_order.order_cli", str(tiny_data), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip() == f"order_cli: {expect}", result.stderr
    assert _tree(tiny_data) == before
