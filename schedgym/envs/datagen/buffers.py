"""Training buffers of online surrogate training (Melissa's FIFO, FIRO and reservoir).

A buffer sits between the simulations, which put samples in as they finish, and the trainer, which
draws minibatches. Each has a capacity (samples held at most) and a watermark (the trainer waits
while fewer samples are held), after Meyer et al., "Training Deep Surrogate Models with Large Scale
Online Learning" (ICML 2023):

- ``fifo``: first in, first out. A draw takes the oldest samples and removes them: every sample is
  seen once. A put into a full buffer drops the oldest samples.
- ``firo``: first in, random out. A draw picks samples uniformly without replacement; a sample is
  evicted once it has been drawn ``max_reuse`` times. A put into a full buffer drops the oldest.
- ``reservoir``: Vitter's algorithm R. The buffer holds a uniform sample of everything ever put;
  draws are uniform without replacement and remove nothing (samples are reused indefinitely).

Accounting, checked by the property tests: every sample ever put is in exactly one of: held,
``consumed`` (fifo draws), ``retired`` (firo reuse budget spent), ``overflowed`` (dropped by a
put into a full fifo/firo buffer, or replaced in the reservoir) or ``rejected`` (the reservoir
declined it on arrival).
"""

from __future__ import annotations

import numpy as np

BUFFER_KINDS = ("fifo", "firo", "reservoir")


class SampleBuffer:
    """Fixed-capacity sample store shared by the three policies.

    Args:
        kind: ``fifo``, ``firo`` or ``reservoir``.
        capacity: samples held at most.
        watermark: the trainer draws only while at least this many samples are held.
        input_dim: width of a sample's input row.
        output_dim: width of a sample's target row.
        num_regions: regions of the parameter-space partition (for the composition statistic).
        rng: generator for random draws and reservoir replacement.
        max_reuse: firo's per-sample budget of draws.
    """

    def __init__(
        self,
        kind: str,
        capacity: int,
        watermark: int,
        input_dim: int,
        output_dim: int,
        num_regions: int,
        rng: np.random.Generator,
        max_reuse: int = 1,
    ) -> None:
        if kind not in BUFFER_KINDS:
            raise ValueError(f"kind: must be one of {BUFFER_KINDS}, got {kind!r}")
        self.kind = kind
        self.capacity = capacity
        self.watermark = watermark
        self.max_reuse = max_reuse
        self.num_regions = num_regions
        self._rng = rng
        # Per slot, shape (capacity, ...): the sample and its bookkeeping.
        self.inputs = np.zeros((capacity, input_dim), np.float32)
        self.targets = np.zeros((capacity, output_dim), np.float32)
        self.region = np.zeros(capacity, np.int64)
        self.uses = np.zeros(capacity, np.int64)  # draws so far
        self.arrival = np.full(capacity, -1, np.int64)  # global put index, -1 when the slot is free
        self.occupied = np.zeros(capacity, bool)
        self.size = 0
        self.seen = 0  # samples ever put
        self.consumed = 0
        self.retired = 0
        self.overflowed = 0
        self.rejected = 0
        self.draws = 0  # sample draws (with multiplicity) ever made

    # ------------------------------------------------------------------------- queries
    def ready(self, batch_size: int) -> bool:
        """Whether the trainer may draw a batch now (held >= watermark and >= batch)."""
        return self.size >= max(self.watermark, batch_size)

    def region_counts(self) -> np.ndarray:
        """``(num_regions,)`` held samples per region."""
        return np.bincount(self.region[self.occupied], minlength=self.num_regions)

    def removed(self) -> int:
        """Samples put but no longer held, for every reason."""
        return self.consumed + self.retired + self.overflowed + self.rejected

    # ------------------------------------------------------------------------- updates
    def put(self, inputs: np.ndarray, targets: np.ndarray, region: np.ndarray) -> None:
        """Add samples (rows of ``inputs``/``targets``, ``region`` per row) in arrival order."""
        count = inputs.shape[0]
        if count == 0:
            return
        if self.kind == "reservoir":
            self._put_reservoir(inputs, targets, region)
            return
        if count > self.capacity:
            # Only the newest ``capacity`` can survive; the rest would be dropped on arrival.
            drop = count - self.capacity
            self.seen += drop
            self.overflowed += drop
            inputs, targets, region = inputs[drop:], targets[drop:], region[drop:]
            count = self.capacity
        overflow = self.size + count - self.capacity
        if overflow > 0:
            self._free(self._oldest(overflow))
            self.overflowed += overflow
        slots = np.flatnonzero(~self.occupied)[:count]
        self._store(slots, inputs, targets, region)

    def draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw a minibatch; return its ``(inputs, targets, regions)`` (copies).

        FIFO removes what it draws; FIRO counts a use per drawn sample and evicts the ones whose
        budget is spent; the reservoir only counts.
        """
        if self.size < batch_size:
            raise ValueError(f"batch_size: {batch_size} > held samples {self.size}")
        if self.kind == "fifo":
            slots = self._oldest(batch_size)
        else:
            held = np.flatnonzero(self.occupied)
            slots = np.sort(self._rng.choice(held, size=batch_size, replace=False))
        batch = (self.inputs[slots].copy(), self.targets[slots].copy(), self.region[slots].copy())
        self.draws += batch_size
        self.uses[slots] += 1
        if self.kind == "fifo":
            self._free(slots)
            self.consumed += batch_size
        elif self.kind == "firo":
            spent = slots[self.uses[slots] >= self.max_reuse]
            self._free(spent)
            self.retired += spent.size
        return batch

    # ------------------------------------------------------------------------- helpers
    def _oldest(self, count: int) -> np.ndarray:
        """Slots of the ``count`` oldest held samples, oldest first."""
        held = np.flatnonzero(self.occupied)
        order = np.argsort(self.arrival[held], kind="stable")
        return held[order[:count]]

    def _free(self, slots: np.ndarray) -> None:
        self.occupied[slots] = False
        self.arrival[slots] = -1
        self.size -= slots.size

    def _store(
        self, slots: np.ndarray, inputs: np.ndarray, targets: np.ndarray, region: np.ndarray
    ) -> None:
        count = slots.size
        self.inputs[slots] = inputs
        self.targets[slots] = targets
        self.region[slots] = region
        self.uses[slots] = 0
        self.arrival[slots] = np.arange(self.seen, self.seen + count)
        self.occupied[slots] = True
        self.size += count
        self.seen += count

    def _put_reservoir(self, inputs: np.ndarray, targets: np.ndarray, region: np.ndarray) -> None:
        count = inputs.shape[0]
        fill = min(self.capacity - self.size, count)
        if fill > 0:
            self._store(
                np.flatnonzero(~self.occupied)[:fill], inputs[:fill], targets[:fill], region[:fill]
            )
        if fill == count:
            return
        # Algorithm R: the n-th sample (1-based) replaces a uniform slot with probability
        # capacity / n, else it is rejected. The buffer is full here, so every slot holds a sample.
        rest = count - fill
        positions = self.seen + 1 + np.arange(rest)
        picks = np.floor(self._rng.random(rest) * positions).astype(np.int64)
        accepted = np.flatnonzero(picks < self.capacity)
        self.overflowed += accepted.size
        self.rejected += rest - accepted.size
        slots = picks[accepted]
        # A slot picked twice keeps the later sample (the earlier one was replaced in turn).
        _, last_from_end = np.unique(slots[::-1], return_index=True)
        keep = accepted[accepted.size - 1 - last_from_end]
        rows = fill + keep
        self.inputs[picks[keep]] = inputs[rows]
        self.targets[picks[keep]] = targets[rows]
        self.region[picks[keep]] = region[rows]
        self.uses[picks[keep]] = 0
        self.arrival[picks[keep]] = self.seen + keep
        self.seen += rest
