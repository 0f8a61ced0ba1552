"""SoCDAG-v0 encoder: a hierarchical DAG encoder in the spirit of DeepSoCS and Decima.

Message passing runs over the task DAG edges of all active jobs of a whole batch at once (the
padded graphs are flattened into one disjoint union, no Python loop over graphs), in both
directions: predecessors tell a task when its inputs arrive, successors tell it how much work
waits behind it. Job summaries (masked mean and max over each job's task slots) and a global
summary are joined to each task; PE embeddings are joined per (task, PE) candidate with the
pair's own features (expected time on that PE, whether it cannot run there, time until the PE
is free, the work its job still has). One shared head scores every candidate; ETF's claiming
rule (``claim_pass``) then decides, from those scores, which pairs are blocked by a better busy
PE and whether to wait.

A job's remaining work (expected time of its unfinished tasks on their fastest PE type, time
left for running ones) is summed in the encoder rather than left to the job summaries: means
and maxima cannot count, and under load the order of jobs by remaining work is what lowers the
mean latency most (shortest-remaining-work first, as in SRPT).

The work is trimmed to what is real (training's PPO update runs this over minibatches of 128
padded graphs of 408 task slots and 16 PEs): only occupied slots are embedded, only ready tasks'
pairs are scored and claimed (each graph's packed into a block as wide as the batch's most ready
tasks), and the logits are written into the padded action vector at the end. Every step keeps
the padded computation's operations and order, so the scores are the same to the bit (tested
against the padded forward in ``tests/agents/soc_padded_reference.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
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

PAIR_FEATURES = 4
# The linear path's inputs: the pair's expected finish (time until the PE is free plus the
# expected time on it) and its job's remaining work, in units of time_scale_us.
LINEAR_FEATURES = 2
# Gain on the linear path: a finish-time rule needs score gaps of several units for gaps of a
# tenth of a time unit, and Adam moves a weight by about the learning rate per step, so without
# a gain the path would need thousands of steps to reach that scale.
LINEAR_GAIN = 10.0
# Score of (task, PE) pairs whose task is not ready: never valid, removed by the action mask.
NOT_READY_SCORE = -1.0e4
# Logit margin between a pair the claim pass blocks and the busy pair that blocks it, and between
# the pair it starts and the wait (see claim_pass).
CLAIM_PENALTY = 1.0


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
        self.job_mlp = mlp(2 * hidden + 1, hidden, hidden)
        self.global_mlp = mlp(2 * hidden + global_dim + pe_dim, hidden, hidden)
        self.pe_mlp = mlp(pe_dim + hidden, hidden, hidden)
        self.node_proj = nn.Linear(3 * hidden, pair_hidden)
        self.pe_proj = nn.Linear(hidden, pair_hidden)
        self.pair_proj = nn.Linear(PAIR_FEATURES, pair_hidden)
        self.head = CandidateHead(pair_hidden)
        # A linear path from the pair's own features to its score, beside the MLP: finish-time
        # rules (ETF, EFT, a job priority added to the finish) are linear in these features, so
        # the network can express them exactly and learns them in a few steps.
        self.pair_linear = nn.Linear(LINEAR_FEATURES, 1)
        nn.init.zeros_(self.pair_linear.weight)
        nn.init.zeros_(self.pair_linear.bias)
        self.wait_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), CandidateHead(hidden))

    def remaining_work(self, node_raw: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """Per job slot (batch, num_jobs): expected time of its waiting and ready tasks on
        their fastest capable PE type plus the time left of its running tasks."""
        k = self.num_pe_types
        batch, n = node_mask.shape
        occupied = node_mask.reshape(-1).nonzero(as_tuple=True)[0]
        # Per task, for the occupied slots alone; the others add zero.
        raw = node_raw.reshape(batch * n, -1)[occupied]
        exec_time = raw[:, :k].masked_fill(raw[:, k : 2 * k] > 0.5, float("inf"))
        fastest = exec_time.amin(-1)
        fastest = torch.where(torch.isfinite(fastest), fastest, torch.zeros_like(fastest))
        unstarted = (raw[:, 2 * k] + raw[:, 2 * k + 1]) > 0.5
        running = raw[:, 2 * k + 2] > 0.5
        per_task = torch.where(unstarted, fastest, torch.zeros_like(fastest))
        per_task = torch.where(running, raw[:, 2 * k + 6], per_task)
        # Summed on the padded (batch, jobs, tasks) view: the order torch adds in there is the
        # one the checkpoints were trained with.
        padded = per_task.new_zeros(batch * n).index_copy(0, occupied, per_task)
        return padded.view(-1, self.num_jobs, self.tasks_per_job).sum(-1)

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        node_raw = obs["node_features"]
        batch = node_raw.shape[0]
        n, k, p = self.num_nodes, self.num_pe_types, self.num_pes
        node_mask = obs["node_mask"] > 0.5
        # Only occupied slots are encoded (a fraction of the padding under most loads); the
        # graphs of the batch form one disjoint union: slot ids offset by the graph's position.
        flat_mask = node_mask.reshape(-1)
        occupied = flat_mask.nonzero(as_tuple=True)[0]
        compact_id = torch.cumsum(flat_mask.long(), 0) - 1
        x = self.node_in(symlog(node_raw.reshape(batch * n, -1)[occupied]))
        offsets = (torch.arange(batch, device=x.device) * n).view(batch, 1, 1)
        edges = (obs["edge_index"].round().long() + offsets).permute(1, 0, 2).reshape(2, -1)
        edges = compact_id[edges[:, (obs["edge_mask"] > 0.5).reshape(-1)]]
        down_mean = MeanAggregation(edges[0], edges[1], x.shape[0], x.dtype)
        up_mean = MeanAggregation(edges[1], edges[0], x.shape[0], x.dtype)
        for down, up in zip(self.down, self.up, strict=True):
            x = x + torch.relu(sage(down, x, down_mean)) + torch.relu(sage(up, x, up_mean))
        # Job summaries (mean and max over each job's occupied slots).
        job_mean, job_max, job_present = job_summaries(
            x, occupied, self.tasks_per_job, batch * self.num_jobs
        )
        job_present = job_present.view(batch, self.num_jobs, 1)
        job_work = self.remaining_work(node_raw, node_mask)
        job = self.job_mlp(
            torch.cat(
                [
                    job_mean.view(batch, self.num_jobs, -1),
                    job_max.view(batch, self.num_jobs, -1),
                    symlog(job_work).unsqueeze(-1),
                ],
                -1,
            )
        )
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
        pes = self.pe_mlp(torch.cat([pe_raw, glob.unsqueeze(1).expand(-1, p, -1)], -1))
        # Only ready tasks can start, so only their (task, PE) pairs are scored (a few per
        # graph instead of every slot); every other slot's pairs would score NOT_READY_SCORE, so
        # the claim pass and the wait run over the ready tasks alone, each graph's packed to the
        # front of a (batch, most ready tasks in a graph, PEs) block in slot order.
        ready_batch, ready_node = (node_raw[..., 2 * k + 1] > 0.5).nonzero(as_tuple=True)
        ready_count = torch.bincount(ready_batch, minlength=batch)
        ready_rank = (
            torch.arange(ready_batch.shape[0], device=x.device)
            - (torch.cumsum(ready_count, 0) - ready_count)[ready_batch]
        )
        most_ready = max(int(ready_count.max()), 1) if batch else 1
        pe_type = obs["pe_features"][ready_batch][..., :k]
        ready_raw = node_raw[ready_batch, ready_node]
        # Pair features: the task's expected time on this PE's type (and whether it cannot run
        # there), and how long the PE is still busy.
        # (Products with the PE type's one-hot: exact in any order, and at a batch of one a
        # multiply and a sum cost a fraction of einsum's dispatch.)
        exec_time = (ready_raw[:, None, :k] * pe_type).sum(-1)
        cannot = (ready_raw[:, None, k : 2 * k] * pe_type).sum(-1)
        pe_free = obs["pe_features"][ready_batch][..., k + 1]
        ready_job = ready_node // self.tasks_per_job
        work = job_work[ready_batch, ready_job].unsqueeze(1)
        work = work.expand_as(exec_time)
        pair = torch.stack([symlog(exec_time), cannot, symlog(pe_free), symlog(work)], -1)
        linear = torch.stack([exec_time + pe_free, work], -1)
        node_ctx = torch.cat(
            [
                x[compact_id[ready_batch * n + ready_node]],
                job[ready_batch, ready_job],
                glob[ready_batch],
            ],
            -1,
        )
        summed = (
            self.node_proj(node_ctx).unsqueeze(1)
            + self.pe_proj(pes[ready_batch])
            + self.pair_proj(pair)
        )
        pair_scores = self.head(summed) + LINEAR_GAIN * self.pair_linear(linear).squeeze(-1)
        pair_scores = pair_scores.masked_fill(cannot > 0.5, NOT_READY_SCORE)
        scores = node_raw.new_full((batch, most_ready, p), NOT_READY_SCORE)
        scores = scores.index_put((ready_batch, ready_rank), pair_scores)
        busy = obs["pe_features"][..., k] > 0.5
        with torch.no_grad():
            blocker = claim_pass(scores, busy)
        handled = blocker >= 0
        # Claimed PEs: column 0 collects the tasks no PE holds (scatter needs an index for
        # every task), the PEs are columns 1 onwards.
        claimed = (
            scores.new_zeros(batch, p + 1).scatter_(
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
        # The ready tasks' rows go back to their slots, the wait to the last action; every other
        # pair keeps NOT_READY_SCORE (the action mask removes them).
        arange_pes = torch.arange(p, device=x.device)
        rows = torch.cat([ready_batch.repeat_interleave(p), torch.arange(batch, device=x.device)])
        columns = torch.cat(
            [
                (ready_node.unsqueeze(1) * p + arange_pes).reshape(-1),
                torch.full((batch,), n * p, dtype=torch.long, device=x.device),
            ]
        )
        values = torch.cat(
            [pairs[ready_batch, ready_rank].reshape(-1), wait + self.wait_head(glob)]
        )
        logits = node_raw.new_full((batch, n * p + 1), NOT_READY_SCORE)
        logits = logits.index_put_((rows, columns), values)
        return logits, glob


class MeanAggregation:
    """Mean over each node's in-neighbours along ``edges`` (``source`` -> ``target``), as
    torch-geometric's ``SAGEConv`` aggregates: summed with ``scatter_add_`` and divided by the
    in-degree clamped at one, with the degrees counted once for every layer that uses them."""

    def __init__(
        self, source: torch.Tensor, target: torch.Tensor, num_nodes: int, dtype: torch.dtype
    ) -> None:
        self.source = source
        self.target = target
        self.num_nodes = num_nodes
        count = torch.zeros(num_nodes, dtype=dtype, device=source.device)
        count.scatter_add_(0, target, torch.ones(target.shape[0], dtype=dtype, device=count.device))
        self.count = count.clamp(min=1).unsqueeze(1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        messages = x.index_select(0, self.source)
        index = self.target.unsqueeze(1).expand_as(messages)
        summed = x.new_zeros(self.num_nodes, x.shape[1]).scatter_add_(0, index, messages)
        return summed / self.count


def sage(conv: SAGEConv, x: torch.Tensor, mean: MeanAggregation) -> torch.Tensor:
    """``conv(x, edges)`` for a mean-aggregating ``SAGEConv`` with a root weight (the encoder's
    layers), without torch-geometric's per-call machinery, which costs more than the layer's
    arithmetic at these graph sizes; same operations in the same order, so the same numbers."""
    return conv.lin_l(mean(x)) + conv.lin_r(x)


# torch's CPU sum over a dimension that is not the innermost (``Tensor.sum`` of the padded
# (batch, jobs, tasks, hidden) view over tasks) adds the rows in runs of this many, each run from
# zero in order, then adds the runs in order and the leftover rows' sum last (``multi_row_sum``
# in ATen's SumKernel.cpp, for up to 16 x 16 rows). Summing each job's occupied rows the same way
# gives the padded sum's exact bits (the padding's zeros change nothing), so checkpoints score
# the same as they did on the padded view.
SUM_RUN = 16
MAX_EXACT_TASKS = SUM_RUN * SUM_RUN


def job_summaries(
    x: torch.Tensor, slot: torch.Tensor, tasks_per_job: int, num_jobs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per job (``num_jobs`` rows): mean and max of the rows of ``x`` at the flat task slots
    ``slot`` (sorted; slot ``s`` is task ``s % tasks_per_job`` of job ``s // tasks_per_job``),
    zeros for a job without rows, and whether it has any. The mean equals ``masked_mean`` over
    the padded view bit for bit (see ``SUM_RUN``)."""
    job = slot // tasks_per_job
    count = torch.bincount(job, minlength=num_jobs)
    runs = -(-tasks_per_job // SUM_RUN)
    run_sums = x.new_zeros(num_jobs * runs, x.shape[1]).index_add_(
        0, job * runs + (slot - job * tasks_per_job) // SUM_RUN, x
    )
    run_sums = run_sums.view(num_jobs, runs, -1)
    # Past MAX_EXACT_TASKS torch cascades the run sums a level deeper: the same sum, other bits.
    full_runs = tasks_per_job // SUM_RUN
    total = run_sums[:, 0]
    for run in range(1, full_runs):
        total = total + run_sums[:, run]
    if full_runs and runs > full_runs:
        total = total + run_sums[:, full_runs]
    mean = total / count.clamp(min=1).unsqueeze(1).to(x.dtype)
    index = job.unsqueeze(1).expand_as(x)
    largest = x.new_zeros(num_jobs, x.shape[1]).scatter_reduce(
        0, index, x, reduce="amax", include_self=False
    )
    return mean, largest, count > 0


def claim_pass(scores: torch.Tensor, busy: torch.Tensor) -> torch.Tensor:
    """ETF's claiming rule over learned pair scores: which busy PE holds each task back.

    ``scores`` (batch, tasks, PEs) holds every (ready task, capable PE) pair's score, with
    ``NOT_READY_SCORE`` elsewhere; ``busy`` (batch, PEs). Pairs are visited best first: a pair on
    a busy PE makes its task wait for that PE (the task is handled) and claims the PE; the first
    pair whose task and PE are both unblocked and whose PE is idle is the one to start. Returns,
    per task, the busy PE that handled it (-1 for none) at that point. Waiting for a better busy
    PE instead of taking a worse idle one, without letting one busy PE hold back every task, is
    what makes ETF and HEFT strong on a heterogeneous SoC; a per-pair score with one argmax
    cannot express it, so the network scores pairs and this pass (no gradient: it only selects)
    gives the scores ETF's decision structure. At most one PE is claimed per round, so it ends
    within PEs + 1 rounds.
    """
    # A short sequential loop of small steps: numpy's per-call cost is a fraction of torch's,
    # which dominated the pass at a rollout's batch of one. Rows leave the loop once they start
    # a pair (or have none left), so the later rounds touch only the rows still claiming.
    values = scores.detach().cpu().numpy()
    is_busy = busy.cpu().numpy().astype(bool)
    batch, tasks, num_pes = values.shape
    blocker = np.full((batch, tasks), -1, dtype=np.int64)
    claimed = np.zeros((batch, num_pes), dtype=bool)
    live = np.arange(batch)
    for _ in range(num_pes + 1):
        blocked = (blocker[live] >= 0)[:, :, None] | claimed[live][:, None, :]
        flat = np.where(blocked, np.float32(NOT_READY_SCORE), values[live]).reshape(live.size, -1)
        index = flat.argmax(1)
        best = flat[np.arange(live.size), index]
        node, pe = index // num_pes, index % num_pes
        on_busy = (best > NOT_READY_SCORE / 2) & is_busy[live, pe]
        live, node, pe = live[on_busy], node[on_busy], pe[on_busy]
        if live.size == 0:
            break
        blocker[live, node] = pe
        claimed[live, pe] = True
    return torch.from_numpy(blocker).to(scores.device)


def claimed_pes(blocker: torch.Tensor, num_pes: int) -> torch.Tensor:
    """(batch, PEs) mask of the PEs that hold a task, from ``claim_pass``'s per-task blocker."""
    # Column 0 collects the tasks no PE holds (scatter needs an index for every task); the PEs
    # are columns 1 onwards. Every write is a one, so repeated indices cannot overwrite a claim.
    ones = torch.ones(blocker.shape, device=blocker.device)
    counts = ones.new_zeros(blocker.shape[0], num_pes + 1).scatter_(1, blocker + 1, ones)
    return counts[:, 1:] > 0.5
