"""SoCDAG-v0 encoder: a hierarchical DAG encoder in the spirit of DeepSoCS and Decima.

Message passing runs over the task DAG edges of all active jobs of a whole batch at once (the
padded graphs are flattened into one disjoint union, no Python loop over graphs), in both
directions: predecessors tell a task when its inputs arrive, successors tell it how much work
waits behind it. Job summaries (masked mean and max over each job's task slots) and a global
summary are joined to each task; PE embeddings are joined per (task, PE) candidate with the
pair's own features (expected time on that PE, whether it cannot run there, time until the PE
is free). One shared head scores every candidate; the wait action is scored from the global
summary.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn
from torch_geometric.nn import SAGEConv

from schedgym.agents.nn import (
    CandidateEncoder,
    CandidateHead,
    box_shape,
    masked_max,
    masked_mean,
    mlp,
    symlog,
)

PAIR_FEATURES = 3
# Score of (task, PE) pairs whose task is not ready: never valid, removed by the action mask.
NOT_READY_SCORE = -1.0e4


class SoCDAGEncoder(CandidateEncoder):
    """Per-(task slot, PE) scores plus a wait score, and a value embedding."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        layout: dict[str, Any],
        hidden: int = 64,
        pair_hidden: int = 16,
        message_layers: int = 2,
    ) -> None:
        super().__init__()
        self.num_nodes, node_dim = box_shape(observation_space, "node_features")
        self.num_pes, pe_dim = box_shape(observation_space, "pe_features")
        global_dim = box_shape(observation_space, "global_features")[0]
        self.num_pe_types = int(layout["num_pe_types"])
        self.tasks_per_job = int(layout["tasks_per_job"])
        if self.num_nodes % self.tasks_per_job:
            raise ValueError(
                f"layout: tasks_per_job {self.tasks_per_job} does not divide {self.num_nodes}"
            )
        self.num_jobs = self.num_nodes // self.tasks_per_job
        self.num_actions = self.num_nodes * self.num_pes + 1
        self.value_dim = hidden
        self.node_in = mlp(node_dim, hidden, hidden)
        self.down = nn.ModuleList(SAGEConv(hidden, hidden) for _ in range(message_layers))
        self.up = nn.ModuleList(SAGEConv(hidden, hidden) for _ in range(message_layers))
        self.job_mlp = mlp(2 * hidden, hidden, hidden)
        self.global_mlp = mlp(2 * hidden + global_dim + pe_dim, hidden, hidden)
        self.pe_mlp = mlp(pe_dim + hidden, hidden, hidden)
        self.node_proj = nn.Linear(3 * hidden, pair_hidden)
        self.pe_proj = nn.Linear(hidden, pair_hidden)
        self.pair_proj = nn.Linear(PAIR_FEATURES, pair_hidden)
        self.head = CandidateHead(pair_hidden)
        self.wait_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), CandidateHead(hidden))
        self.no_busy_wait = nn.Parameter(torch.zeros(()))

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        node_raw = obs["node_features"]
        batch = node_raw.shape[0]
        n, k = self.num_nodes, self.num_pe_types
        node_mask = obs["node_mask"] > 0.5
        # Only occupied slots are encoded (a fraction of the padding under most loads); the
        # graphs of the batch form one disjoint union: slot ids offset by the graph's position.
        occupied = node_mask.reshape(-1).nonzero(as_tuple=True)[0]
        compact_id = torch.cumsum(node_mask.reshape(-1).long(), 0) - 1
        x = self.node_in(symlog(node_raw.reshape(batch * n, -1)[occupied]))
        offsets = (torch.arange(batch, device=x.device) * n).view(batch, 1, 1)
        edges = (obs["edge_index"].round().long() + offsets).permute(1, 0, 2).reshape(2, -1)
        edges = compact_id[edges[:, (obs["edge_mask"] > 0.5).reshape(-1)]]
        reverse = edges.flip(0)
        for down, up in zip(self.down, self.up, strict=True):
            x = x + torch.relu(down(x, edges)) + torch.relu(up(x, reverse))
        x = x.new_zeros(batch * n, x.shape[1]).index_copy(0, occupied, x)
        nodes = x.view(batch, n, -1)
        jobs_view = nodes.view(batch, self.num_jobs, self.tasks_per_job, -1)
        job_mask = node_mask.view(batch, self.num_jobs, self.tasks_per_job, 1)
        job = self.job_mlp(
            torch.cat([masked_mean(jobs_view, job_mask, 2), masked_max(jobs_view, job_mask, 2)], -1)
        )
        job_present = job_mask.any(2)
        pe_raw = symlog(obs["pe_features"])
        glob = self.global_mlp(
            torch.cat(
                [
                    masked_mean(job, job_present, 1),
                    masked_max(job, job_present, 1),
                    symlog(obs["global_features"]),
                    pe_raw.mean(1),
                ],
                -1,
            )
        )
        pes = self.pe_mlp(torch.cat([pe_raw, glob.unsqueeze(1).expand(-1, self.num_pes, -1)], -1))
        job_of_node = job.unsqueeze(2).expand(-1, -1, self.tasks_per_job, -1).reshape(batch, n, -1)
        node_ctx = torch.cat([nodes, job_of_node, glob.unsqueeze(1).expand(-1, n, -1)], -1)
        # Only ready tasks can start, so only their (task, PE) pairs are scored (a few per
        # graph instead of every slot); the others get a constant the action mask removes.
        ready_batch, ready_node = (node_raw[..., 2 * k + 1] > 0.5).nonzero(as_tuple=True)
        pe_type = obs["pe_features"][ready_batch][..., :k]
        ready_raw = node_raw[ready_batch, ready_node]
        # Pair features: the task's expected time on this PE's type (and whether it cannot run
        # there), and how long the PE is still busy.
        exec_time = torch.einsum("mk,mpk->mp", ready_raw[:, :k], pe_type)
        cannot = torch.einsum("mk,mpk->mp", ready_raw[:, k : 2 * k], pe_type)
        pe_free = obs["pe_features"][ready_batch][..., k + 1]
        pair = torch.stack([symlog(exec_time), cannot, symlog(pe_free)], -1)
        summed = (
            self.node_proj(node_ctx[ready_batch, ready_node]).unsqueeze(1)
            + self.pe_proj(pes[ready_batch])
            + self.pair_proj(pair)
        )
        pair_scores = self.head(summed)
        scores = node_raw.new_full((batch, n, self.num_pes), NOT_READY_SCORE)
        scores = scores.index_put((ready_batch, ready_node), pair_scores)
        scores = scores.reshape(batch, n * self.num_pes)
        # Waiting pays off when the best pair is on a PE still busy (HEFT's insertion logic):
        # the wait score is the best (ready task, busy PE) score, plus a global correction.
        busy = (obs["pe_features"][ready_batch][..., k] > 0.5) & (cannot < 0.5)
        busy_best = pair_scores.masked_fill(~busy, NOT_READY_SCORE).amax(1)
        best_busy = node_raw.new_full((batch,), NOT_READY_SCORE).scatter_reduce(
            0, ready_batch, busy_best, reduce="amax"
        )
        wait = torch.where(best_busy > NOT_READY_SCORE / 2, best_busy, self.no_busy_wait)
        logits = torch.cat([scores, (wait + self.wait_head(glob)).unsqueeze(1)], 1)
        return logits, glob
