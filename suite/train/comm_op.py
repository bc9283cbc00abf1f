"""DeepSpeed's CPU communication op: not built where it has nothing to do, announced where it is.

On its CPU accelerator DeepSpeed (0.19, `comm/torch.py::build_shm_op`) JIT-compiles
`deepspeed_shm_comm_op` — a shared-memory all-reduce — with gcc when the process group
starts: ~36 s on a fresh machine (the main job's first run), then cached in torch's
extensions directory. Its one user is `inference_all_reduce` (the AutoTP layers), which
returns at once in a world of one process. So:

- world of one (tp 1 × dp 1): the op is marked incompatible in DeepSpeed's table of
  compatible ops (`deepspeed.ops.__compatible_ops__`, computed once per process and kept in
  the module so edits persist, which `build_shm_op` reads) and nothing is built;
- several processes: the build is announced on rank 0 when the op is not cached yet,
  instead of a silent minute, and DeepSpeed's own "built successfully" print goes to the log.

On other accelerators (CUDA) DeepSpeed has no such op and its table is left alone. In every
case DeepSpeed's logger is routed through the suite's (`suite.console.adopt`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

SHM_OP = "deepspeed_shm_comm"
"""DeepSpeed's name of the op (`ShareMemCommBuilder.NAME`)."""

log = logging.getLogger(__name__)


def shm_builder():
    """DeepSpeed's builder of the op on this accelerator, or None (CUDA: none exists)."""
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().create_op_builder("ShareMemCommBuilder")


def compatible_ops() -> dict:
    """DeepSpeed's table of the ops this machine can build, probed once per process (it
    compiles small gcc test programs) and kept in `deepspeed.ops`, so edits persist."""
    import deepspeed.ops

    return deepspeed.ops.__compatible_ops__


def shm_op_cached() -> bool:
    """The op is built in torch's extensions directory (`TORCH_EXTENSIONS_DIR`, default
    ~/.cache/torch_extensions/py{ver}_{cpu|cu…}/), so loading it is quick."""
    try:
        # torch's own choice of folder; private but unchanged since torch 1.x.
        from torch.utils.cpp_extension import _get_build_directory

        folder = Path(_get_build_directory(SHM_OP, verbose=False))
    except (ImportError, OSError, RuntimeError):
        return False
    return (folder / f"{SHM_OP}.so").is_file()


@contextmanager
def shm_op_for(world_size: int, rank: int):
    """Around `deepspeed.init_distributed`: skip the op for one process, announce its build."""
    from suite.console import adopt

    adopt("DeepSpeed")  # its logger prints to the stdout of import time, around our display
    builder = shm_builder()
    if builder is None:
        yield
        return
    compatible = compatible_ops()
    wanted = world_size > 1
    was = compatible.get(SHM_OP, False)
    compatible[SHM_OP] = was and wanted
    if wanted and was and rank == 0 and not shm_op_cached():
        from suite.console import event

        event(
            "[setup] building DeepSpeed's CPU communication op once, ~1 min "
            "(cached in torch's extensions directory for later runs)"
        )
    try:
        with redirect_stdout(_LogLines()):  # DeepSpeed prints "… built successfully"
            yield
    finally:
        compatible[SHM_OP] = was


class _LogLines:
    """A stdout for DeepSpeed's print: each line becomes an INFO record (the log files)."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info(line)
        return len(text)

    def flush(self) -> None:
        pass
