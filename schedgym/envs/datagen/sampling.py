"""Parameter space of the heat-equation study: uniform draws, the region partition, scaling.

A simulation has five parameters: the initial interior temperature and the four boundary
temperatures (left, right, bottom, top). What makes a field hard to learn is its temperature
contrast: the max minus the min of the five temperatures, each scaled to [0, 1] over its range.
Large contrasts mean steep gradients: at the corners where a hot and a cold side meet, and in the
boundary layers while the interior is far from its sides' temperatures (the surrogate's error
correlates with this contrast better than with the boundary-only contrast). Under uniform
sampling the contrast is the range of five uniforms, Beta(4, 2) distributed with CDF
``F(r) = 5 r^4 - 4 r^5``. The partition's K regions are the bands between the quantiles
``F^{-1}(k / K)``, so each has probability 1/K under uniform sampling, and drawing a region
uniformly, then a point uniformly inside it, is a uniform draw over the whole space.
"""

from __future__ import annotations

import numpy as np

NUM_PARAMETERS = 5
INPUT_DIM = NUM_PARAMETERS + 1  # the parameters and t


def contrast_cdf(contrast: np.ndarray | float) -> np.ndarray:
    """CDF of the scaled temperature contrast under uniform sampling."""
    r = np.clip(np.asarray(contrast, dtype=np.float64), 0.0, 1.0)
    return 5.0 * r**4 - 4.0 * r**5


def contrast_quantile(probability: float) -> float:
    """``F^{-1}(probability)`` by bisection (F is increasing on [0, 1])."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if float(contrast_cdf(mid)) < probability:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def reflect_into_unit(values: np.ndarray) -> np.ndarray:
    """``values`` folded into [0, 1] by reflection at 0 and 1 (``-0.1 -> 0.1``, ``1.2 -> 0.8``):
    a Gaussian step reflected this way keeps its density's shape near the range's ends."""
    folded = np.mod(values, 2.0)
    return np.where(folded > 1.0, 2.0 - folded, folded)


class ParameterSpace:
    """Draws parameters uniformly within a contrast band and scales them for the surrogate.

    Args:
        initial_range_k: (low, high) of the initial temperature.
        boundary_range_k: (low, high) of each boundary temperature.
        num_regions: K, the contrast bands of the partition.

    Parameters are ``(B, 5)`` arrays: initial temperature, then left, right, bottom, top.
    """

    def __init__(
        self,
        initial_range_k: tuple[float, float],
        boundary_range_k: tuple[float, float],
        num_regions: int,
    ) -> None:
        self.initial_range_k = initial_range_k
        self.boundary_range_k = boundary_range_k
        self.num_regions = num_regions
        # (K + 1,) scaled-contrast band edges; the last is nudged past 1 so contrast 1 is inside.
        edges = [contrast_quantile(k / num_regions) for k in range(num_regions + 1)]
        edges[0], edges[-1] = 0.0, 1.0 + 1e-12
        self.region_edges = np.array(edges)
        low = min(initial_range_k[0], boundary_range_k[0])
        high = max(initial_range_k[1], boundary_range_k[1])
        # The field stays within the parameters' hull (maximum principle): scale it to [0, 1].
        self.field_low_k = low
        self.field_span_k = high - low

    def scaled(self, params: np.ndarray) -> np.ndarray:
        """``(B, 5)`` parameters scaled to [0, 1], each over its own range."""
        low, span = self._low_and_span()
        return (params - low) / span

    def _low_and_span(self) -> tuple[np.ndarray, np.ndarray]:
        """``(5,)`` lower ends and widths of the five parameters' ranges, kelvin."""
        low = np.array([self.initial_range_k[0]] + [self.boundary_range_k[0]] * 4)
        span = np.array(
            [self.initial_range_k[1] - self.initial_range_k[0]]
            + [self.boundary_range_k[1] - self.boundary_range_k[0]] * 4
        )
        return low, span

    def unscaled(self, scaled: np.ndarray) -> np.ndarray:
        """``(B, 5)`` parameters in kelvin from their [0, 1]-scaled values (inverse of
        :meth:`scaled`)."""
        low, span = self._low_and_span()
        return low + np.asarray(scaled, dtype=np.float64) * span

    def scaled_contrast(self, params: np.ndarray) -> np.ndarray:
        """``(B,)`` temperature contrast of ``(B, 5)`` parameters, scaled to [0, 1]."""
        scaled = self.scaled(params)
        return scaled.max(axis=1) - scaled.min(axis=1)

    def region_of(self, params: np.ndarray) -> np.ndarray:
        """``(B,)`` region index of each row of ``(B, 5)`` parameters."""
        band = np.searchsorted(self.region_edges, self.scaled_contrast(params), "right")
        return np.clip(band - 1, 0, self.num_regions - 1)

    def draw(
        self, rng: np.random.Generator, count: int, contrast_low: float, contrast_high: float
    ) -> np.ndarray:
        """``(count, 5)`` parameters (initial, left, right, bottom, top), uniform over the points
        whose scaled contrast is in ``[contrast_low, contrast_high)``, by rejection."""
        accept_probability = float(contrast_cdf(contrast_high) - contrast_cdf(contrast_low))
        out = np.empty((count, NUM_PARAMETERS))
        filled = 0
        while filled < count:
            # Enough candidates for the rest in one go, on average, plus a margin.
            batch = int(np.ceil((count - filled) / max(accept_probability, 1e-3) * 1.2)) + 4
            scaled = rng.random((batch, NUM_PARAMETERS))
            contrast = scaled.max(axis=1) - scaled.min(axis=1)
            keep = scaled[(contrast >= contrast_low) & (contrast < contrast_high)]
            take = min(keep.shape[0], count - filled)
            out[filled : filled + take] = keep[:take]
            filled += take
        out[:, 0] = self.initial_range_k[0] + out[:, 0] * (
            self.initial_range_k[1] - self.initial_range_k[0]
        )
        out[:, 1:] = self.boundary_range_k[0] + out[:, 1:] * (
            self.boundary_range_k[1] - self.boundary_range_k[0]
        )
        return out

    def draw_region(self, rng: np.random.Generator, region: int, count: int = 1) -> np.ndarray:
        """``(count, 5)`` parameters uniform within region ``region``."""
        return self.draw(rng, count, self.region_edges[region], self.region_edges[region + 1])

    def scale_inputs(self, params: np.ndarray, times: np.ndarray, final_time: float) -> np.ndarray:
        """Surrogate inputs ``(B * T, 6)`` float32: each parameter and t scaled to [-1, 1].

        Row ``b * T + j`` is simulation ``b`` at ``times[j]``.
        """
        batch, steps = params.shape[0], times.shape[0]
        inputs = np.empty((batch, steps, INPUT_DIM), np.float32)
        inputs[:, :, :NUM_PARAMETERS] = (2.0 * self.scaled(params) - 1.0)[:, None, :]
        inputs[:, :, NUM_PARAMETERS] = (2.0 * times / final_time - 1.0)[None, :]
        return inputs.reshape(batch * steps, INPUT_DIM)

    def scale_fields(self, fields: np.ndarray) -> np.ndarray:
        """``(B, T, n, n)`` kelvin -> surrogate targets ``(B * T, n * n)`` float32 in [0, 1]."""
        batch, steps = fields.shape[:2]
        scaled = (fields - self.field_low_k) / self.field_span_k
        return scaled.reshape(batch * steps, -1).astype(np.float32)
