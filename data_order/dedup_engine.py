"""Near-duplicate removal on datatrove's MinHash stages (`dedup_engine="datatrove"`).

Same removals as `dedup.find_duplicates` (the single-process engine), computed on disk in
three datatrove stages, each a set of independent tasks that a `LocalPipelineExecutor`
(here) or a `SlurmPipelineExecutor` (`suite prepare --launcher slurm`) runs and marks
complete, so a killed run resumes at the first unfinished task:

1. ``signatures`` — one task per tokenized shard (`TokenSignatures`, a datatrove
   `MinhashDedupSignature` fed token ids): each document's datasketch MinHash over
   `shingle_size`-token shingles (`dedup.minhash_sketch`, the single engine's definition),
   written as datatrove's sorted per-band files plus the full sketch (`full/<shard>.u32`,
   `num_perm` uint32 per document) for the Jaccard estimate. Memory: one document.
2. ``buckets`` — one task per LSH band (datatrove's `MinhashDedupBuckets`, unchanged): a
   streaming k-way merge of the sorted band files that writes the pairs of documents whose
   band agrees. Memory: one buffered record per shard file.
3. ``removals`` — one task (`CorpusOrderRemovals`, ours in place of datatrove's
   `MinhashDedupCluster`): visits the colliding documents in corpus order and removes one
   whose estimated Jaccard with an already kept candidate reaches the threshold, naming the
   most similar one — the single engine's rule exactly. datatrove's cluster step instead
   removes every member of a connected component of colliding pairs but its root, without
   checking the Jaccard estimate: another set of documents (chains of 0.87-similar
   documents are transitive there) and no kept twin to report.

The bands are datasketch's (`dedup.lsh_bands`: 7 x 18 rows for 0.87 and 128 permutations)
and the sketches are datasketch's, so the candidate pairs, estimates and removals are the
same as the in-memory `MinHashLSH` of the single engine (tested). Held-out and exact
duplicates are decided in stage 3 from the shards' document hashes, as `build` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupSignature,
)
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WhitespaceTokenizer
from loguru import logger

from data_order.atomic import write_bytes, write_json
from data_order.dedup import Removal, find_duplicates, lsh_bands, shingle_hashes
from data_order.errors import DataError

#: Bump when the files of the engine folder change meaning.
ENGINE_VERSION = 1
STAGES = ("signatures", "buckets", "removals")
REMOVALS = "removals.jsonl"


@dataclass(frozen=True)
class EnginePlan:
    """Where and how the engine runs for one corpus and one set of dedup settings."""

    root: Path  #: engine folder (inside prepare's work folder, deleted after the merge)
    shards: tuple[Path, ...]  #: tokenized shard folders, in corpus order
    threshold: float
    num_perm: int
    shingle_size: int
    eval_fraction: float
    eval_min_docs: int
    #: build's held-out rule, (text hashes, fraction, min docs) → indices held out; passed
    #: in (the engine does not import `build`, which imports the engine).
    held_out: Callable[[list[str], float, int], set[int]] = field(compare=False)
    seed: int = 1  #: datasketch's permutation seed, as in `find_duplicates`
    bands: tuple[int, int] = field(init=False)  #: (bands, rows per band)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", lsh_bands(self.threshold, self.num_perm))

    def minhash_config(self) -> MinhashConfig:
        # 64-bit records: datatrove's reader stops at the precision's maximum, and a 32-bit
        # band whose first value is 2**32-1 (a legal datasketch value) would be dropped.
        return MinhashConfig(
            n_grams=self.shingle_size,
            num_buckets=self.bands[0],
            hashes_per_bucket=self.bands[1],
            seed=self.seed,
            hash_config=HashConfig(precision=64),
        )

    def stage(self, name: str) -> tuple[list, int]:
        """(datatrove pipeline, number of tasks) of stage `name`."""
        if name == "signatures":
            step = TokenSignatures(self, self.root / "signatures")
            return [step], len(self.shards)
        if name == "buckets":
            step = MinhashDedupBuckets(
                str(self.root / "signatures"),
                str(self.root / "buckets"),
                config=self.minhash_config(),
            )
            return [step], self.bands[0]
        if name == "removals":
            return [CorpusOrderRemovals(self)], 1
        raise ValueError(f"unknown stage {name!r}; one of {STAGES}")

    def logs(self, name: str) -> Path:
        return self.root / "logs" / name


def plan_for(cfg, work_dir: Path, shards: Sequence[Path], held_out: Callable) -> EnginePlan:
    """The engine plan of a `PrepareConfig` whose shards live in `work_dir`; `held_out` is
    `build.held_out_documents`."""
    settings = [ENGINE_VERSION, cfg.minhash_threshold, cfg.num_perm, cfg.shingle_size]
    settings += [cfg.eval_fraction, cfg.eval_min_docs, len(shards)]
    key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()
    return EnginePlan(
        root=Path(work_dir) / f"minhash-{key[:16]}",
        shards=tuple(Path(s) for s in shards),
        threshold=cfg.minhash_threshold,
        num_perm=cfg.num_perm,
        shingle_size=cfg.shingle_size,
        eval_fraction=cfg.eval_fraction,
        eval_min_docs=cfg.eval_min_docs,
        held_out=held_out,
    )


def run_local(
    plan: EnginePlan, workers: int, progress: Callable[[str], None] | None = None
) -> None:
    """Run the unfinished tasks of every stage with datatrove's local executor."""

    logger.disable("datatrove")  # in this process; its tasks: `dedup_executor`
    _drop_if_stale(plan)
    try:
        for name in STAGES:
            run_stage(plan, name, workers, progress)
    finally:
        logger.enable("datatrove")


def run_stage(
    plan: EnginePlan, name: str, workers: int, progress: Callable[[str], None] | None = None
) -> int:
    """Run the unfinished tasks of stage `name` locally; returns how many ran."""
    from data_order.dedup_executor import QuietLocalExecutor

    pipeline, tasks = plan.stage(name)
    executor = QuietLocalExecutor(
        pipeline,
        tasks=tasks,
        workers=max(1, min(workers, tasks)),
        logging_dir=str(plan.logs(name)),
        # not fork: the parent may hold the tokenizer's rayon threads.
        start_method="forkserver",
    )
    todo = len(executor.get_incomplete_ranks())
    if progress:
        progress(f"dedup stage {name}: {todo} of {tasks} task(s) to run")
    if todo:
        executor.run()
    return todo


def _drop_if_stale(plan: EnginePlan) -> None:
    """Forget the engine's work if a shard was re-tokenized since its signatures were made
    (`build` re-tokenizes a shard whose files changed): each signature task records the
    digest of its shard's `done.json`."""
    for index, shard in enumerate(plan.shards):
        record = plan.root / "signatures" / "shards" / f"{index:05d}.json"
        if record.is_file() and json.loads(record.read_text())["done"] != _digest(shard):
            shutil.rmtree(plan.root)
            return


def _digest(shard: Path) -> str:
    with open(shard / "done.json", "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_removals(plan: EnginePlan, num_documents: int) -> list[Removal]:
    """The removals stage 3 wrote (indices into the merged corpus)."""
    path = plan.root / REMOVALS
    if not path.is_file():
        raise DataError(f"{path} is missing: the dedup stages did not finish; re-run prepare")
    removals = [Removal(**json.loads(line)) for line in path.read_text().splitlines()]
    header = json.loads((plan.root / "removals.json").read_text())
    if header["documents"] != num_documents:
        raise DataError(
            f"{plan.root}: dedup ran over {header['documents']} documents, the merge has "
            f"{num_documents}; delete the folder and re-run prepare"
        )
    return removals


def engine_removals(
    cfg, work_dir: Path, shards: Sequence[Path], num_documents: int, held_out: Callable
) -> list[Removal]:
    """Run (or resume) the engine locally and return its removals."""
    plan = plan_for(cfg, work_dir, shards, held_out)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if cfg.progress else None
    run_local(plan, cfg.workers or _cpus(), say)
    return read_removals(plan, num_documents)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- datatrove steps ------------------------------------------------------------------------


class TokenSignatures(MinhashDedupSignature):
    """datatrove's signature stage over a tokenized shard: shingles of token ids and
    datasketch's permutations instead of word n-grams of normalised text (datatrove's
    default), so the sketches are the single engine's. Reads the shard itself (rank = shard
    index): the documents are already tokenized, no datatrove reader applies."""

    name = "🎯 MinHash stage 1 (token ids)"

    def __init__(self, plan: EnginePlan, output_folder: Path):
        # The word tokenizer is never used (get_shingles is ours); datatrove's English default
        # needs spaCy, the whitespace one needs nothing.
        super().__init__(str(output_folder), plan.minhash_config(), language=WhitespaceTokenizer())
        self.plan = plan
        self._tokens: np.ndarray | None = None
        self._full = None

    def _documents(self, shard: Path) -> Iterator[Document]:
        from data_order.indexed import IndexedReader

        reader = IndexedReader(shard / "tokens")
        for i in range(len(reader)):
            self._tokens = reader[i]
            yield Document(text="", id=str(i))

    def get_shingles(self, text: str) -> np.ndarray:
        return shingle_hashes(self._tokens[:-1], self.plan.shingle_size).astype(np.uint64)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        from datasketch import MinHash

        sketch = MinHash(num_perm=self.plan.num_perm, seed=self.plan.seed, hashfunc=int)
        sketch.update_batch(shingles.tolist())  # = dedup.minhash_sketch of the document
        values = sketch.hashvalues
        self._full.write(values.astype("<u4").tobytes())
        rows = self.plan.bands[1]
        return [values[b * rows : (b + 1) * rows].tolist() for b in range(self.plan.bands[0])]

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        shard = self.plan.shards[rank]
        full = self.output_folder.resolve_paths(f"full/{rank:05d}.u32")
        Path(full).parent.mkdir(parents=True, exist_ok=True)
        with open(full, "wb") as self._full:
            super().run(self._documents(shard), rank, world_size)
        write_json(
            Path(self.output_folder.resolve_paths(f"shards/{rank:05d}.json")),
            {"shard": str(shard), "done": _digest(shard)},
        )


class CorpusOrderRemovals(PipelineStep):
    """Stage 3: the single engine's corpus-order rule over the colliding pairs of stage 2."""

    type = "🫂 - DEDUP"
    name = "🎯 MinHash stage 3 (corpus order)"

    def __init__(self, plan: EnginePlan):
        super().__init__()
        self.plan = plan

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        plan = self.plan
        with self.track_time():
            ids, hashes, offsets = _shard_documents(plan.shards)
            held = plan.held_out(hashes, plan.eval_fraction, plan.eval_min_docs)
            train = [i for i in range(len(ids)) if i not in held]
            removals = [
                Removal(r.removed, r.kept, r.similarity, r.method, train[r.index])
                for r in find_duplicates(
                    [ids[i] for i in train], [hashes[i] for i in train], [], "exact", 1.0, 2, 1
                )
            ]
            eligible = np.zeros(len(ids), dtype=bool)
            eligible[train] = True
            eligible[[r.index for r in removals]] = False
            groups_of = _band_groups(plan.root / "buckets", offsets)
            full = [_sketches(plan.root / "signatures" / "full" / f"{s:05d}.u32", plan.num_perm)
                for s in range(len(plan.shards))]  # fmt: skip
            shard_of = np.searchsorted(offsets, np.arange(len(ids)), side="right") - 1

            def sketch(i: int) -> np.ndarray:
                return full[shard_of[i]][i - offsets[shard_of[i]]]

            kept_in_group: dict[int, list[int]] = {}
            for j in sorted(groups_of):
                if not eligible[j]:
                    continue  # held out or an exact duplicate: never kept, never compared
                groups = groups_of[j]
                candidates = sorted({i for g in groups for i in kept_in_group.get(g, ())})
                best, best_sim, mine = None, -1.0, sketch(j)
                for i in candidates:
                    # datasketch's MinHash.jaccard: the fraction of equal hash values.
                    sim = float(np.count_nonzero(mine == sketch(i))) / float(plan.num_perm)
                    if sim > best_sim:
                        best, best_sim = i, sim
                if best is not None and best_sim >= plan.threshold:
                    removals.append(Removal(ids[j], ids[best], round(best_sim, 6), "minhash", j))
                    self.stat_update("near_duplicates")
                else:
                    for g in groups:
                        kept_in_group.setdefault(g, []).append(j)
            removals.sort(key=lambda r: r.index)
            self.stat_update("exact_duplicates", value=sum(r.method == "exact" for r in removals))
            lines = "".join(json.dumps(r.__dict__) + "\n" for r in removals)
            write_bytes(plan.root / REMOVALS, lines.encode())
            write_json(plan.root / "removals.json", {"documents": len(ids)})


def _shard_documents(shards: Sequence[Path]) -> tuple[list[str], list[str], np.ndarray]:
    """Document ids and text hashes of all shards in corpus order, and each shard's offset."""
    ids: list[str] = []
    hashes: list[str] = []
    offsets = []
    for shard in shards:
        offsets.append(len(ids))
        with open(shard / "docs.jsonl", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                ids.append(record["id"])
                hashes.append(record["sha256"])
    return ids, hashes, np.asarray(offsets, dtype=np.int64)


def _sketches(path: Path, num_perm: int) -> np.ndarray:
    """A shard's full sketches, one row per document (memory-mapped; numpy cannot map an
    empty file, which a shard without documents writes)."""
    if path.stat().st_size == 0:
        return np.empty((0, num_perm), dtype="<u4")
    return np.memmap(path, dtype="<u4", mode="r").reshape(-1, num_perm)


def _band_groups(folder: Path, offsets: np.ndarray) -> dict[int, list[int]]:
    """Document → ids of the band groups it belongs to (documents whose band agrees).

    Stage 2 writes one file per band (and hash range) of pairs (shard, doc, shard, doc);
    a group of k documents with the same band comes as k-1 pairs, so the groups are the
    connected components of the pairs of one file (union-find, per file).
    """
    groups_of: dict[int, list[int]] = {}
    next_group = 0
    for path in sorted(folder.glob("*.dups")):
        pairs = np.fromfile(path, dtype="<u4").reshape(-1, 4).astype(np.int64)
        first = offsets[pairs[:, 0]] + pairs[:, 1]
        second = offsets[pairs[:, 2]] + pairs[:, 3]
        parent: dict[int, int] = {}

        def root(x: int, parent: dict[int, int] = parent) -> int:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in zip(first.tolist(), second.tolist(), strict=True):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        ids: dict[int, int] = {}
        for doc in parent:
            group = ids.setdefault(root(doc), next_group + len(ids))
            groups_of.setdefault(doc, []).append(group)
        next_group += len(ids)
    return groups_of
