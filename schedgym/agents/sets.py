"""Set encoders for the environments whose observation is a table of entities.

Each encodes its entity rows with one shared MLP, pools them (masked mean and max) into a
context, and scores every action from the parts that define it with one shared head, so the
same weights serve any number of entities up to the padding:

- LLMCluster-v0: dispatch to instance ``i`` (instance, pending request, context); no migration
  (context); migrate candidate ``c`` of source ``s`` to destination ``d`` (candidate joined with
  its source instance, destination instance).
- PrefixBatch-v0: release group ``g`` (group, context); run on (context).
- MeshAssign-v0: degree ``2^k`` on rank group ``slot`` (masked mean and max of the group's rank
  embeddings and raw rank features, degree, context).
- OnlineDataGen-v0: (acquisition, split, buffer), with acquisition a region (its embedding),
  uniform or loss-weighted (learned embeddings), plus the split's solver share and the buffer.
- PrefillChunk-v0 (a flat vector, not a set: its queue rows are pooled, the rest is an MLP):
  (mode, token budget) candidates from a mode embedding and the budget size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from schedgym.agents.nn import (
    CandidateEncoder,
    CandidateHead,
    box_shape,
    masked_max,
    masked_mean,
    mlp,
    symlog,
)


def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[masked mean, masked max]`` over the entity axis 1."""
    m = mask.unsqueeze(-1)
    return torch.cat([masked_mean(x, m, 1), masked_max(x, m, 1)], -1)


class LLMClusterEncoder(CandidateEncoder):
    """Dispatch, no-migration and (source candidate, destination) migration scores."""

    def __init__(
        self, observation_space: spaces.Dict, layout: dict[str, Any], hidden: int = 64
    ) -> None:
        super().__init__()
        self.num_instances, inst_dim = box_shape(observation_space, "instance_features")
        self.num_candidates, cand_dim = box_shape(observation_space, "candidate_features")
        self.per_instance = self.num_candidates // self.num_instances
        req_dim = box_shape(observation_space, "request_features")[0]
        glob_dim = box_shape(observation_space, "global_features")[0]
        n = self.num_instances
        self.num_actions = n + 1 + self.num_candidates * n
        self.value_dim = hidden
        self.inst_in = mlp(inst_dim, hidden, hidden)
        self.ctx = mlp(2 * hidden + req_dim + glob_dim, hidden, hidden)
        self.inst_out = mlp(2 * hidden, hidden, hidden)
        self.cand_in = mlp(cand_dim + hidden, hidden, hidden)
        self.dispatch_inst = nn.Linear(hidden, hidden)
        self.dispatch_ctx = nn.Linear(hidden + req_dim, hidden)
        self.dispatch_head = CandidateHead(hidden)
        self.stay_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), CandidateHead(hidden))
        self.move_src = nn.Linear(hidden, hidden)
        self.move_dst = nn.Linear(hidden, hidden)
        self.move_head = CandidateHead(hidden)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inst = self.inst_in(symlog(obs["instance_features"]))
        batch, n = inst.shape[0], self.num_instances
        ones = torch.ones(batch, n, device=inst.device)
        request = obs["request_features"]
        ctx = self.ctx(torch.cat([_pool(inst, ones), request, obs["global_features"]], -1))
        inst = self.inst_out(torch.cat([inst, ctx.unsqueeze(1).expand(-1, n, -1)], -1))
        dispatch = self.dispatch_head(
            self.dispatch_inst(inst) + self.dispatch_ctx(torch.cat([ctx, request], -1)).unsqueeze(1)
        )
        source = inst.repeat_interleave(self.per_instance, dim=1)
        cand = self.cand_in(torch.cat([symlog(obs["candidate_features"]), source], -1))
        move = self.move_head(
            self.move_src(cand).unsqueeze(2) + self.move_dst(inst).unsqueeze(1)
        ).reshape(batch, -1)
        stay = self.stay_head(ctx).unsqueeze(1)
        return torch.cat([dispatch, stay, move], 1), ctx


class PrefixBatchEncoder(CandidateEncoder):
    """Release-group scores plus a run-on score.

    Each group's row gets derived features that hundreds of near-equal groups need to be told
    apart: the log of its pending requests' decode ratio (mean output over mean prompt tokens,
    columns 2 and 1, the order BatchLLM releases groups in), whether that ratio is the highest
    among the groups with requests pending, and whether the group is partly released (some but
    not all of its requests pending). The group that is partly released, else the top-ratio one,
    is the natural next release; its row joins the context, so the run-on score sees what
    releasing it would cost. The raw row also reaches the score projection beside its
    embedding, because the embedding MLP's input LayerNorm rescales each row.

    With ``admission_gain`` the observation carries the ``prefix-admission`` augmentation
    (:mod:`schedgym.agents.augment`): each row gains its group's admission slack (capacity minus
    watermark minus the blocks the released requests would hold at their last token with its
    next request, over capacity), the context the two global projections, and the run-on score
    a linear path from the current group's slack, times the gain. BatchLLM releases the current
    group while that slack is non-negative and runs on otherwise: a sign test at a precision of
    a few blocks (a thousandth of capacity), which the gain lets Adam reach, as MeshAssign's
    ``linear_gain``. Without one (the default) the encoder is the one older checkpoints were
    trained with.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        layout: dict[str, Any],
        hidden: int = 64,
        admission_gain: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_groups, group_dim = box_shape(observation_space, "groups")
        glob_dim = box_shape(observation_space, "global_features")[0]
        self.num_actions = self.num_groups + 1
        self.value_dim = hidden
        self.admission_gain = float(admission_gain)
        row_dim = group_dim + 3
        if self.admission_gain > 0:
            row_dim += 1
            glob_dim += box_shape(observation_space, "admission_global")[0]
            if box_shape(observation_space, "admission_slack") != (self.num_groups,):
                raise ValueError("admission_slack: expected one entry per group")
        self.group_in = mlp(row_dim, hidden, hidden)
        self.ctx = mlp(2 * hidden + glob_dim + row_dim, hidden, hidden)
        self.group_proj = nn.Linear(hidden + row_dim, hidden)
        self.ctx_proj = nn.Linear(hidden, hidden)
        self.head = CandidateHead(hidden)
        self.run_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), CandidateHead(hidden))
        if self.admission_gain > 0:
            # Starts at zero: the clone begins as the encoder without the path.
            self.run_linear = nn.Linear(1, 1)
            nn.init.zeros_(self.run_linear.weight)
            nn.init.zeros_(self.run_linear.bias)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raw = obs["groups"]
        mask = obs["group_mask"] > 0.5
        pending = mask & (raw[..., 0] > 0)
        # Token means are in units of 1024 tokens: 1e-3 is about one token, so an empty group's
        # ratio is 0 rather than undefined.
        ratio = torch.log((raw[..., 2] + 1e-3) / (raw[..., 1] + 1e-3))
        top = ratio.masked_fill(~pending, -torch.inf).amax(1, keepdim=True)
        is_top = pending & (ratio >= top)
        partial = pending & (raw[..., 0] < 1)
        current = torch.where(partial.any(1, keepdim=True), partial, is_top)
        parts = [symlog(raw), ratio.unsqueeze(-1), is_top.unsqueeze(-1), partial.unsqueeze(-1)]
        glob = symlog(obs["global_features"])
        if self.admission_gain > 0:
            slack = obs["admission_slack"]
            # Slack is a fraction of capacity: times 10 so a request's share is not lost
            # beside order-one columns.
            parts.append(10.0 * slack.unsqueeze(-1))
            glob = torch.cat([glob, obs["admission_global"]], -1)
        rows = torch.cat(parts, -1)
        groups = self.group_in(rows)
        ctx = self.ctx(
            torch.cat([_pool(groups, mask), glob, masked_mean(rows, current.unsqueeze(-1), 1)], -1)
        )
        scores = self.head(
            self.group_proj(torch.cat([groups, rows], -1)) + self.ctx_proj(ctx).unsqueeze(1)
        )
        run = self.run_head(ctx)
        if self.admission_gain > 0:
            current_slack = masked_mean(slack.unsqueeze(-1), current.unsqueeze(-1), 1)
            run = run + self.admission_gain * self.run_linear(current_slack).squeeze(-1)
        return torch.cat([scores, run.unsqueeze(1)], 1), ctx


class MeshAssignEncoder(CandidateEncoder):
    """Scores of every (degree 2^k, rank group) placement of the current sequence."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        layout: dict[str, Any],
        hidden: int = 64,
        linear_gain: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_ranks, rank_dim = box_shape(observation_space, "rank_features")
        self.levels = int(math.log2(self.num_ranks)) + 1
        if 2 ** (self.levels - 1) != self.num_ranks:
            raise ValueError(f"rank_features: {self.num_ranks} ranks is not a power of two")
        seq_dim = sum(
            box_shape(observation_space, k)[0] for k in ("current", "remaining", "progress")
        )
        self.num_actions = 2 * self.num_ranks - 1
        self.value_dim = hidden
        self.rank_in = mlp(rank_dim, hidden, hidden)
        self.ctx = mlp(2 * hidden + seq_dim, hidden, hidden)
        self.group_proj = nn.Linear(2 * hidden + 2 * rank_dim + 1, hidden)
        self.ctx_proj = nn.Linear(hidden, hidden)
        self.head = CandidateHead(hidden)
        # With a gain, a linear path from each group's latest finish time (in units of the ideal
        # step, not squashed) and its degree to its score: ByteScale's balance scheduler (the
        # earliest-finishing group at the smallest fitting degree) is linear in them, and the
        # gain lets Adam reach score gaps of several units for finish gaps of a few hundredths.
        # Without one (the default) the encoder is the one older checkpoints were trained with.
        self.linear_gain = float(linear_gain)
        if self.linear_gain > 0:
            self.group_linear = nn.Linear(2, 1)
            nn.init.zeros_(self.group_linear.weight)
            nn.init.zeros_(self.group_linear.bias)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        finish = obs["rank_features"][..., 0]
        raw = symlog(obs["rank_features"])
        ranks = self.rank_in(raw)
        mask = obs["rank_mask"] > 0.5
        seq = torch.cat([obs["current"], obs["remaining"], symlog(obs["progress"])], -1)
        ctx = self.ctx(torch.cat([_pool(ranks, mask), seq], -1))
        batch = ranks.shape[0]
        parts = []
        linear_parts = []
        both = torch.cat([ranks, raw], -1)
        for level in range(self.levels):  # one vectorised pass per degree (log2 P of them)
            size = 2**level
            view = both.view(batch, self.num_ranks // size, size, -1)
            group_mask = mask.view(batch, self.num_ranks // size, size, 1)
            degree = torch.full(
                (batch, self.num_ranks // size, 1), level / self.levels, device=raw.device
            )
            parts.append(
                torch.cat(
                    [masked_mean(view, group_mask, 2), masked_max(view, group_mask, 2), degree], -1
                )
            )
            if self.linear_gain > 0:
                latest = masked_max(finish.view(batch, -1, size, 1), group_mask, 2)
                linear_parts.append(torch.cat([latest, degree], -1))
        groups = torch.cat(parts, 1)
        scores = self.head(self.group_proj(groups) + self.ctx_proj(ctx).unsqueeze(1))
        if self.linear_gain > 0:
            linear = self.group_linear(torch.cat(linear_parts, 1)).squeeze(-1)
            scores = scores + self.linear_gain * linear
        return scores, ctx


class OnlineDataGenEncoder(CandidateEncoder):
    """Scores of every (acquisition, solver split, buffer) triple."""

    def __init__(
        self, observation_space: spaces.Dict, layout: dict[str, Any], hidden: int = 64
    ) -> None:
        super().__init__()
        self.num_regions, region_dim = box_shape(observation_space, "region_features")
        glob_dim = box_shape(observation_space, "global_features")[0]
        fractions = torch.tensor(layout["solver_fractions"], dtype=torch.float32)
        self.num_splits = fractions.shape[0]
        self.num_buffers = int(layout["num_buffers"])
        self.register_buffer("fractions", fractions.view(-1, 1), persistent=False)
        self.num_actions = (self.num_regions + 2) * self.num_splits * self.num_buffers
        self.value_dim = hidden
        self.region_in = mlp(region_dim, hidden, hidden)
        self.ctx = mlp(2 * hidden + glob_dim, hidden, hidden)
        self.global_rules = nn.Parameter(torch.zeros(2, hidden))  # uniform, loss-weighted
        self.acq_proj = nn.Linear(hidden, hidden)
        self.split_emb = nn.Embedding(self.num_splits, hidden)
        self.split_value = nn.Linear(1, hidden)
        self.buffer_emb = nn.Embedding(self.num_buffers, hidden)
        self.ctx_proj = nn.Linear(hidden, hidden)
        self.head = CandidateHead(hidden)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        regions = self.region_in(symlog(obs["region_features"]))
        batch = regions.shape[0]
        ones = torch.ones(batch, self.num_regions, device=regions.device)
        ctx = self.ctx(torch.cat([_pool(regions, ones), symlog(obs["global_features"])], -1))
        acq = torch.cat([regions, self.global_rules.unsqueeze(0).expand(batch, -1, -1)], 1)
        split = self.split_emb.weight + self.split_value(self.fractions)
        summed = (
            self.acq_proj(acq)[:, :, None, None]
            + split[None, None, :, None]
            + self.buffer_emb.weight[None, None, None]
            + self.ctx_proj(ctx)[:, None, None, None]
        )
        return self.head(summed).reshape(batch, -1), ctx


class PrefillChunkEncoder(CandidateEncoder):
    """An MLP over the flat state (queue rows pooled), scoring each (mode, budget) action."""

    budgets: torch.Tensor  # (num_budgets, 1) token budgets / 4096, a non-persistent buffer

    def __init__(
        self, observation_space: spaces.Dict, layout: dict[str, Any], hidden: int = 64
    ) -> None:
        super().__init__()
        queue_dim = box_shape(observation_space, "queue")[1]
        state_dim = box_shape(observation_space, "state")[0]
        budgets = torch.tensor(layout["token_budgets"], dtype=torch.float32) / 4096.0
        self.num_modes = int(layout["num_modes"])
        self.register_buffer("budgets", budgets.view(-1, 1), persistent=False)
        self.num_actions = self.num_modes * budgets.shape[0]
        self.value_dim = hidden
        self.queue_in = mlp(queue_dim, hidden, hidden)
        self.ctx = mlp(2 * hidden + state_dim, hidden, hidden)
        self.mode_emb = nn.Embedding(self.num_modes, hidden)
        self.budget_value = nn.Linear(1, hidden)
        self.ctx_proj = nn.Linear(hidden, hidden)
        self.head = CandidateHead(hidden)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        queue_raw = obs["queue"]
        mask = queue_raw.abs().sum(-1) > 0  # zero rows pad
        queue = self.queue_in(symlog(queue_raw))
        ctx = self.ctx(torch.cat([_pool(queue, mask), symlog(obs["state"])], -1))
        budget = self.budget_value(symlog(self.budgets * 4.0))
        summed = (
            self.mode_emb.weight[None, :, None]
            + budget[None, None]
            + self.ctx_proj(ctx)[:, None, None]
        )
        return self.head(summed).reshape(ctx.shape[0], -1), ctx
