"""Padded-graph observations.

SB3 cannot consume ``gymnasium.spaces.Graph``, so every graph observation is a ``Dict`` of
fixed-shape arrays: node features ``(max_nodes, node_feature_dim)`` float32, ``edge_index``
``(2, max_edges)`` int64 (PyG's source/target convention; padding entries point at node 0), and
``node_mask`` / ``edge_mask`` (1 for real entries). Maxima are set by the env's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from schedgym.core.errors import ConfigError


@dataclass(frozen=True)
class GraphLimits:
    """Padding limits of a graph observation."""

    max_nodes: int
    max_edges: int
    node_feature_dim: int

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_edges", "node_feature_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")


def graph_spaces(limits: GraphLimits, prefix: str = "") -> dict[str, spaces.Space]:
    """The four Dict entries of a padded graph, keys optionally prefixed (e.g. ``task_``)."""
    return {
        f"{prefix}node_features": spaces.Box(
            -np.inf, np.inf, (limits.max_nodes, limits.node_feature_dim), np.float32
        ),
        f"{prefix}edge_index": spaces.Box(0, limits.max_nodes - 1, (2, limits.max_edges), np.int64),
        f"{prefix}node_mask": spaces.MultiBinary(limits.max_nodes),
        f"{prefix}edge_mask": spaces.MultiBinary(limits.max_edges),
    }


def pad_graph(
    node_features: np.ndarray, edge_index: np.ndarray, limits: GraphLimits, prefix: str = ""
) -> dict[str, np.ndarray]:
    """Pad a graph with ``n`` nodes and ``e`` edges to the fixed limits.

    Args:
        node_features: ``(n, node_feature_dim)`` array.
        edge_index: ``(2, e)`` integer array of node indices in ``[0, n)``.
        limits: the padding limits.
        prefix: key prefix, as in :func:`graph_spaces`.

    Raises:
        ConfigError: if the graph exceeds the limits (the message names the limit to raise).
    """
    n, dim = node_features.shape
    e = edge_index.shape[1]
    if n > limits.max_nodes:
        raise ConfigError(f"max_nodes: graph has {n} nodes, limit is {limits.max_nodes}")
    if e > limits.max_edges:
        raise ConfigError(f"max_edges: graph has {e} edges, limit is {limits.max_edges}")
    if dim != limits.node_feature_dim:
        raise ConfigError(f"node_feature_dim: got {dim}, expected {limits.node_feature_dim}")
    features = np.zeros((limits.max_nodes, dim), np.float32)
    features[:n] = node_features
    edges = np.zeros((2, limits.max_edges), np.int64)
    edges[:, :e] = edge_index
    node_mask = np.zeros(limits.max_nodes, np.int8)
    node_mask[:n] = 1
    edge_mask = np.zeros(limits.max_edges, np.int8)
    edge_mask[:e] = 1
    return {
        f"{prefix}node_features": features,
        f"{prefix}edge_index": edges,
        f"{prefix}node_mask": node_mask,
        f"{prefix}edge_mask": edge_mask,
    }
