"""Data parallel from Python: d2r's trainers over a ``torch.distributed`` process group
(d2r::Communicator through d2r._core.Communicator; README "Data parallel")."""

from __future__ import annotations

from typing import Any, Optional

from . import _core


class TorchCommunicator:
    """The collectives of d2r's data-parallel trainers over a ``torch.distributed`` process group
    (d2r::Communicator; README "Data parallel"). The trainers hand their buffers over zero-copy: host
    buffers (Gloo, MPI) as NumPy views wrapped by ``torch.from_numpy``, device buffers (NCCL, cuda
    backend) as CUDA tensors; each rank calls the same collectives in the same order.

    Usually built by ``d2r.fit(..., group=...)`` / ``BilevelRewardLearner(group=...)``; ``communicator()``
    gives the d2r._core.Communicator to pass to the trainers (its ``stats`` count the payload)."""

    def __init__(self, group: Any, device: str = "cpu", device_id: int = 0, fn: str = "d2r.TorchCommunicator"):
        try:
            import torch.distributed as dist
        except ImportError as e:
            raise _core.ArgumentError(f"{fn}: argument 'group': torch.distributed is not available ({e})") from None
        if not dist.is_available() or not dist.is_initialized():
            raise _core.ArgumentError(f"{fn}: argument 'group': torch.distributed is not initialised "
                                      "(call torch.distributed.init_process_group first)")
        if group is True:
            group = dist.group.WORLD
        if not isinstance(group, dist.ProcessGroup):
            raise _core.ArgumentError(f"{fn}: argument 'group': expected a torch.distributed ProcessGroup, "
                                      f"got {type(group).__name__}")
        backend = str(dist.get_backend(group)).lower()
        if device == "cuda" and "nccl" in backend:
            memory = "device"
        elif "gloo" in backend or "mpi" in backend:
            memory = "host"  # the cuda backend then stages the sums through the host
        else:
            raise _core.ArgumentError(f"{fn}: argument 'group': backend '{backend}' cannot reduce "
                                      f"{'CPU' if device != 'cuda' else 'CUDA or CPU'} tensors "
                                      f"(use a Gloo group{' or NCCL' if device == 'cuda' else ''})")
        self.group = group
        self._dist = dist
        self.memory, self.device_id = memory, int(device_id)
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)

    def communicator(self) -> _core.Communicator:
        """A new d2r._core.Communicator calling this object (it holds this object; this one does not
        hold it, so no reference cycle through the extension)."""
        return _core.Communicator(self, self.rank, self.size, memory=self.memory, device_id=self.device_id)

    @staticmethod
    def _tensor(a: Any) -> Any:
        import torch

        return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)

    def allreduce_sum(self, a: Any) -> None:
        self._dist.all_reduce(self._tensor(a), op=self._dist.ReduceOp.SUM, group=self.group)

    def broadcast(self, a: Any, root: int) -> None:
        self._dist.broadcast(self._tensor(a), src=self._dist.get_global_rank(self.group, root), group=self.group)

    def barrier(self) -> None:
        self._dist.barrier(group=self.group)


def _parallel(group: Any, ctx: _core.Context, fn: str) -> Optional[_core.Communicator]:
    if group is None:
        return None
    cuda = ctx.backend == "cuda"
    if isinstance(group, TorchCommunicator):  # one made (or extended) by the caller
        if group.memory == "device" and not cuda:
            raise _core.ArgumentError(f"{fn}: argument 'group': a device-memory (NCCL) communicator needs CUDA arrays")
        return group.communicator()
    return TorchCommunicator(group, "cuda" if cuda else "cpu", ctx.device if cuda else 0, fn).communicator()
