"""The SoCDAG encoder's forward as it was before it was trimmed to the ready tasks: the reference
the trimmed forward is tested against (same weights, same logits on every valid action)."""

from __future__ import annotations

import torch

from schedgym.agents.nn import masked_max, masked_mean, symlog
from schedgym.agents.soc import (
    CLAIM_PENALTY,
    LINEAR_GAIN,
    NOT_READY_SCORE,
    SoCDAGEncoder,
    claim_pass,
)


def padded_forward(
    self: SoCDAGEncoder, obs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's forward before trimming: dense (batch, slots, PEs) scores, the claim pass
    over every slot, job summaries over the padded (batch, jobs, tasks, hidden) view, and
    torch-geometric's SAGEConv called as a module."""
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
    job_work = self.remaining_work(node_raw, node_mask)
    job = self.job_mlp(
        torch.cat(
            [
                masked_mean(jobs_view, job_mask, 2),
                masked_max(jobs_view, job_mask, 2),
                symlog(job_work).unsqueeze(-1),
            ],
            -1,
        )
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
    work = job_work[ready_batch, ready_node // self.tasks_per_job].unsqueeze(1)
    work = work.expand_as(exec_time)
    pair = torch.stack([symlog(exec_time), cannot, symlog(pe_free), symlog(work)], -1)
    linear = torch.stack([exec_time + pe_free, work], -1)
    summed = (
        self.node_proj(node_ctx[ready_batch, ready_node]).unsqueeze(1)
        + self.pe_proj(pes[ready_batch])
        + self.pair_proj(pair)
    )
    pair_scores = self.head(summed) + LINEAR_GAIN * self.pair_linear(linear).squeeze(-1)
    pair_scores = pair_scores.masked_fill(cannot > 0.5, NOT_READY_SCORE)
    scores = node_raw.new_full((batch, n, self.num_pes), NOT_READY_SCORE)
    scores = scores.index_put((ready_batch, ready_node), pair_scores)
    busy = obs["pe_features"][..., k] > 0.5
    with torch.no_grad():
        blocker = claim_pass(scores, busy)
    handled = blocker >= 0
    # Claimed PEs: column 0 collects the tasks no PE holds (scatter needs an index for
    # every task), the PEs are columns 1 onwards.
    claimed = (
        scores.new_zeros(batch, self.num_pes + 1).scatter_(
            1, blocker + 1, torch.ones_like(scores[..., 0])
        )[:, 1:]
        > 0.5
    )
    # A handled task's pairs score below the busy pair that holds it (by their gap, so the
    # gradient reaches both: imitation can lift a pair above its blocker and unblock it).
    held_by = scores.gather(2, blocker.clamp(min=0).unsqueeze(2))
    gap = (held_by - scores).clamp(min=0.0) + CLAIM_PENALTY
    pairs = scores - torch.where(handled.unsqueeze(2), gap, torch.zeros_like(gap))
    # Claimed PEs are busy ones, so the busy mask already leaves them out.
    free = scores.masked_fill(handled.unsqueeze(2) | busy.unsqueeze(1), NOT_READY_SCORE)
    best_free = free.amax((1, 2))
    next_busy = scores.masked_fill(
        handled.unsqueeze(2) | (claimed | ~busy).unsqueeze(1), NOT_READY_SCORE
    ).amax((1, 2))
    # Waiting: when the pass found a pair to start, the wait scores below it, by its gap to
    # the best busy pair not yet considered (the one that would have to outscore it);
    # otherwise the wait scores as the best pair, above every blocked one.
    wait = torch.where(
        best_free > NOT_READY_SCORE / 2,
        torch.maximum(next_busy, best_free - CLAIM_PENALTY) - CLAIM_PENALTY,
        scores.amax((1, 2)),
    )
    logits = torch.cat([pairs.reshape(batch, -1), (wait + self.wait_head(glob)).unsqueeze(1)], 1)
    return logits, glob
