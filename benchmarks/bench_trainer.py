"""Trainer overhead: tokens/s of `suite.train` (DeepSpeed engine, ZeRO-1, one process, CPU)
against a bare PyTorch loop on the same transformers model, batches and AdamW.

Both loops do the same work per update: read this rank's rows of batch s-1, set the
scheduled LR, forward, our cross-entropy, backward, clip to 1.0, AdamW step. The trainer is
built by `suite.train.factory.build_training`, exactly as `suite train` builds it, and runs
every hook of a run after each update (metrics line, batch hash, and the export/resume/eval
checks, which fire at no step inside the timed blocks) — that is the overhead measured. Blocks of updates alternate between the two loops (the machine is
shared; alternation cancels drifting background load) and the figure is the median ratio.

Run: `DS_ACCELERATOR=cpu PYTHONPATH=. python benchmarks/bench_trainer.py [--size 1.3m]`
Writes `benchmarks/results/trainer.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
RESULTS = Path(__file__).parent / "results" / "trainer.json"


def _dataset(folder: Path, seq_len: int):
    from data_order import PrepareConfig, open_dataset, prepare
    from data_order.tokenize import train_bytelevel_bpe

    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)] + ["the", "of", "and", "def", "return", "class"]
    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(200, 800))) for _ in range(300)]
    for i, text in enumerate(texts):
        (corpus / f"doc{i:04d}.txt").write_text(text)
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(train_bytelevel_bpe(texts, 2048))
    (path,) = prepare(
        PrepareConfig(
            inputs=[str(corpus)], tokenizer=str(tokenizer), seq_len=seq_len, workers=1,
            out_dir=str(folder / "data"), name="bench", progress=False,
        )
    )  # fmt: skip
    return open_dataset(path)


def _bare_update(model, optimizer, schedule, dataset, layout, step, grad_clip):
    import torch
    import torch.nn.functional as F

    for group in optimizer.param_groups:
        group["lr"] = schedule(step)
    rows = torch.from_numpy(dataset.rank_batch(layout, step - 1, 0))
    for micro in rows:
        logits = model(input_ids=micro[:, :-1]).logits
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), micro[:, 1:].reshape(-1)
        )
        (loss / len(rows)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1.3m", help="mini-ladder size (default 1.3m)")
    parser.add_argument("--block", type=int, default=5, help="updates per timed block")
    parser.add_argument("--rounds", type=int, default=12, help="alternating block pairs")
    parser.add_argument("overrides", nargs="*", help="suite config overrides, e.g. zero_stage=0")
    args = parser.parse_args()

    import torch

    from data_order import BatchLayout
    from suite.config import resolve_run
    from suite.rundir import RunDir
    from suite.settings import load_suite
    from suite.train.distributed import shutdown_distributed
    from suite.train.engine import build_optimizer
    from suite.train.factory import build_training
    from suite.train.loop import ordered, run_update
    from suite.train.lr_schedule import LRSchedule
    from suite.train.model import build_model, hf_config

    steps = args.block * (args.rounds + 1)
    quiet = 10 * steps  # no export, resume checkpoint or evaluation inside the timed blocks
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_suite(
            [
                f"size={args.size}",
                "dataset=stdlib",
                f"train_steps={steps}",
                "publish.store=none",
                "eval.every=0",
                "checkpoints.log_until=0",
                f"checkpoints.every={quiet}",
                f"checkpoints.resume_every={quiet}",
                *args.overrides,
            ]
        )
        dataset = _dataset(tmp, cfg.seq_len)
        run = resolve_run(cfg, args.size, "stdlib", vocab=dataset.vocab_size)
        layout = BatchLayout(run.global_batch, run.micro_batch, run.dp, run.grad_accum)
        schedule = LRSchedule(run.lr, steps, cfg.optim.warmup_fraction, cfg.optim.min_lr_ratio)
        config = hf_config(run, dataset.eos_id, cfg.precision, cfg.attention)

        training = build_training(cfg, run, dataset, RunDir(tmp / "run"), {}, latest=None)
        trainer, hooks = training.trainer, ordered(training.hooks)
        state = trainer.state
        for hook in hooks:
            hook.on_start(trainer)  # exports step 0 (before timing)

        model = build_model(config, cfg.seed, cfg.activation_checkpointing)
        model.train()
        optimizer = build_optimizer(model, cfg, run)
        bare_step = 0

        def trainer_block() -> float:
            started = time.perf_counter()
            for _ in range(args.block):
                run_update(trainer, hooks)
            return args.block * state.tokens_per_step / (time.perf_counter() - started)

        def bare_block() -> float:
            nonlocal bare_step
            started = time.perf_counter()
            for _ in range(args.block):
                bare_step += 1
                _bare_update(
                    model, optimizer, schedule, dataset, layout, bare_step, cfg.optim.grad_clip
                )
            return args.block * state.tokens_per_step / (time.perf_counter() - started)

        trainer_block(), bare_block()  # warm-up: allocator, kernels, first-touch
        pairs = []
        for round_ in range(args.rounds - 1):
            first, second = (
                (trainer_block, bare_block) if round_ % 2 else (bare_block, trainer_block)
            )
            a, b = first(), second()
            pairs.append((a, b) if first is trainer_block else (b, a))
        for hook in hooks:
            hook.close()
        training.destroy()
        shutdown_distributed()

    ratios = [t / b for t, b in pairs]
    result = {
        "benchmark": "trainer tokens/s vs bare PyTorch loop (same model, batches, AdamW), 1 process, CPU",
        "size": args.size,
        "params": run.total_params,
        "tokens_per_update": run.global_batch * run.seq_len,
        "updates_per_block": args.block,
        "blocks_each": len(pairs),
        "trainer_tokens_per_s": [round(t, 1) for t, _ in pairs],
        "bare_tokens_per_s": [round(b, 1) for _, b in pairs],
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_mean": round(statistics.mean(ratios), 4),
        "target": 0.95,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
