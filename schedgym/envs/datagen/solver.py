"""The 2D heat equation on the unit square, explicit finite differences, a batch at a time.

``u_t = alpha * (u_xx + u_yy)`` on ``[0, 1]^2`` with constant Dirichlet temperatures on the four
sides and a constant initial temperature inside: the parametric problem of Meyer et al. (Melissa,
ICML 2023), five parameters per simulation. The grid has ``n x n`` nodes including the boundary
(spacing ``h = 1 / (n - 1)``); the 5-point Laplacian and forward Euler in time are stable for
``r = alpha * dt / h^2 <= 1/4``, so the time step is a ``cfl_safety`` fraction of
``h^2 / (4 alpha)``, shortened to divide each output interval exactly.

Boundary order is ``(left x=0, right x=1, bottom y=0, top y=1)``; arrays are indexed ``[.., y, x]``.
A corner node touches two sides; it takes their mean (the 5-point stencil never reads corners, so
this only affects what the surrogate is asked to reproduce there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Boundary sides, in the order of the four boundary parameters.
SIDES = ("left", "right", "bottom", "top")


@dataclass(frozen=True)
class HeatGrid:
    """Discretisation of one heat-equation problem.

    Attributes:
        grid_size: nodes per side, boundary included.
        diffusivity: alpha (unit square, dimensionless time).
        final_time: end of the simulated interval; output snapshots at ``j * final_time / T``,
            ``j = 1..T``.
        num_time_steps: T, the snapshots (surrogate samples) per simulation.
        cfl_safety: the time step as a fraction of the stability limit ``h^2 / (4 alpha)``.
    """

    grid_size: int
    diffusivity: float
    final_time: float
    num_time_steps: int
    cfl_safety: float = 0.9

    @property
    def spacing(self) -> float:
        """h, the node spacing."""
        return 1.0 / (self.grid_size - 1)

    @property
    def substeps_per_output(self) -> int:
        """Forward-Euler steps between two snapshots (at least 1)."""
        stable_dt = self.cfl_safety * self.spacing**2 / (4.0 * self.diffusivity)
        return max(1, math.ceil(self.output_interval / stable_dt))

    @property
    def output_interval(self) -> float:
        """Time between two snapshots."""
        return self.final_time / self.num_time_steps

    @property
    def dt(self) -> float:
        """The forward-Euler time step actually used (divides the output interval exactly)."""
        return self.output_interval / self.substeps_per_output

    @property
    def total_substeps(self) -> int:
        """Forward-Euler steps of one whole simulation (what the cost model charges for)."""
        return self.substeps_per_output * self.num_time_steps

    @property
    def snapshot_times(self) -> np.ndarray:
        """``(T,)`` the times of the snapshots."""
        return self.output_interval * np.arange(1, self.num_time_steps + 1)


def initial_fields(
    grid: HeatGrid, initial_temp: np.ndarray, boundary_temps: np.ndarray
) -> np.ndarray:
    """``(B, n, n)`` float64 fields: interior at ``initial_temp``, sides at ``boundary_temps``.

    Args:
        grid: the discretisation.
        initial_temp: ``(B,)`` interior temperature at t = 0.
        boundary_temps: ``(B, 4)`` temperatures of the left, right, bottom and top sides.
    """
    n = grid.grid_size
    initial_temp = np.asarray(initial_temp, dtype=np.float64)
    boundary_temps = np.asarray(boundary_temps, dtype=np.float64)
    batch = initial_temp.shape[0]
    fields = np.empty((batch, n, n))
    fields[:] = initial_temp[:, None, None]
    left, right, bottom, top = (boundary_temps[:, k, None] for k in range(4))
    fields[:, :, 0] = left
    fields[:, :, -1] = right
    fields[:, 0, :] = bottom
    fields[:, -1, :] = top
    fields[:, 0, 0] = 0.5 * (left[:, 0] + bottom[:, 0])
    fields[:, 0, -1] = 0.5 * (right[:, 0] + bottom[:, 0])
    fields[:, -1, 0] = 0.5 * (left[:, 0] + top[:, 0])
    fields[:, -1, -1] = 0.5 * (right[:, 0] + top[:, 0])
    return fields


def advance(fields: np.ndarray, ratio: float, substeps: int) -> None:
    """Run ``substeps`` forward-Euler steps in place on ``(B, n, n)`` fields (boundary fixed).

    Args:
        fields: the batch of fields; only interior nodes change.
        ratio: ``r = alpha * dt / h^2``; stability needs ``r <= 0.25``.
        substeps: steps to take.
    """
    if ratio > 0.25 + 1e-12:
        raise ValueError(f"ratio: explicit scheme unstable for r={ratio} > 0.25")
    interior = fields[:, 1:-1, 1:-1]
    laplacian = np.empty_like(interior)
    for _ in range(substeps):
        # Assemble the 5-point stencil into a scratch array: fewer temporaries than one expression.
        np.add(fields[:, 2:, 1:-1], fields[:, :-2, 1:-1], out=laplacian)
        laplacian += fields[:, 1:-1, 2:]
        laplacian += fields[:, 1:-1, :-2]
        laplacian -= 4.0 * interior
        laplacian *= ratio
        interior += laplacian


def solve(grid: HeatGrid, initial_temp: np.ndarray, boundary_temps: np.ndarray) -> np.ndarray:
    """Simulate a batch; return ``(B, T, n, n)`` float64 snapshots at ``grid.snapshot_times``."""
    fields = initial_fields(grid, initial_temp, boundary_temps)
    return solve_fields(grid, fields)


def solve_fields(grid: HeatGrid, fields: np.ndarray) -> np.ndarray:
    """Like :func:`solve` from arbitrary ``(B, n, n)`` initial fields (modified in place)."""
    ratio = grid.diffusivity * grid.dt / grid.spacing**2
    out = np.empty((fields.shape[0], grid.num_time_steps, *fields.shape[1:]))
    for step in range(grid.num_time_steps):
        advance(fields, ratio, grid.substeps_per_output)
        out[:, step] = fields
    return out
