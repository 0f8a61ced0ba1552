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

Nonlinear variant (the ``hard-region`` preset): ``u_t = alpha * div(k(u) grad u)`` with a
temperature-dependent conductivity ``k(u) = floor + (1 - floor) * s^m``, ``s`` the temperature
scaled to [0, 1] over the parameter range, as in radiative or porous-medium heat transfer (the
conductivity of cold material is a small ``floor``). Where a hot side meets a cold interior, heat
enters as a steep front moving at finite speed; where every temperature is close, ``k`` is
nearly constant and the field is smooth, so the parameter space has a genuinely hard region.
Conservative finite volumes: the flux through the face between two nodes is
``alpha * k_face * (u_b - u_a) / h`` with ``k_face`` the mean of the two nodes' ``k``, and forward
Euler updates each interior node by ``r * sum over its four faces of k_face * (u_nb - u)``. Since
``k <= 1``, each update is a convex combination of the node and its neighbours when
``r = alpha * dt / h^2 <= 1/4``: the same time step as the linear scheme keeps the maximum
principle (hence stability in the max norm), and the interior's heat changes by exactly the
boundary faces' fluxes (conservation, checked by the tests).
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


@dataclass(frozen=True)
class Conductivity:
    """``k(u) = floor + (1 - floor) * s^exponent``, ``s = clip((u - low_k) / span_k, 0, 1)``.

    Attributes:
        exponent: m, the power of the scaled temperature (0 < m).
        floor: k of the coldest material (0 < floor <= 1; 1 is the linear problem).
        low_k: temperature where ``s = 0``, kelvin.
        span_k: temperature range over which ``s`` goes from 0 to 1, kelvin.
    """

    exponent: float
    floor: float
    low_k: float
    span_k: float

    def __call__(self, fields: np.ndarray) -> np.ndarray:
        """``k`` of every node of ``fields`` (a new array, in (0, 1])."""
        scaled = (fields - self.low_k) * (1.0 / self.span_k)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        if self.exponent == round(self.exponent) and 1 <= self.exponent <= 8:
            # Repeated products: several times faster than np.power for small integer m.
            power = scaled.copy()
            for _ in range(int(self.exponent) - 1):
                power *= scaled
        else:
            power = np.power(scaled, self.exponent)
        power *= 1.0 - self.floor
        power += self.floor
        return power


def advance_nonlinear(
    fields: np.ndarray, ratio: float, substeps: int, conductivity: Conductivity
) -> None:
    """Run ``substeps`` conservative forward-Euler steps of ``u_t = alpha div(k(u) grad u)`` in
    place on ``(B, n, n)`` fields (boundary fixed).

    Args:
        fields: the batch of fields; only interior nodes change.
        ratio: ``r = alpha * dt / h^2``; since ``k <= 1``, ``r <= 0.25`` keeps every update a
            convex combination (maximum principle).
        substeps: steps to take.
        conductivity: ``k(u)``.
    """
    if ratio > 0.25 + 1e-12:
        raise ValueError(f"ratio: explicit scheme unstable for r={ratio} > 0.25")
    interior = fields[:, 1:-1, 1:-1]
    for _ in range(substeps):
        k = conductivity(fields)
        # x faces (B, n, n-1) between columns i and i+1; y faces (B, n-1, n) between rows.
        flux_x = k[:, :, 1:] + k[:, :, :-1]
        flux_x *= fields[:, :, 1:] - fields[:, :, :-1]
        flux_y = k[:, 1:, :] + k[:, :-1, :]
        flux_y *= fields[:, 1:, :] - fields[:, :-1, :]
        divergence = flux_x[:, 1:-1, 1:] - flux_x[:, 1:-1, :-1]
        divergence += flux_y[:, 1:, 1:-1]
        divergence -= flux_y[:, :-1, 1:-1]
        divergence *= 0.5 * ratio  # the face k is the mean of its two nodes' k
        interior += divergence


def solve(
    grid: HeatGrid,
    initial_temp: np.ndarray,
    boundary_temps: np.ndarray,
    conductivity: Conductivity | None = None,
) -> np.ndarray:
    """Simulate a batch; return ``(B, T, n, n)`` float64 snapshots at ``grid.snapshot_times``.

    ``conductivity`` ``None`` is the linear heat equation; otherwise the nonlinear one.
    """
    fields = initial_fields(grid, initial_temp, boundary_temps)
    return solve_fields(grid, fields, conductivity)


def solve_fields(
    grid: HeatGrid, fields: np.ndarray, conductivity: Conductivity | None = None
) -> np.ndarray:
    """Like :func:`solve` from arbitrary ``(B, n, n)`` initial fields (modified in place)."""
    ratio = grid.diffusivity * grid.dt / grid.spacing**2
    out = np.empty((fields.shape[0], grid.num_time_steps, *fields.shape[1:]))
    for step in range(grid.num_time_steps):
        if conductivity is None:
            advance(fields, ratio, grid.substeps_per_output)
        else:
            advance_nonlinear(fields, ratio, grid.substeps_per_output, conductivity)
        out[:, step] = fields
    return out
