"""Groupwise-regret portfolio for MeshAssign (``regret-portfolio``).

Experts: ByteScale, balanced-CP, token-balanced and the static mesh (``schedgym.baselines.mesh``;
ByteScale first, so it is the choice while nothing has been learnt). A decision epoch is a
``1 / chunks_per_batch`` slice of a global batch's sequences (placed longest first). Context: the
length of the epoch's first sequence against the per-rank capacity, and the batch's skew. Groups:
everyone; sequences that need context parallelism (longer than a rank holds) / that do not;
skewed batches (longest over mean above 8) / even ones.

Loss of a heuristic for an epoch: from the snapshot at the epoch's start, the heuristic places
the rest of the batch; the loss is the resulting step time over the ideal step time (minus the
env's reward). The batch's lengths are known when the step starts and the cost model is
deterministic, so nothing is redacted; feedback is still applied only once reality has left
the epoch.
"""

from __future__ import annotations

from typing import Any

from schedgym.baselines import mesh
from schedgym.baselines.online_learning import Group, GroupFamily
from schedgym.baselines.portfolio import GroupwisePortfolioPolicy, PortfolioAdapterBase
from schedgym.core.policy import Policy, register_policy
from schedgym.envs.mesh.simulator import MeshSimulator

FAMILY = mesh.FAMILY

PORTFOLIO_EXPERTS: dict[str, type] = {
    "bytescale": mesh.ByteScalePolicy,
    "balanced-cp": mesh.BalancedCPPolicy,
    "token-balanced": mesh.TokenBalancedPolicy,
    "static": mesh.StaticMeshPolicy,
}

SKEW_THRESHOLD = 8.0


class MeshPortfolioAdapter(PortfolioAdapterBase[MeshSimulator]):
    """Experts, contexts, groups and epochs of the MeshAssign portfolio (see the module doc)."""

    def __init__(self, chunks_per_batch: int = 8) -> None:
        if chunks_per_batch < 1:
            raise ValueError(f"chunks_per_batch: must be at least 1, got {chunks_per_batch}")
        self.chunks_per_batch = chunks_per_batch

    def experts(self) -> dict[str, Policy]:
        return {name: factory() for name, factory in PORTFOLIO_EXPERTS.items()}

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        return (
            [
                Group("all", lambda c: True),
                Group("seq:needs-cp", lambda c: c["seq_over_capacity"] > 1.0),
                Group("seq:fits-rank", lambda c: c["seq_over_capacity"] <= 1.0),
                Group("batch:skewed", lambda c: c["skew"] > SKEW_THRESHOLD),
                Group("batch:even", lambda c: c["skew"] <= SKEW_THRESHOLD),
            ],
            [],
        )

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        lengths = sim.batch_lengths
        return {
            "seq_over_capacity": sim.current_tokens / sim.capacity_tokens,
            "skew": float(lengths.max() / lengths.mean()),
        }

    def _chunk(self, sim: MeshSimulator) -> int:
        return sim.cursor * self.chunks_per_batch // max(sim.batch_size, 1)

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return (id(sim), sim.batch_index, self._chunk(sim))

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        sim = self.simulator(env)
        return (sim.batch_index, self._chunk(sim)), None

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        sim = self.simulator(env)
        return sim.done or (sim.batch_index, self._chunk(sim)) != start

    def redact(self, clone: Any, reality: Any) -> None:
        """Nothing: the batch is known at its start and the cost model is deterministic."""

    def window_done(self, clone: Any, start: Any) -> bool:
        sim = clone.simulator
        return sim.done or sim.batch_index != start[0]

    def loss_state(self, clone: Any) -> Any:
        return len(clone.simulator.results)

    def window_loss(self, clone: Any, start_state: Any) -> float:
        result = clone.simulator.results[start_state]
        return float(result.step_time_s / result.ideal_step_s)


class MeshPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on MeshAssign (see :class:`MeshPortfolioAdapter`)."""

    def __init__(self, seed: int = 0, selection: str = "mode", chunks_per_batch: int = 8) -> None:
        super().__init__(MeshPortfolioAdapter(chunks_per_batch), seed=seed, selection=selection)


register_policy(
    FAMILY,
    "regret-portfolio",
    MeshPortfolioPolicy,
    "Groupwise-regret portfolio over ByteScale/balanced-CP/token-balanced/static",
)
