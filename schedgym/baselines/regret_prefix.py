"""Groupwise-regret portfolio for PrefixBatch (``regret-portfolio``).

Experts: FCFS with an LRU prefix cache and BatchLLM (``schedgym.baselines.prefix``, in their
registration order; ``random`` is not a heuristic). A decision epoch is a ``1 / chunks`` slice
of the batch's releases (an epoch ends when that many more requests have entered the engine).

Context at an epoch's start: the share of the batch released (phase), the prefix-sharing level
of what is pending (the share of the pending prompt tokens that lie in shared prefixes), and the
free KV memory. Groups (intersecting): everyone; phase early / middle / late (thirds of the
batch); sharing high (at least 30% of pending prompt tokens shared) / low; memory tight (under
20% of the blocks free) / loose.

Loss of a heuristic for an epoch: from the snapshot at the epoch's start, the heuristic orders
the rest of the batch; the loss is the batch's completion time (the env's return, negated). The
whole batch is submitted at time 0 with its declared output lengths (the env's observation
shows them, as BatchLLM assumes) and the cost model is deterministic, so a snapshot holds
nothing a policy does not know: nothing is redacted (:meth:`PrefixPortfolioAdapter.redact`).
Feedback is still applied only once reality has left the epoch.
"""

from __future__ import annotations

from typing import Any

from schedgym.baselines import prefix
from schedgym.baselines.online_learning import Group, GroupFamily
from schedgym.baselines.portfolio import GroupwisePortfolioPolicy, PortfolioAdapterBase
from schedgym.core.policy import Policy, register_policy
from schedgym.envs.prefixbatch.simulator import PrefixBatchSimulator

FAMILY = prefix.FAMILY

PORTFOLIO_EXPERTS: dict[str, type] = {
    "fcfs-lru": prefix.FCFSLRUPolicy,
    "batchllm": prefix.BatchLLMPolicy,
}

SHARING_HIGH = 0.3
MEMORY_TIGHT = 0.2


class PrefixPortfolioAdapter(PortfolioAdapterBase[PrefixBatchSimulator]):
    """Experts, contexts, groups and epochs of the PrefixBatch portfolio (see the module doc)."""

    def __init__(self, chunks: int = 8) -> None:
        if chunks < 1:
            raise ValueError(f"chunks: must be at least 1, got {chunks}")
        self.chunks = chunks

    def experts(self) -> dict[str, Policy]:
        return {name: factory() for name, factory in PORTFOLIO_EXPERTS.items()}

    def groups(self, env: Any) -> tuple[list[Group], list[GroupFamily]]:
        return (
            [
                Group("all", lambda c: True),
                Group("phase:early", lambda c: c["released"] < 1 / 3),
                Group("phase:middle", lambda c: 1 / 3 <= c["released"] < 2 / 3),
                Group("phase:late", lambda c: c["released"] >= 2 / 3),
                Group("sharing:high", lambda c: c["sharing"] >= SHARING_HIGH),
                Group("sharing:low", lambda c: c["sharing"] < SHARING_HIGH),
                Group("memory:tight", lambda c: c["free"] < MEMORY_TIGHT),
                Group("memory:loose", lambda c: c["free"] >= MEMORY_TIGHT),
            ],
            [],
        )

    def context(self, env: Any) -> dict[str, Any]:
        sim = self.simulator(env)
        pending_prompt = float(sim.group_pending_prompt.sum())
        shared = float((sim.group_pending * sim.batch.group_prefix_tokens).sum())
        return {
            "released": sim.released / len(sim.requests),
            "sharing": shared / pending_prompt if pending_prompt > 0 else 0.0,
            "free": sim.instance.free_blocks / sim.capacity_blocks,
        }

    def _chunk(self, sim: PrefixBatchSimulator) -> int:
        return min(sim.released * self.chunks // len(sim.requests), self.chunks - 1)

    def epoch_key(self, env: Any) -> Any:
        sim = self.simulator(env)
        return (id(sim), self._chunk(sim))

    def start_marker(self, env: Any) -> tuple[Any, Any]:
        return self._chunk(self.simulator(env)), None

    def feedback_ready(self, env: Any, start: Any, pending: Any) -> bool:
        sim = self.simulator(env)
        return sim.done or self._chunk(sim) != start

    def redact(self, clone: Any, reality: Any) -> None:
        """Nothing: the batch and its declared lengths are known at time 0, the cost model is
        deterministic."""

    def window_done(self, clone: Any, start: Any) -> bool:
        return clone.simulator.done

    def loss_state(self, clone: Any) -> Any:
        return None

    def window_loss(self, clone: Any, start_state: Any) -> float:
        return float(clone.simulator.now_s)


class PrefixPortfolioPolicy(GroupwisePortfolioPolicy):
    """``regret-portfolio`` on PrefixBatch (see :class:`PrefixPortfolioAdapter`)."""

    def __init__(self, seed: int = 0, selection: str = "mode", chunks: int = 8) -> None:
        super().__init__(PrefixPortfolioAdapter(chunks), seed=seed, selection=selection)


register_policy(
    FAMILY,
    "regret-portfolio",
    PrefixPortfolioPolicy,
    "Groupwise-regret portfolio over FCFS-LRU/BatchLLM",
)
