"""P x K identity sampling: every step holds P identities with K images each.

The batch-hard triplet loss needs positives and negatives inside every batch, so batches are
built from identities rather than from images. An *epoch* follows the strong ReID baselines
(BoT, TransReID): each identity's images are shuffled and cut into chunks of K (an identity
with fewer than K images is sampled with replacement), and the chunks are dealt out P at a
time, so that an epoch shows every training image about once.

The sampler is stateless apart from ``(seed, epoch)``: the batches of an epoch come from a
generator seeded by both, so resuming at ``(epoch, step)`` replays exactly the batches an
uninterrupted run would have drawn.

On several processes (``world_size > 1``) each step draws ``P * world_size`` distinct
identities and hands rank ``r`` the ``r``-th block of P, so the ranks see disjoint
identities and run the same number of steps.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from mosaic.core.errors import MosaicError


class PKSampler:
    """Batches of ``p`` identities x ``k`` images (indices into ``pids``), for one rank.

    Parameters
    ----------
    pids:
        Identity label of every training image; the yielded indices point into this array.
    p, k:
        Identities per batch (per rank) and images per identity.
    seed:
        Base seed; epoch ``e`` uses the generator seeded with ``(seed, e)``.
    rank, world_size:
        This process's rank and the number of processes sharing each step's identities.
    """

    def __init__(self, pids: Sequence[int] | np.ndarray, p: int, k: int, *, seed: int = 0, rank: int = 0, world_size: int = 1):
        pids = np.asarray(pids)
        if pids.ndim != 1 or len(pids) == 0:
            raise MosaicError("the training split has no images: check data.root and the split")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self._pids = pids
        self.identities, inverse = np.unique(pids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(self.identities))
        self._members = np.split(order, np.cumsum(counts)[:-1])
        per_step = self.p * self.world_size
        if len(self.identities) < per_step:
            raise MosaicError(
                f"each step needs {per_step} distinct identities (sampler.p={self.p} x {self.world_size} process(es)) "
                f"but the training split has only {len(self.identities)}: lower sampler.p"
            )
        chunks = int(sum(max(len(m), self.k) // self.k for m in self._members))
        self.steps_per_epoch = max(1, chunks // per_step)
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        """Images per step on this rank."""
        return self.p * self.k

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.epoch_batches(self.epoch))

    def epoch_batches(self, epoch: int, start: int = 0) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` from step ``start`` on (each an int64 array of P*K indices)."""
        steps = self._global_steps(epoch)
        lo, hi = self.rank * self.p, (self.rank + 1) * self.p
        return [np.concatenate(step[lo:hi]) for step in steps[start:]]

    def global_batch_identities(self, epoch: int) -> list[list[int]]:
        """Per step, the identity labels of all ranks' chunks (rank r owns ``[r*P:(r+1)*P]``)."""
        return [[int(self._pid_of(c)) for c in step] for step in self._global_steps(epoch)]

    # --------------------------------------------------------------- internals
    def _pid_of(self, chunk: np.ndarray) -> int:
        return self._pids[chunk[0]]

    def _deal_chunks(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """One pass: every identity's images shuffled and cut into chunks of K."""
        out = []
        for members in self._members:
            if len(members) < self.k:
                shuffled = rng.choice(members, size=self.k, replace=True)
            else:
                shuffled = rng.permutation(members)
            n = len(shuffled) // self.k
            out.append([shuffled[i * self.k : (i + 1) * self.k] for i in range(n)])
        return out

    def _global_steps(self, epoch: int) -> list[list[np.ndarray]]:
        rng = np.random.default_rng([self.seed, int(epoch)])
        per_step = self.p * self.world_size
        pool = self._deal_chunks(rng)
        steps: list[list[np.ndarray]] = []
        while len(steps) < self.steps_per_epoch:
            available = np.flatnonzero([len(c) > 0 for c in pool])
            if len(available) < per_step:
                # The chunks left sit on too few identities to fill a step: top up every
                # identity with a fresh pass so each step still has P*world distinct ids.
                fresh = self._deal_chunks(rng)
                pool = [old + new for old, new in zip(pool, fresh)]
                continue
            chosen = rng.choice(available, size=per_step, replace=False)
            steps.append([pool[i].pop() for i in chosen])
        return steps

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "p": self.p, "k": self.k, "epoch": self.epoch, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("seed", "p", "k"):
            if int(state[key]) != getattr(self, key):
                raise MosaicError(
                    f"cannot resume: the checkpoint's sampler.{key} is {state[key]} but the run now uses {getattr(self, key)}"
                )
        self.epoch = int(state["epoch"])
