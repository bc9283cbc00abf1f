"""`suite train` with every torch.distributed collective checked for the device of its tensors.

Run under torchrun: `python -m torch.distributed.run … tests/collective_probe.py OVERRIDES`.

On GPUs DeepSpeed's process group is NCCL, which has no CPU backend: a collective handed a
tensor that is not on the engine's device stops the run ("No backend type associated with
device type cpu"). gloo on CPU accepts anything, so on this machine such a bug is invisible
— unless the tensors made *without* an explicit device land somewhere else. Once the
engine is built this probe makes `meta` torch's default device and wraps every collective:
a tensor created without `device=` (the bug) arrives on `meta` instead of the engine's
device, and the probe stops the run naming the call site. Before training starts it checks
that the wrapper really catches such a tensor.
"""

from __future__ import annotations

import sys
import traceback

import torch
import torch.distributed as dist

import suite.train.factory as factory

COLLECTIVES = (
    "all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor",
    "reduce_scatter", "reduce_scatter_tensor", "all_to_all_single", "gather", "scatter",
)  # fmt: skip


class WrongDevice(RuntimeError):
    """A collective got a tensor that is not on the engine's device."""


def _tensors(values):
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def _checked(name: str, original, expected: torch.device):
    def collective(*args, **kwargs):
        for tensor in _tensors([*args, *kwargs.values()]):
            if tensor.device != expected:
                stack = "".join(traceback.format_stack(limit=6)[:-1])
                raise WrongDevice(
                    f"{name} got a tensor on {tensor.device}; the engine is on {expected}\n{stack}"
                )
        return original(*args, **kwargs)

    return collective


def _build_checked(*args, **kwargs):
    training = _build(*args, **kwargs)
    expected = training.trainer.engine.device
    for name in COLLECTIVES:
        setattr(dist, name, _checked(name, getattr(dist, name), expected))
    torch.set_default_device("meta")  # a tensor made without a device lands here
    try:  # the check is live: a device-less tensor is refused before it reaches gloo
        dist.all_reduce(torch.zeros(1))
    except WrongDevice:
        pass
    else:
        raise AssertionError("the probe did not catch a tensor made without a device")
    print(f"[probe] collectives checked against {expected}", flush=True)
    return training


def _log_fsyncs(folder: str) -> None:
    import os

    log = open(os.path.join(folder, f"rank{os.environ.get('RANK', '0')}.txt"), "a")  # noqa: SIM115
    original = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else str(fd)
        log.write(path + "\n")
        log.flush()
        return original(fd)

    os.fsync = fsync


_build = factory.build_training
factory.build_training = _build_checked

if __name__ == "__main__":
    import os

    from suite.cli import main

    if os.environ.get("PROBE_FSYNC_LOG"):
        _log_fsyncs(os.environ["PROBE_FSYNC_LOG"])

    sys.exit(main(["train", *sys.argv[1:]]))
