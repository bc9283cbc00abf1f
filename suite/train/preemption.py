"""Preemption and time limits: stop at the end of an update with a resume checkpoint.

SLURM warns a job before its time limit with the signal asked for by `slurm.signal_delay_s`
(USR2, submitit's) and stops a preempted or `scontrol requeue`d job with SIGTERM. Either
may reach one rank before the others, or in the middle of a DeepSpeed step, so the signal
only sets a flag; after each update the ranks all-reduce it (MAX) and, when any rank was
signalled, every rank saves the resume checkpoint of that step together and training stops
with `TrainingInterrupted`. The caller then records the run as interrupted and calls
`hand_over()`, which runs the handler that was installed before ours: in a submitit job,
submitit's own — on USR2 it pickles the job again and `scontrol requeue`s it (rank 0), on
SIGTERM it only logs (SLURM requeues or cancels the job itself). The requeued job resumes
from the checkpoint exactly (`suite.train.resume`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from suite.errors import SuiteError
from suite.train.loop import Hook, Priority

#: Signals that mean "stop soon": SLURM's pre-time-limit warning (submitit asks for USR2)
#: and the SIGTERM of preemption, `scontrol requeue` and `scancel`.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGUSR2, signal.SIGTERM)


@dataclass
class PreemptionWatcher:
    """Catches the stop signals (chained with the handlers installed before) and lets the ranks
    agree, once per update, whether to stop."""

    signals: tuple[signal.Signals, ...] = STOP_SIGNALS
    """Signals that request a checkpoint-and-stop."""
    received: int = 0
    """Number of the first stop signal this process got (0: none yet)."""
    _previous: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    def install(self) -> PreemptionWatcher:
        """Catch `signals` from now on (main thread only; a no-op elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only
        for signum in self.signals:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue  # the process was told to ignore it (nohup …): keep it that way
            self._previous[int(signum)] = previous
            signal.signal(signum, self._on_signal)
        return self

    def restore(self) -> None:
        """Put the earlier handlers back (the run is over or stopping)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            self.received = signum
            # os.write: print() may not be re-entered from a signal handler.
            name = signal.Signals(signum).name
            os.write(2, f"[preemption] {name}: stopping after the current update\n".encode())

    def agreed_signal(self, world_size: int, device) -> int:
        """Collective: the stop signal any rank received (0: none), the same on every rank.

        `device` is the engine's: NCCL (DeepSpeed's process group on GPUs) has no CPU
        backend, so a CPU tensor here would stop every multi-GPU run after one update.
        """
        if world_size == 1:
            return self.received
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.received], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def hand_over(self, signum: int, frame: FrameType | None = None) -> None:
        """Run the handler that was there before ours, then leave the process.

        submitit's USR2 handler requeues the job (rank 0) and exits; its SIGTERM handler and
        the handlers of non-first ranks return, so we exit ourselves — with 128 + signal, the
        code of a process killed by it. A default (or no) handler means the same exit.
        """
        self.restore()
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        sys.stdout.flush()
        raise SystemExit(128 + signum)


class TrainingInterrupted(SuiteError):
    """Training stopped on a stop signal after saving the resume checkpoint of `step`."""

    def __init__(self, step: int, signum: int, run_dir: str, watcher: PreemptionWatcher):
        self.step = step
        self.signum = signum
        self.watcher = watcher
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after update {step}; its resume checkpoint is in {run_dir}/resume "
            "— start the same run again (or let SLURM requeue it) to continue exactly"
        )

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def hand_over(self) -> None:
        """Let the earlier handler (submitit's requeue) act on the signal, then exit."""
        self.watcher.hand_over(self.signum)


@dataclass
class PreemptionHook(Hook):
    """Last hook of the loop: on an agreed stop, save the resume checkpoint and stop.

    It runs after the other hooks so the update's export and metrics line are written
    first. The last update is never interrupted: the run is complete and needs no resume.
    """

    priority = Priority.PREEMPTION

    watcher: PreemptionWatcher
    """The installed watcher whose flag is checked."""
    resume: Any
    """The run's `hooks.ResumeHook` (saves the checkpoint)."""

    def after_update(self, trainer, record: dict) -> None:
        signum = self.watcher.agreed_signal(trainer.world_size, trainer.engine.device)
        step = record["step"]
        if not signum or step == trainer.total_steps:
            return
        if self.resume.last_saved != step:
            self.resume.save(trainer, step)
        raise TrainingInterrupted(
            step, self.watcher.received or signum, str(self.resume.run_dir), self.watcher
        )
