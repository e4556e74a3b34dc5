"""Counting the host syncs a piece of torch code would make on a GPU, on the CPU.

On a GPU a sync is the host waiting for the device: a scalar read (``.item()``, ``bool(t)``,
``int(t)``: ``aten::_local_scalar_dense``), an op whose output size depends on the values
(``nonzero``, boolean indexing, ``unique``, ``masked_select``), or a copy from the device to the
host (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.to("cpu")``). On the CPU nothing waits, but the
same calls happen, so a test can count them: the ops under a ``TorchDispatchMode``, and the host
copies through the tensor methods that request them. ``torch.cuda.set_sync_debug_mode("error")``
is the GPU's own form of the check.

Use::

    from syncs import count_syncs
    with count_syncs() as syncs:
        step()
    assert syncs.events == []
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops that read a value on the host, or whose output shape depends on values
SYNCING_OPS = {
    aten._local_scalar_dense,
    aten.nonzero,
    aten.masked_select,
    aten._unique,
    aten._unique2,
    aten.unique_consecutive,
    aten.unique_dim,
    aten.is_nonzero,
    aten.equal,
}
# the tensor methods that ask for a copy on the host
HOST_COPY_METHODS = ("cpu", "numpy", "tolist", "item")


@dataclass
class SyncLog:
    events: list[tuple[str, str]] = field(default_factory=list)  # (what, where in the caller's code)

    def add(self, what: str) -> None:
        frames = [f for f in traceback.extract_stack()[:-2] if "syncs.py" not in f.filename and "/torch/" not in f.filename]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self.events.append((what, where))

    @property
    def count(self) -> int:
        return len(self.events)


class _SyncMode(TorchDispatchMode):
    def __init__(self, log: SyncLog) -> None:
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet in SYNCING_OPS:
            self.log.add(str(packet))
        elif packet is aten.repeat_interleave and "output_size" not in kwargs and func is aten.repeat_interleave.Tensor:
            self.log.add("repeat_interleave without output_size")
        elif packet is aten.index and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None):
            self.log.add("boolean-mask indexing")
        elif packet is aten._to_copy and kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "cpu" \
                and args[0].device.type != "cpu":
            self.log.add("device-to-host copy")
        elif packet is aten.copy_ and args[0].device.type == "cpu" and args[1].device.type != "cpu":
            self.log.add("device-to-host copy_")
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_syncs() -> Iterator[SyncLog]:
    """Record every would-be host sync made inside the ``with`` block (see the module docstring)."""
    log = SyncLog()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_COPY_METHODS}

    def counting(name):
        original = originals[name]

        def method(self, *args, **kwargs):
            log.add(f"Tensor.{name}()")
            return original(self, *args, **kwargs)

        return method

    for name in HOST_COPY_METHODS:
        setattr(torch.Tensor, name, counting(name))
    try:
        with _SyncMode(log):
            yield log
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
