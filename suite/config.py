"""The typed suite configuration (the schema behind `sweeps/conf`) and one run's resolution.

A *suite* is a ladder of sizes × a few datasets. Its YAML (in `sweeps/conf/suite/`) is
validated against `SuiteConfig` by Hydra/OmegaConf; `resolve_run` then derives everything a
single run needs (shape, parallel layout, batch, tokens) in one place and checks every
constraint, so a bad combination fails before anything runs or is submitted.
"""

from __future__ import annotations

import re
from dataclasses import InitVar, dataclass, field
from typing import NamedTuple, get_args

from model_zoo import FAMILY_NAMES, Family, Precision, SizeSpec, get_family, get_size, pad_vocab
from model_zoo.ladder import LADDERS
from suite.errors import ConfigError
from suite.parallel import ParallelLayout, rekeyed
from suite.publish.retry import RetryPolicy
from suite.publish.spec import DEFAULT_STORE, check_directory_path, check_name, parse_store_spec

PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: Values of `SuiteConfig.attention` (transformers' `attn_implementation` names).
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")
# Choice fields (`family`, `precision`) stay typed `str`: OmegaConf 2.3 rejects `Literal` in
# structured configs, and an Enum would be rejected by OmegaConf before `ConfigError` could
# name the fix. Their values are defined once, as `Literal` aliases (`model_zoo.FamilyName`,
# `model_zoo.Precision`), and checked against `get_args` of them in `__post_init__`.


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, value, f"use one of: {', '.join(choices)}")


def check_attention_precision(attention: str, precision: str) -> None:
    """flash-attn 2 has no fp32 kernels: an fp32 model would crash at its first forward."""
    if attention == "flash_attention_2" and precision not in ("fp16", "bf16"):
        raise ConfigError(
            "attention",
            attention,
            f"flash-attn 2 has no fp32 kernels (precision={precision!r}); use precision=bf16 "
            "or precision=fp16, or attention=sdpa",
        )


#: numpy's SeedSequence takes any non-negative integer; the bound keeps seeds in 63 bits
#: (JSON, torch generators) — the range every seed field of the suite accepts.
SEED_RANGE = (0, 2**63 - 1)


def check_seed(name: str, value: object) -> None:
    low, high = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            name, value, f"use an integer in [{low}, 2**63 - 1] (numpy's SeedSequence needs >= 0)"
        )


#: More checkpoints than any real schedule publishes (Pythia: 154); the bound keeps a typo such
#: as train_steps=99999999999999 from enumerating a schedule that does not fit in memory.
MAX_CHECKPOINTS = 1_000_000

DEDUPED_SUFFIX = "-deduped"


def check_dataset_pairs(datasets: dict[str, DatasetConfig]) -> None:
    """The standard/deduplicated pair: `X-deduped` (deduplicate: true) is X minus its near
    duplicates, so the report compares one corpus with and without them. The pair is defined
    by name (Pythia's `pile` / `pile-deduped`); both must be built from the same inputs (the
    tokenizer is `data.tokenizer`, shared by construction). A side given by `path` is an
    already built dataset whose inputs the config does not know: not compared here."""
    for name, ds in datasets.items():
        if not isinstance(ds, DatasetConfig):  # `~datasets +datasets={…}` drops the schema
            raise ConfigError(
                f"datasets.{name}", ds, "not checked against the schema; set datasets.NAME.FIELD=…"
            )
    for name, ds in datasets.items():
        if not ds.deduplicate:
            continue
        if not name.endswith(DEDUPED_SUFFIX):
            raise ConfigError(
                f"datasets.{name}.deduplicate",
                True,
                f"a deduplicated dataset is named '<standard name>{DEDUPED_SUFFIX}' "
                f"(e.g. '{name}{DEDUPED_SUFFIX}'); rename it",
            )
        base = name.removesuffix(DEDUPED_SUFFIX)
        partner = datasets.get(base)
        if partner is None or ds.path or partner.path:
            continue
        if list(ds.inputs) != list(partner.inputs):
            raise ConfigError(
                f"datasets.{name}.inputs",
                list(ds.inputs),
                f"differs from datasets.{base}.inputs={list(partner.inputs)}; the pair must be "
                f"one corpus with and without duplicates — give both the same inputs",
            )


@dataclass
class OptimConfig:
    """AdamW with decoupled weight decay and a warmup + cosine schedule (Pythia's)."""

    lr: float | None = None
    """Peak learning rate; None takes the size's row in the ladder."""
    min_lr_ratio: float = 0.1
    """Final LR as a fraction of the peak (cosine decays to it at the last update)."""
    warmup_fraction: float = 0.01
    """Fraction of the updates spent in linear warmup (Pythia: 1% = 1430 of 143,000)."""
    beta1: float = 0.9
    """Adam β1."""
    beta2: float = 0.95
    """Adam β2."""
    eps: float = 1.0e-8
    """Adam ε."""
    weight_decay: float = 0.1
    """Decoupled weight decay; never applied to biases and norm weights."""
    grad_clip: float = 1.0
    """Global gradient-norm clipping threshold (0 disables)."""

    def __post_init__(self) -> None:
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(
                "optim.lr", self.lr, "use a positive learning rate or null for the ladder's"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("optim.min_lr_ratio", self.min_lr_ratio, "use a value in [0, 1]")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(
                "optim.warmup_fraction", self.warmup_fraction, "use a value in [0, 1)"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}", getattr(self, name), "use a value in [0, 1)")
        if self.grad_clip < 0:
            raise ConfigError("optim.grad_clip", self.grad_clip, "use 0 (off) or a positive norm")


@dataclass
class CheckpointConfig:
    """When to save published checkpoints (`step{N}`) and private resume checkpoints."""

    log_until: int = 512
    """Log-spaced checkpoints 1, 2, 4, … up to this step (0 disables)."""
    every: int = 1000
    """Then one checkpoint every this many updates; the final step is always saved."""
    extra: list[int] = field(default_factory=list)
    """Further steps to save."""
    resume_every: int = 500
    """Updates between resume checkpoints (model, optimizer, RNG, step) for crash/preemption."""
    keep_resume: int = 2
    """How many resume checkpoints to keep (older ones are deleted after a newer one is complete)."""

    def __post_init__(self) -> None:
        for name in ("log_until", "every", "resume_every", "keep_resume"):
            value = getattr(self, name)
            if value < (0 if name == "log_until" else 1):
                raise ConfigError(f"checkpoints.{name}", value, "use a positive number of updates")


#: Values of `EvalConfig.dtype`: the precision checkpoints are evaluated in.
EVAL_DTYPES = ("fp32", "bf16", "fp16")


@dataclass
class EvalConfig:
    """Evaluation: in the training loop (`every`, `samples`) and after it, over every
    published checkpoint (`suite eval`, writing the ledger; the other fields)."""

    every: int = 1000
    """In-loop: evaluate every this many updates (and after the last one); 0 disables."""
    samples: int = 256
    """Held-out samples per evaluation (a fixed set, so evaluations are comparable); `suite
    eval`'s `ppl/heldout` uses the same samples, so it matches the in-loop eval loss."""
    steps: list[int] = field(default_factory=list)
    """`suite eval`: published steps to evaluate; empty: every published `step{N}`."""
    tasks: list[str] = field(default_factory=list)
    """`suite eval`: lm-evaluation-harness task names (or names of task YAMLs under
    `include_path`), run zero-shot on every checkpoint besides the built-in task."""
    include_path: str | None = None
    """`suite eval`: a folder of user task YAMLs for lm-eval (`--include_path`)."""
    builtin_examples: int = 64
    """`suite eval`: examples of the built-in `heldout_continuation` task (pick a held-out
    passage's true next line among lines of other held-out documents); 0 disables it."""
    perplexity_sets: dict[str, list[str]] = field(default_factory=dict)
    """`suite eval`: extra perplexity sets, name → inputs (text/JSONL/Parquet files, folders
    or globs, read like `datasets.*.inputs`), reported as `ppl/<name>`."""
    perplexity_set_tokens: int = 32768
    """`suite eval`: tokens evaluated per extra perplexity set (the first ones, in input
    order), so a large set costs a fixed time per checkpoint."""
    dtype: str = "fp32"
    """`suite eval`: precision checkpoints are evaluated in, one of `EVAL_DTYPES`; fp32 by
    default (fp16 gives NaNs on some Pythia checkpoints, pythia#118)."""
    batch_size: int = 32
    """`suite eval`: sequences per forward pass (perplexity and harness requests)."""
    num_fewshot: int = 0
    """`suite eval`: few-shot examples of harness tasks (0: zero-shot)."""
    seed: int = 1234
    """`suite eval`: seed of the built-in task's examples and of lm-eval's samplers."""
    device: str | None = None
    """`suite eval`: torch device (`cpu`, `cuda`, `cuda:1`); None: cuda when available."""
    workers: int | None = None
    """`suite eval`: processes evaluating checkpoints side by side (one thread each); None:
    one per usable CPU core (at most 8) on CPU — tiny models use cores better so — 1 on a GPU."""
    in_loop_tasks: list[str] = field(default_factory=list)
    """In-loop: harness tasks (`heldout_continuation`, lm-eval task names, YAMLs under
    `include_path`) run by rank 0 on the current weights every `every` updates and after the
    last one, as `suite eval` runs them (same code, dtype, batch size, seed), logged to
    metrics.jsonl as `eval/<task>/<metric>`; empty (the default): none."""

    def __post_init__(self) -> None:
        _check_choice("eval.dtype", self.dtype, EVAL_DTYPES)
        if self.in_loop_tasks and not self.every:
            raise ConfigError(
                "eval.in_loop_tasks",
                list(self.in_loop_tasks),
                "set eval.every > 0 (the in-loop schedule) or leave eval.in_loop_tasks empty",
            )
        if "heldout_continuation" in self.in_loop_tasks and not self.builtin_examples:
            raise ConfigError(
                "eval.builtin_examples", 0, "use > 0 to run heldout_continuation in the loop"
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError("eval.workers", self.workers, "use 1 or more, or null for auto")
        for name in ("batch_size", "perplexity_set_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name}", getattr(self, name), "use a positive number")
        for name in ("builtin_examples", "num_fewshot", "samples", "every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"eval.{name}", getattr(self, name), "use 0 or more")
        if any(step < 0 for step in self.steps):
            raise ConfigError("eval.steps", list(self.steps), "use published step numbers (>= 0)")
        for name, inputs in self.perplexity_sets.items():
            if not inputs or "/" in name:
                raise ConfigError(
                    f"eval.perplexity_sets.{name}",
                    list(inputs),
                    "name a set without '/' and give it input files, folders or globs",
                )


@dataclass
class MemorizationConfig:
    """`suite memorization`: Pythia's extractable memorization (Biderman et al. 2023) of a
    seeded sample of training sequences at every chosen checkpoint, into the eval ledger."""

    batches: list[int] = field(default_factory=list)
    """[FIRST, LAST]: the batch indices (0-based, LAST inclusive, as `suite batch INDEX --to
    LAST`) the sequences are drawn from; empty: every batch the run trains on. Batches past
    the run's train_steps are never seen: a control."""
    samples: int = 1024
    """Sequences (rows of those batches) drawn uniformly without replacement; all rows when
    the range holds fewer."""
    seed: int = 1234
    """Seed of the draw: the same rows for every run of the suite, so sizes compare on the
    same positions of the order."""
    prompt_tokens: int = 32
    """The prompt: the first k tokens of the sequence (Pythia: 32)."""
    continuation_tokens: int = 32
    """Tokens generated greedily and compared with the sequence's next ones (Pythia: 32)."""
    steps: list[int] = field(default_factory=list)
    """Published steps to evaluate; empty: every published `step{N}`."""
    batch_size: int = 128
    """Sequences generated side by side (precision and device: `eval.dtype`, `eval.device`)."""
    name: str = ""
    """Names the sample: its results are the ledger's task `memorization/<name>` (empty:
    `memorization`), so several samples (e.g. a never-seen control) stand side by side."""

    def __post_init__(self) -> None:
        batches = list(self.batches)
        if batches and (len(batches) != 2 or not 0 <= batches[0] <= batches[1]):
            raise ConfigError(
                "memorization.batches",
                batches,
                "give [FIRST, LAST] batch indices with 0 <= FIRST <= LAST (LAST inclusive), "
                "or [] for every batch the run trains on",
            )
        for name in ("samples", "prompt_tokens", "continuation_tokens", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or value < 1:
                raise ConfigError(f"memorization.{name}", value, "use a positive number")
        check_seed("memorization.seed", self.seed)
        if not re.fullmatch(r"[A-Za-z0-9_.-]*", self.name):
            raise ConfigError(
                "memorization.name", self.name, "use letters, digits, '.', '_' or '-' (or '')"
            )
        if any(step < 0 for step in self.steps):
            raise ConfigError(
                "memorization.steps", list(self.steps), "use published step numbers (>= 0)"
            )


@dataclass
class DatasetConfig:
    """One dataset of the suite (Pythia: the Pile and the deduplicated Pile)."""

    inputs: list[str] = field(default_factory=lambda: ["stdlib"])
    """Corpus files, folders or globs (text, JSONL(.gz/.zst), Parquet); `stdlib` = the running
    Python's standard library, the embedded default corpus."""
    deduplicate: bool = False
    """Build this dataset as the near-deduplicated version of `inputs` (MinHash LSH). Named
    `<standard>-deduped`; with its standard partner in the suite, both have the same inputs
    (checked: `check_dataset_pairs`)."""
    path: str | None = None
    """An already built dataset: a `suite prepare` directory or a Megatron `.bin/.idx` prefix of
    pre-shuffled samples (e.g. Pythia's released data). None: built by `suite prepare`."""
    run_suffix: str = ""
    """Appended to the run name and Hub repo (Pythia: `-deduped`)."""


@dataclass
class DataConfig:
    """How the suite's datasets are built: shared by every dataset so that all share a tokenizer."""

    tokenizer: str | None = None
    """A `tokenizer.json`; None trains a byte-level BPE of `vocab_size` on the corpus (offline)."""
    vocab_size: int = 50277
    """Tokenizer vocabulary (before padding); Pythia's GPT-NeoX-20B BPE has 50,277 tokens."""
    pad_vocab_multiple: int = 128
    """Embedding rows are padded to a multiple of this × TP (GPT-NeoX's rule)."""
    minhash_threshold: float = 0.87
    """Jaccard similarity above which documents count as near-duplicates (Pythia's dedup: 0.87)."""
    eval_fraction: float = 0.01
    """Fraction of documents held out for evaluation (never in the training order)."""
    text_field: str = "text"
    """Field holding the text in JSONL/Parquet inputs."""
    id_field: str | None = None
    """Field holding each document's corpus id in JSONL/Parquet inputs (what `suite batch
    --docs` reports and `suite seen` looks up); None: `FILE:LINE` / `FILE:ROW`."""
    workers: int = 1
    """Tokenizing processes; 1 tokenizes in this process, where the tokenizer's own threads
    already use every core (the fastest choice on small machines)."""
    dedup_engine: str = "single"
    """Near-dedup engine of the deduplicated datasets, one of `data_order.DEDUP_ENGINES`:
    `single` (one process, datasketch; fastest on small corpora) or `datatrove` (datatrove's
    MinHash stages, for corpora that do not fit one process). Same removed documents either
    way, so it is not part of the dataset fingerprint."""

    def __post_init__(self) -> None:
        from data_order.config import DEDUP_ENGINES

        _check_choice("data.dedup_engine", self.dedup_engine, DEDUP_ENGINES)
        if self.vocab_size <= 0:
            raise ConfigError("data.vocab_size", self.vocab_size, "use a positive vocabulary size")
        if self.pad_vocab_multiple <= 0:
            raise ConfigError(
                "data.pad_vocab_multiple",
                self.pad_vocab_multiple,
                "use a positive multiple, e.g. 128",
            )
        if not 0 < self.minhash_threshold <= 1:
            raise ConfigError(
                "data.minhash_threshold", self.minhash_threshold, "use a value in (0, 1]"
            )


@dataclass
class SizeResources:
    """Resources and per-rank batch of one size (Pythia: from the published GPT-NeoX configs)."""

    gpus: int = 1
    """Ranks of the run (GPUs; on CPU, processes). world = dp × tp."""
    tp: int = 1
    """Tensor-parallel degree (DeepSpeed AutoTP)."""
    micro_batch: int = 1
    """Samples per rank per micro step."""
    grad_accum: int = 1
    """Micro steps per update; global batch = micro_batch × dp × grad_accum."""
    time_minutes: int = 60
    """Time limit of one job (the run requeues and resumes when it is reached)."""


@dataclass
class ParallelOverride:
    """Overrides applied to every size (e.g. `parallel.gpus=2` for a 2-process test sweep)."""

    gpus: int | None = None
    """Replace every size's `gpus`."""
    tp: int | None = None
    """Replace every size's `tp`."""
    micro_batch: int | None = None
    """Replace every size's `micro_batch`."""
    grad_accum: int | None = None
    """Replace every size's `grad_accum`."""


@dataclass
class ClusterConfig:
    """The cluster the suite runs on: used for planning and for SLURM resources."""

    gpus_per_node: int = 8
    """Accelerators (or ranks) per node; a TP group must fit in one node."""
    peak_flops_per_gpu: float = 312e12
    """Peak dense 16-bit FLOP/s of one accelerator (A100: 312 TFLOP/s), for GPU-hour estimates."""
    mfu: float = 0.4
    """Model-FLOPs utilisation assumed for GPU-hour estimates."""
    gpu_memory_gb: float = 80.0
    """Memory of one accelerator, to flag runs whose estimate does not fit."""
    collective_timeout_minutes: float = 60.0
    """How long a collective (all-reduce, barrier) waits for the slowest rank before the job
    fails. torch's NCCL default is 10 minutes; rank 0 alone gathering and exporting a large
    checkpoint, or a slow shared filesystem during a resume save, can take longer."""
    checkpoint_write_gb_per_s: float = 2.0
    """Write bandwidth of the filesystem holding the run directories, all ranks together
    (GB/s). Sizes a resume save in `suite plan` and the warning a SLURM job gets before its
    time limit (`slurm.signal_delay_s` is raised per run when the save needs longer)."""

    def __post_init__(self) -> None:
        if not 0 < self.mfu <= 1:
            raise ConfigError("cluster.mfu", self.mfu, "use a fraction in (0, 1], e.g. 0.4")
        if self.gpu_memory_gb <= 0:  # gpus_per_node: checked with the layout it constrains
            raise ConfigError("cluster.gpu_memory_gb", self.gpu_memory_gb, "use a positive number")
        if not self.peak_flops_per_gpu >= 1e6:  # below that, GPU-hours overflow the plan
            raise ConfigError(
                "cluster.peak_flops_per_gpu",
                self.peak_flops_per_gpu,
                "use the accelerator's peak FLOP/s, e.g. 312e12 (A100); at least 1e6",
            )
        if self.collective_timeout_minutes <= 0:
            raise ConfigError(
                "cluster.collective_timeout_minutes",
                self.collective_timeout_minutes,
                "use a positive number of minutes (e.g. 60)",
            )
        if self.checkpoint_write_gb_per_s <= 0:
            raise ConfigError(
                "cluster.checkpoint_write_gb_per_s",
                self.checkpoint_write_gb_per_s,
                "use the filesystem's aggregate write bandwidth in GB/s (e.g. 2)",
            )


@dataclass
class SlurmConfig:
    """How jobs are submitted on a SLURM site (`hydra/launcher=slurm`); no code edits per site."""

    partition: str | None = None
    """Partition (queue); None: the cluster's default."""
    account: str | None = None
    """Account charged (sbatch --account); None: the user's default."""
    qos: str | None = None
    """Quality of service (sbatch --qos)."""
    constraint: str | None = None
    """Node feature constraint, e.g. `a100&ib`."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the ranks start (module load, container or venv activation…)."""
    extra_sbatch: dict[str, str] = field(default_factory=dict)
    """Further sbatch flags, name without dashes → value, e.g. {exclusive: ''}."""
    cpus_per_task: int = 1
    """CPU cores per rank (used where `cpus_per_node` is not set)."""
    cpus_per_node: int | None = None
    """CPU cores of a node: when set, each rank gets `cpus_per_node // ranks per node` cores
    (and `OMP_NUM_THREADS` as many threads), so a node's cores are shared out, not idle."""
    mem_per_gpu_gb: int | None = None
    """Host memory per rank in GB, set by hand (the job asks for this × tasks per node);
    None: derived from the run's model (`suite.launch.suite_resources.host_memory`)."""
    mem_per_node_gb: int | None = None
    """Host memory of a node in GB: a run whose derived `--mem` exceeds it is refused before
    submission. None: not checked."""
    host_overhead_gb: float | None = None
    """Host memory per rank besides model tensors, in GB (CUDA context, libraries, NCCL and
    DeepSpeed buffers, data reader), added to the derived `--mem`. None: 8 on GPU nodes, 1 on
    CPU-only sites."""
    cpu_only: bool = False
    """A cluster without GPUs: ranks are CPU tasks (gloo), no GPUs requested."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which the job is warned, saves and requeues itself."""
    max_requeues: int = 10
    """Time-limit requeues allowed per run (preemptions do not count)."""


#: A Hub license id (`apache-2.0`, `mit`, `cc-by-4.0`, `other`…): lowercase, digits, '.', '-'.
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
#: A Hub language code: ISO 639-1/639-3 (`en`, `deu`), optionally with a region (`pt-br`), or `code`.
_LANGUAGE = re.compile(r"^(?:[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*|code)$")
#: A Hub repo id (`org/name` or `name`), as `publish.card.hub_datasets` names datasets.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class CardConfig:
    """What every published revision's model card (`README.md`) declares to the Hub
    (`suite.publish.model_card`): license, languages, training datasets, extra tags."""

    license: str = "apache-2.0"
    """Hub license id of the weights (Pythia's: apache-2.0; `other` for a custom license)."""
    language: list[str] = field(default_factory=lambda: ["en"])
    """Languages of the training text (Hub codes: ISO 639, or `code`)."""
    hub_datasets: dict[str, list[str]] = field(default_factory=dict)
    """Suite dataset name → the Hub datasets it was built from, the cards' `datasets`
    (Pythia: `pile: [EleutherAI/pile]`); a dataset not listed is described in the card body
    only (the mini suite's Python standard library is on no Hub)."""
    tags: list[str] = field(default_factory=list)
    """Tags beyond the automatic ones (`scaling-suite`, the family, the suite name)."""
    overview: bool = True
    """`suite cards` (and `suite eval`) also write the suite's overview: a `README.md` on
    `main` of the repo `{org}/{repo_prefix or name}`, listing every run and its revisions."""

    def __post_init__(self) -> None:
        if not isinstance(self.license, str) or not _LICENSE.match(self.license):
            raise ConfigError(
                "publish.card.license",
                self.license,
                "use a Hub license id such as apache-2.0, mit, cc-by-4.0 or other",
            )
        if not self.language:
            raise ConfigError("publish.card.language", [], "list at least one language, e.g. [en]")
        for code in self.language:
            if not isinstance(code, str) or not _LANGUAGE.match(code):
                raise ConfigError(
                    "publish.card.language", code, "use ISO 639 codes (en, de, zh) or code"
                )
        for name, ids in self.hub_datasets.items():
            for hub_id in ids if isinstance(ids, list) else [ids]:
                if not isinstance(hub_id, str) or not _HUB_ID.match(hub_id):
                    raise ConfigError(
                        f"publish.card.hub_datasets.{name}",
                        hub_id,
                        "use Hub dataset ids such as EleutherAI/pile",
                    )
        for tag in self.tags:
            if not isinstance(tag, str) or not tag.strip() or "\n" in tag:
                raise ConfigError("publish.card.tags", tag, "use non-empty one-line tags")


@dataclass
class PublishConfig:
    """Where and how every run publishes its checkpoints (the `publish` group).

    The trainer builds its publisher with
    `suite.publish.publisher.Publisher.for_run(cfg.publish, run_dir, repo_id)`.
    """

    store: str = DEFAULT_STORE
    """`local:/path` (directory store; a relative path is taken from the working directory),
    `hub` / `hub:https://endpoint` (Hugging Face Hub), or `none` (export checkpoints into the
    run directory, publish nothing). The default is `suite.publish.spec.DEFAULT_STORE`, the
    store `suite pull/verify/publish` also use by default."""
    org: str = "local"
    """Hub organisation or user owning the run repos."""
    repo_prefix: str | None = None
    """Repo names are `{repo_prefix}-{size}{run_suffix}` (then `-seed{N}` for a replicate:
    `SuiteConfig.seed_suffix`); None uses the suite name."""
    save_dtype: str | None = None
    """dtype of published weights; None keeps the training precision (never silently changed)."""
    keep_exports: bool = True
    """Keep each run-local export folder after it is published and verified; false deletes it
    then (the store holds the same bytes), which halves the disk a sweep needs."""
    initial_backoff_s: float = RetryPolicy.initial_backoff_s
    """Wait after a checkpoint's first failed attempt; doubles after each further failure. A
    checkpoint the store refuses for now (Hub down, rate limits, 5xx) stays pending and is
    retried while later checkpoints go through; only errors no retry can fix fail it."""
    max_backoff_s: float = RetryPolicy.max_backoff_s
    """Upper bound of one backoff wait between attempts of a pending checkpoint."""
    max_retry_after_s: float = RetryPolicy.max_retry_after_s
    """Upper bound on a Hub's `Retry-After` (HTTP 429/503), which is otherwise honoured."""
    drain_timeout_s: float = RetryPolicy.drain_timeout_s
    """How long the end of a run keeps retrying pending checkpoints; then the run completes
    (exports are on disk), records them in run.json and names `suite publish RUN_DIR`."""

    training_state: list[int] = field(default_factory=list)
    """Steps whose full training state (DeepSpeed model + optimizer shards, loss scaler, every
    rank's RNG, data position, layout; `suite.publish.training_state`) is published beside
    the weights, to `{repo}-training-state` branch `step{N}`, verified like the weights, so
    `suite train init_from=ORG/NAME@stepN` continues it. Off by default: with Adam in 16-bit
    training a state is about 3x the weights (fp32 master weights and two moments)."""
    training_state_every: int = 0
    """Also publish the training state every this many updates (0: only `training_state`)."""
    card: CardConfig = field(default_factory=CardConfig)
    """The model card of every revision and the suite's overview (`suite cards`)."""

    def training_state_at(self, step: int) -> bool:
        """Whether the training state of `step` is published."""
        every = self.training_state_every
        return step in self.training_state or bool(every and step % every == 0)

    def __post_init__(self) -> None:
        parse_store_spec(self.store, field="publish.store")
        for step in self.training_state:
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise ConfigError(
                    "publish.training_state", list(self.training_state), "list steps >= 1"
                )
        if self.training_state_every < 0:
            raise ConfigError(
                "publish.training_state_every",
                self.training_state_every,
                "use a number of updates, or 0 for only the listed steps",
            )
        if (self.training_state or self.training_state_every) and self.store == "none":
            raise ConfigError(
                "publish.training_state",
                list(self.training_state) or f"every {self.training_state_every}",
                "training states are published to a store; set publish.store (local:/path or "
                "hub), or leave training_state empty",
            )
        check_name(self.org, "publish.org")
        if self.repo_prefix is not None:
            check_name(self.repo_prefix, "publish.repo_prefix")
        save_dtypes = (*PRECISIONS, "float32", "bfloat16", "float16")
        if self.save_dtype is not None and self.save_dtype not in save_dtypes:
            raise ConfigError(
                "publish.save_dtype",
                self.save_dtype,
                f"use one of {', '.join(PRECISIONS)} or null (the training precision)",
            )
        self.retry_policy()  # validates the retry fields, naming the bad one

    def retry_policy(self) -> RetryPolicy:
        """When the publisher retries, from the backoffs, the Retry-After cap and the drain."""
        try:
            return RetryPolicy(
                initial_backoff_s=self.initial_backoff_s,
                max_backoff_s=self.max_backoff_s,
                max_retry_after_s=self.max_retry_after_s,
                drain_timeout_s=self.drain_timeout_s,
            )
        except ConfigError as err:
            raise ConfigError(f"publish.{err.field}", err.value, err.fix) from None


#: Values of `WandbConfig.mode` (`wandb.init`'s own names).
WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class WandbConfig:
    """Weights & Biases: one W&B run per suite run, continued by its resumes and requeues
    (`suite.train.tracking.WandbHook`); files under `{run_dir}/wandb/`."""

    mode: str = "disabled"
    """`online` (streams to the W&B server; needs `wandb login` or WANDB_API_KEY), `offline`
    (writes the run under the run directory, no network; upload later with `wandb sync`) or
    `disabled` (the default: nothing is written)."""
    project: str | None = None
    """W&B project; None: the suite's name."""
    entity: str | None = None
    """W&B user or team owning the project; None: the logged-in user's default entity."""

    def __post_init__(self) -> None:
        _check_choice("logging.wandb.mode", self.mode, WANDB_MODES)
        for name in ("project", "entity"):
            value = getattr(self, name)
            # W&B refuses these characters in project and entity names (and the URLs use them).
            if value is not None and (not value.strip() or re.search(r"[/\\#?%:\s]", value)):
                raise ConfigError(
                    f"logging.wandb.{name}",
                    value,
                    "use a W&B name without spaces or / \\ # ? % : (e.g. pythia-suite), or null",
                )
            if value is not None and (len(value) > 128 or not value.isprintable()):
                raise ConfigError(
                    f"logging.wandb.{name}",
                    value,
                    "use a printable W&B name of at most 128 characters (W&B's limit), or null",
                )
        if self.mode != "disabled":
            _check_installed("wandb", f"logging.wandb.mode={self.mode}", "logging.wandb.mode")


@dataclass
class LoggingConfig:
    """Experiment tracking of every run (the `logging` group): the metrics of each update
    (loss, lr, grad norm, tokens/s, MFU on GPU) and of each evaluation, as in
    `metrics.jsonl`, plus the run's resolved config and data fingerprint, written by rank 0
    through trainer hooks (`suite.train.tracking`). Nothing secret is logged."""

    tensorboard: bool = False
    """Write TensorBoard event files to `{run_dir}/tensorboard/` (`tensorboard --logdir
    {root}/{suite}/runs` shows every run of the sweep)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases (off by default)."""

    def __post_init__(self) -> None:
        if self.tensorboard:
            _check_installed("tensorboard", "logging.tensorboard=true", "logging.tensorboard")


def _check_installed(package: str, setting: str, name: str) -> None:
    """Fail at config time, not after a job's start-up, when a tracking package is missing
    (`find_spec` locates the package without importing it)."""
    from importlib.util import find_spec

    if find_spec(package) is None:
        raise ConfigError(
            name,
            setting.partition("=")[2],
            f"{setting} needs the {package} package: pip install 'scaling-suite[tracking]'",
        )


@dataclass
class SuiteConfig:
    """A whole suite: ladder × datasets, shared training settings, per-size resources."""

    name: str = "mini"
    """Suite name (run names and Hub repos start with it)."""
    family: str = "pythia"
    """Architecture family, one of `model_zoo.FamilyName`: pythia (GPT-NeoX), olmo or llama."""
    ladder: str = "mini"
    """Size table in `model_zoo` the sizes come from."""
    sizes: list[str] = field(default_factory=list)
    """Sizes of the sweep (one axis)."""
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    """Datasets of the sweep (the other axis), by name."""
    size: str | None = None
    """The size of one run (set per job by the sweep)."""
    dataset: str | None = None
    """The dataset of one run (set per job by the sweep)."""
    seq_len: int = 2048
    """Tokens per sample predicted by the model; samples hold seq_len + 1 tokens."""
    global_batch: int = 1024
    """Samples per update (Pythia: 1024 × 2049 tokens)."""
    train_steps: int = 143_000
    """Optimizer updates (Pythia: 143,000 ≈ 300B tokens)."""
    seed: int = 1234
    """Seed of one run: its data order and its initialisation, unless `data_seed` or
    `init_seed` fix one of them. With `seeds`, the sweep sets it per job to each of them."""
    seeds: list[int] = field(default_factory=list)
    """Seed replicates (PolyPythias), the third axis of the sweep: every size × dataset is
    trained once per seed. The first seed keeps the plain run names (list the suite's original
    seed first, e.g. [1234, 1, 2], and its runs are the existing ones); the others are named
    `-seed{N}` (`-data-seed{N}` / `-weight-seed{N}` when `init_seed` / `data_seed` is fixed).
    Empty: one run per size × dataset, with `seed`."""
    init_seed: int | None = None
    """Seed of the model initialisation (step0) of every run; None: the run's `seed`. Fixed
    while `seeds` vary: replicates that differ only in their data order."""
    data_seed: int | None = None
    """Seed of the data order of every run; None: the run's `seed`. Fixed while `seeds` vary:
    replicates that differ only in their initialisation (needed for pre-shuffled datasets,
    whose order is fixed on disk)."""
    padded_vocab: int | None = None
    """Force the embedding rows (must cover the tokenizer and divide by TP); None: pad by rule."""
    precision: str = "fp16"
    """Training precision, one of `model_zoo.Precision`: fp32, bf16 or fp16 (dynamic loss
    scaling)."""
    zero_stage: int = 1
    """DeepSpeed ZeRO stage for data parallelism."""
    activation_checkpointing: bool = False
    """Recompute each layer's activations in backward (Pythia/GPT-NeoX: on) to save memory."""
    loss_chunk_tokens: int = 4096
    """Token positions per chunk of the output head + cross-entropy (`suite/train/loss.py`):
    full-vocabulary logits exist for one chunk at a time and are recomputed in backward, not
    kept for the whole micro batch (14 bytes per logit element at the peak in 16 bits:
    2.9 GB per chunk at vocabulary 50304, 46 GB unchunked at micro 32 × 2048). 0 =
    unchunked. Not part of the run identity: the loss is the same up to float rounding."""
    attention: str = "sdpa"
    """Attention kernel, one of `ATTENTIONS`: `sdpa` (PyTorch's; its flash/cuDNN kernels on GPU
    for causal unmasked inputs), `flash_attention_2` (the flash-attn package; fp16/bf16 on CUDA
    only, checked at start-up) or `eager` (the reference implementation)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    memorization: MemorizationConfig = field(default_factory=MemorizationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    resources: dict[str, SizeResources] = field(default_factory=dict)
    """Per-size resources; sizes not listed use `default_resources`."""
    default_resources: SizeResources = field(default_factory=SizeResources)
    parallel: ParallelOverride = field(default_factory=ParallelOverride)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Experiment tracking: TensorBoard and Weights & Biases (both off by default)."""
    root: str = "suite_runs"
    """Where data, sweeps and the local store live (relative to the working directory)."""
    init_from: str | None = None
    """Continue from a published training state: `[STORE/]ORG/NAME@stepN`
    (`local:/path/store/ORG/NAME@step4`, `hub:ORG/NAME@step4`, `hub:https://host/ORG/NAME@step4`,
    or `ORG/NAME@step4` in `publish.store`), published with `publish.training_state`. Same
    model, data, dp × tp and ZeRO stage as the source; a different optimizer schedule or
    train_steps is a warm start, recorded in the run identity. None: start from step 0."""

    def __post_init__(self) -> None:
        if self.ladder not in LADDERS:
            raise ConfigError("ladder", self.ladder, f"use one of: {', '.join(LADDERS)}")
        _check_choice("family", self.family, FAMILY_NAMES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("attention", self.attention, ATTENTIONS)
        check_attention_precision(self.attention, self.precision)
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("zero_stage", self.zero_stage, "use 0, 1, 2 or 3")
        if isinstance(self.loss_chunk_tokens, bool) or self.loss_chunk_tokens < 0:
            raise ConfigError(
                "loss_chunk_tokens",
                self.loss_chunk_tokens,
                "use a positive number of token positions per chunk (e.g. 4096) or 0 (unchunked)",
            )
        for name in ("seq_len", "global_batch", "train_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "use a positive number")
        check_seed("seed", self.seed)
        self._check_seeds()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError(
                "name", self.name, "use letters, digits, '.', '_' or '-' (it starts run names)"
            )
        if not self.root.strip():  # '' would put data, runs and the store in the cwd itself
            raise ConfigError("root", self.root, "give a folder, e.g. suite_runs (the default)")
        check_directory_path(self.root, "root")
        if not self.sizes:
            raise ConfigError("sizes", self.sizes, "list at least one size of the ladder")
        repeated = sorted({s for s in self.sizes if list(self.sizes).count(s) > 1})
        if repeated:
            raise ConfigError(
                "sizes", list(self.sizes), f"{repeated[0]} is listed twice; list each size once"
            )
        tokens = self.train_steps * self.global_batch * (self.seq_len + 1)
        if tokens >= 2**63:  # token and sample counts are int64 (numpy, pandas, metadata)
            raise ConfigError(
                "train_steps",
                self.train_steps,
                f"× global_batch {self.global_batch} × (seq_len {self.seq_len} + 1) = {tokens:.3g} "
                "tokens, beyond 64-bit counts; lower train_steps, global_batch or seq_len",
            )
        if self.train_steps // self.checkpoints.every > MAX_CHECKPOINTS:
            raise ConfigError(
                "train_steps",
                self.train_steps,
                f"with checkpoints.every={self.checkpoints.every} that is over "
                f"{MAX_CHECKPOINTS:,} checkpoints; lower train_steps or raise checkpoints.every",
            )
        if not self.datasets:
            raise ConfigError("datasets", dict(self.datasets), "define at least one dataset")
        known = LADDERS[self.ladder]
        for size in [*self.sizes, *self.resources]:
            if size not in known:
                raise ConfigError(
                    "sizes" if size in self.sizes else f"resources.{size}",
                    size,
                    f"unknown size in the {self.ladder!r} ladder; known sizes: {', '.join(known)}",
                )
        if self.size is not None and self.size not in known:
            raise ConfigError("size", self.size, f"known sizes: {', '.join(known)}")
        if self.dataset is not None and self.dataset not in self.datasets:
            raise ConfigError(
                "dataset", self.dataset, f"known datasets: {', '.join(self.datasets)}"
            )
        check_dataset_pairs(self.datasets)
        for name in self.publish.card.hub_datasets:
            if name not in self.datasets:
                raise ConfigError(
                    f"publish.card.hub_datasets.{name}",
                    list(self.publish.card.hub_datasets[name]),
                    f"not a dataset of the suite; use one of: {', '.join(self.datasets)}",
                )
        if self.init_from is not None:
            # Syntax only here (no store is opened); training resolves and checks the state.
            from suite.publish.training_state import parse_init_from

            parse_init_from(self.init_from, self.publish.store)
        late = [s for s in self.publish.training_state if s > self.train_steps]
        if late:
            raise ConfigError(
                "publish.training_state",
                late,
                f"beyond train_steps={self.train_steps}: never reached; list steps <= it",
            )

    def checkpoint_schedule(self):
        """The published-checkpoint steps of every run of this suite (`suite.schedule`)."""
        from suite.schedule import CheckpointSchedule

        c = self.checkpoints
        try:
            return CheckpointSchedule(
                log_until=min(c.log_until, self.train_steps),
                every=c.every,
                total_steps=self.train_steps,
                extra=tuple(c.extra),
            )
        except ConfigError as err:
            raise ConfigError(f"checkpoints.{err.field}", err.value, err.fix) from None

    def _check_seeds(self) -> None:
        for i, seed in enumerate(self.seeds):
            check_seed(f"seeds[{i}]", seed)
        repeated = sorted({s for s in self.seeds if list(self.seeds).count(s) > 1})
        if repeated:
            raise ConfigError(
                "seeds", list(self.seeds), f"{repeated[0]} is listed twice; list each seed once"
            )
        for name in ("init_seed", "data_seed"):
            if getattr(self, name) is not None:
                check_seed(name, getattr(self, name))
        if len(self.seeds) > 1 and self.init_seed is not None and self.data_seed is not None:
            raise ConfigError(
                "seeds",
                list(self.seeds),
                f"with init_seed={self.init_seed} and data_seed={self.data_seed} both fixed, "
                "every seed would train the same run; set one of them to null",
            )

    @property
    def reference_seed(self) -> int:
        """The seed whose runs keep the plain names, and the seed the suite's datasets are
        prepared with: the first of `seeds`, else `seed`."""
        return self.seeds[0] if self.seeds else self.seed

    def init_seed_of(self, seed: int) -> int:
        """The init seed of a run of `seed`: `init_seed` when fixed, else `seed`."""
        return seed if self.init_seed is None else self.init_seed

    def data_seed_of(self, seed: int) -> int:
        """The data seed of a run of `seed`: `data_seed` when fixed, else `seed`."""
        return seed if self.data_seed is None else self.data_seed

    def run_seeds(self) -> list[int]:
        """The seed axis: `seeds`, or just `seed`."""
        return list(self.seeds) if self.seeds else [self.seed]

    def seed_suffix(self, seed: int) -> str:
        """What a run of `seed` appends to its name (after the dataset's `run_suffix`), as
        PolyPythias named its runs: '' for the reference seed (and any single-seed sweep),
        else `-seed{N}`, `-data-seed{N}` (init fixed) or `-weight-seed{N}` (data fixed)."""
        if seed == self.reference_seed:
            return ""
        if self.init_seed is not None:
            return f"-data-seed{seed}"
        if self.data_seed is not None:
            return f"-weight-seed{seed}"
        return f"-seed{seed}"

    def runs(self) -> list[RunKey]:
        """Every run of the sweep, sizes major, then datasets, then seeds: the one place the
        sweep's axes are enumerated (plan, sweep, sweep.json and the launchers follow it)."""
        return [
            RunKey(size, dataset, seed)
            for size in self.sizes
            for dataset in self.datasets
            for seed in self.run_seeds()
        ]


class RunKey(NamedTuple):
    """One point of the sweep's grid: what the sweep sets per job (`size=`, `dataset=`, `seed=`)."""

    size: str
    dataset: str
    seed: int


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, derived from the suite in one place and validated.

    The parallel layout is `run.layout` (a `ParallelLayout`, passed as `layout=`); `gpus`, `tp`,
    `dp`, `micro_batch`, `grad_accum` and `global_batch` are fields copied from it, so that
    `dataclasses.asdict(run)` (the config hash) holds exactly what determines the weights —
    not the cluster's node size, which only places the ranks.
    """

    suite: str
    run_name: str
    """`{prefix}-{size}{run_suffix}{seed suffix}` (`SuiteConfig.seed_suffix`), also the Hub
    repo name."""
    repo_id: str
    """`{org}/{run_name}`."""
    size_name: str
    size: SizeSpec
    family: Family
    dataset_name: str
    dataset: DatasetConfig
    vocab: int
    """Tokenizer vocabulary declared by the suite (before padding)."""
    padded_vocab: int
    layout: InitVar[ParallelLayout]
    """The run's parallel layout (`resolve_layout`); read back as `run.layout`."""
    gpus: int = field(init=False)
    """World size (= layout.gpus)."""
    tp: int = field(init=False)
    """Tensor-parallel degree (= layout.tp)."""
    dp: int = field(init=False)
    """Data-parallel degree (= layout.dp)."""
    micro_batch: int = field(init=False)
    """Samples per rank per micro step (= layout.micro_batch)."""
    grad_accum: int = field(init=False)
    """Micro steps per update (= layout.grad_accum)."""
    global_batch: int = field(init=False)
    """Samples per update (= layout.global_batch = the suite's global_batch)."""
    seq_len: int
    train_steps: int
    lr: float
    time_minutes: int
    seed: int
    """The run's point on the seed axis (`SuiteConfig.seeds`); names the run."""
    init_seed: int
    """Seed of the initialisation (step0): `init_seed`, else `seed`."""
    data_seed: int
    """Seed of the data order (contract 2): `data_seed`, else `seed`."""

    def __post_init__(self, layout: ParallelLayout) -> None:
        # An instance attribute (not a field): asdict(run) and run equality stay as they were.
        object.__setattr__(self, "layout", layout)
        for name in ("gpus", "tp", "dp", "micro_batch", "grad_accum", "global_batch"):
            object.__setattr__(self, name, getattr(layout, name))

    @property
    def tokens(self) -> int:
        """Tokens trained on (predicted positions): updates × samples × seq_len."""
        return self.train_steps * self.global_batch * self.seq_len

    @property
    def total_params(self) -> int:
        return self.family.total_params(self.size, self.padded_vocab)

    @property
    def non_embedding_params(self) -> int:
        return self.family.non_embedding_params(self.size)


def size_resources(cfg: SuiteConfig, size: str) -> SizeResources:
    """`size`'s resources as configured: its `resources` entry (or `default_resources`) with
    the `parallel` overrides applied. Unvalidated: `resolve_layout` validates them."""
    base = cfg.resources.get(size, cfg.default_resources)
    over = cfg.parallel
    return SizeResources(
        gpus=over.gpus if over.gpus is not None else base.gpus,
        tp=over.tp if over.tp is not None else base.tp,
        micro_batch=over.micro_batch if over.micro_batch is not None else base.micro_batch,
        grad_accum=over.grad_accum if over.grad_accum is not None else base.grad_accum,
        time_minutes=base.time_minutes,
    )


def resource_key(cfg: SuiteConfig, size: str, name: str) -> str:
    """The config key the user sets `name` of `size`'s resources with: `parallel.<name>` when
    overridden, else `resources.<size>.<name>` or `default_resources.<name>`;
    `gpus_per_node` is `cluster.gpus_per_node`."""
    if name == "gpus_per_node":
        return "cluster.gpus_per_node"
    if getattr(cfg.parallel, name, None) is not None:
        return f"parallel.{name}"
    return f"resources.{size}.{name}" if size in cfg.resources else f"default_resources.{name}"


def resolve_layout(cfg: SuiteConfig, size: str) -> ParallelLayout:
    """The validated parallel layout of `size`'s runs, errors keyed as the user writes them.

    Needs no vocabulary, so the trainer can check the world size with it before opening the
    data; `resolve_run` uses it too, so both apply the same rules.
    """
    ladder = LADDERS[cfg.ladder]
    if size not in ladder:
        raise ConfigError(
            "size", size, f"known sizes of the {cfg.ladder!r} ladder: {', '.join(ladder)}"
        )
    res = size_resources(cfg, size)
    try:
        layout = ParallelLayout(
            gpus=res.gpus,
            tp=res.tp,
            micro_batch=res.micro_batch,
            grad_accum=res.grad_accum,
            gpus_per_node=cfg.cluster.gpus_per_node,
        )
    except ConfigError as err:
        raise rekeyed(err, lambda name: resource_key(cfg, size, name), f" (size {size})") from None
    spec = get_size(cfg.ladder, size)
    if spec.n_heads % layout.tp:
        raise ConfigError(
            resource_key(cfg, size, "tp"),
            layout.tp,
            f"size {size} has n_heads={spec.n_heads}, not divisible by tp; use a tp dividing {spec.n_heads}",
        )
    if cfg.global_batch != layout.global_batch:
        per_step = layout.micro_batch * layout.dp
        raise ConfigError(
            "global_batch",
            cfg.global_batch,
            f"size {size} has micro_batch={layout.micro_batch} × dp={layout.dp} "
            f"(gpus {layout.gpus} / tp {layout.tp}) × grad_accum={layout.grad_accum} = "
            f"{layout.global_batch} samples per update; make global_batch divisible by "
            f"micro_batch × dp = {per_step} and set "
            f"{resource_key(cfg, size, 'grad_accum')} = global_batch / {per_step}",
        )
    return layout


def resolve_run(
    cfg: SuiteConfig, size: str, dataset: str, vocab: int | None = None, seed: int | None = None
) -> RunSpec:
    """Derive and validate one run. `vocab` is the real tokenizer size when known (training);
    `seed` is the run's point on the seed axis (None: `cfg.seed`, as a sweep job sets it)."""
    seed = cfg.seed if seed is None else seed
    if cfg.seeds and seed not in cfg.seeds:
        raise ConfigError(
            "seed", seed, f"not one of seeds={list(cfg.seeds)}; set seed= one of them"
        )
    ladder = LADDERS[cfg.ladder]
    if size not in ladder:
        raise ConfigError(
            "size", size, f"known sizes of the {cfg.ladder!r} ladder: {', '.join(ladder)}"
        )
    if dataset not in cfg.datasets:
        raise ConfigError("dataset", dataset, f"known datasets: {', '.join(cfg.datasets)}")
    spec, family = get_size(cfg.ladder, size), get_family(cfg.family)
    layout = resolve_layout(cfg, size)
    time_minutes = size_resources(cfg, size).time_minutes
    if isinstance(time_minutes, bool) or not isinstance(time_minutes, int) or time_minutes < 1:
        raise ConfigError(
            resource_key(cfg, size, "time_minutes"), time_minutes, "use a whole number >= 1"
        )
    vocab = vocab if vocab is not None else cfg.data.vocab_size
    padded = cfg.padded_vocab or pad_vocab(vocab, layout.tp, cfg.data.pad_vocab_multiple)
    if padded < vocab:
        raise ConfigError(
            "padded_vocab",
            padded,
            f"smaller than the tokenizer's {vocab} tokens; use >= {vocab} or null",
        )
    if padded % layout.tp:
        raise ConfigError(
            "padded_vocab",
            padded,
            f"vocabulary not divisible by tp={layout.tp} (size {size}); use a multiple of {layout.tp} or null to pad by rule",
        )
    ds = cfg.datasets[dataset]
    prefix = cfg.publish.repo_prefix or cfg.name
    # The seed suffix goes last (`pythia-160m-deduped-seed3`): PolyPythias appends it to the
    # Pythia name, so each replicate's name starts with its reference run's name.
    run_name = f"{prefix}-{size}{ds.run_suffix}{cfg.seed_suffix(seed)}"
    return RunSpec(
        suite=cfg.name,
        run_name=run_name,
        repo_id=f"{cfg.publish.org}/{run_name}",
        size_name=size,
        size=spec,
        family=family,
        dataset_name=dataset,
        dataset=ds,
        vocab=vocab,
        padded_vocab=padded,
        layout=layout,
        seq_len=cfg.seq_len,
        train_steps=cfg.train_steps,
        lr=cfg.optim.lr if cfg.optim.lr is not None else spec.lr,
        time_minutes=time_minutes,
        seed=seed,
        init_seed=cfg.init_seed_of(seed),
        data_seed=cfg.data_seed_of(seed),
    )


def resolve_all(cfg: SuiteConfig) -> list[RunSpec]:
    """Every run of the sweep, each validated: the first invalid one raises before anything runs."""
    return [resolve_run(cfg, size, dataset, seed=seed) for size, dataset, seed in cfg.runs()]
