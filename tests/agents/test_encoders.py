"""Every encoder scores every action of its env, batched without cross-talk between graphs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym.agents.layouts import ENCODERS, encoder_for, layout_of
from schedgym.agents.sb3 import build_encoder

FAMILIES = sorted(ENCODERS)


def _tensors(observations):
    return {
        key: torch.as_tensor(np.stack([o[key] for o in observations]), dtype=torch.float32)
        for key in observations[0]
    }


def _two_states(env):
    """Two different observations of the env (the first, and one after a few valid steps)."""
    first, _ = env.reset(seed=3)
    obs = first
    for _ in range(5):
        valid = np.flatnonzero(env.unwrapped.action_masks())
        obs, _, terminated, truncated, _ = env.step(int(valid[-1]))
        if terminated or truncated:
            break
    return first, obs


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_scores_each_action_and_batches_independently(family):
    torch.manual_seed(0)
    env = gym.make(f"schedgym/{family}-v0", preset="tiny", disable_env_checker=True)
    a, b = _two_states(env)
    net = build_encoder(
        encoder_for(family), env.observation_space, layout_of(family, env.unwrapped)
    )
    with torch.no_grad():
        logits, value = net(_tensors([a, b]))
        alone_a, value_a = net(_tensors([a]))
        alone_b, _ = net(_tensors([b]))
    assert logits.shape == (2, env.action_space.n)
    assert value.shape == (2, net.value_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()
    # A graph's scores do not depend on which other graphs share its batch.
    torch.testing.assert_close(logits[0], alone_a[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], alone_b[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value[0], value_a[0], rtol=1e-5, atol=1e-5)


def test_soc_scores_valid_pairs_from_shared_weights():
    """Two ready tasks with identical features on two identical idle PEs get equal scores: the
    same weights score every candidate."""
    env = gym.make("schedgym/SoCDAG-v0", preset="tiny", disable_env_checker=True)
    obs, _ = env.reset(seed=0)
    net = build_encoder(encoder_for("SoCDAG"), env.observation_space, layout_of("SoCDAG", env))
    mask = env.unwrapped.action_masks()[:-1].reshape(-1, env.unwrapped.num_pes)
    with torch.no_grad():
        logits, _ = net(_tensors([obs]))
    scores = logits[0, :-1].reshape(mask.shape).numpy()
    pe_features = obs["pe_features"]
    node, *_ = np.flatnonzero(mask.any(1))
    pes = np.flatnonzero(mask[node])
    same = [
        (p, q) for p in pes for q in pes if p < q and np.array_equal(pe_features[p], pe_features[q])
    ]
    assert same, "tiny has identical idle PEs at the first decision"
    p, q = same[0]
    assert scores[node, p] == pytest.approx(scores[node, q], abs=1e-6)


def test_soc_remaining_work_matches_the_simulator():
    """The encoder's per-job remaining work, read from the observation alone, equals the sum the
    simulator's own state gives: fastest nominal time of unstarted tasks plus time left of running
    ones (in time_scale_us units)."""
    env = gym.make("schedgym/SoCDAG-v0", preset="heavy", disable_env_checker=True)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        valid = np.flatnonzero(env.unwrapped.action_masks())
        obs, *_ = env.step(int(rng.choice(valid)))
    net = build_encoder(encoder_for("SoCDAG"), env.observation_space, layout_of("SoCDAG", env))
    with torch.no_grad():
        tensors = _tensors([obs])
        work = net.remaining_work(tensors["node_features"], tensors["node_mask"] > 0.5)[0]
    sim = env.unwrapped.simulator
    scale = env.unwrapped.config.time_scale_us
    expected = np.zeros(sim.config.max_active_jobs)
    for node in range(sim.num_node_slots):
        slot = sim.node_job_slot[node]
        if sim.slot_job_id[slot] < 0 or sim.node_state[node] in (0, 4):  # empty or done
            continue
        if sim.node_state[node] == 3:  # running
            expected[slot] += max(sim.node_expected_finish_us[node] - sim.now_us, 0.0)
        else:
            expected[slot] += np.nanmin(sim.node_exec_us[node])
    assert expected.sum() > 0
    np.testing.assert_allclose(work.numpy(), expected / scale, rtol=1e-4, atol=1e-4)


def test_mesh_linear_path_scores_groups_by_their_latest_finish():
    """With the linear path alone (MLP head zeroed), a group's score is -gain x the latest finish
    time of its ranks: ByteScale's earliest-finishing-group rule."""
    env = gym.make("schedgym/MeshAssign-v0", preset="tiny", disable_env_checker=True)
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        valid = np.flatnonzero(env.unwrapped.action_masks())
        obs, *_ = env.step(int(valid[0]))
    net = build_encoder(
        encoder_for("MeshAssign"), env.observation_space, layout_of("MeshAssign", env),
        linear_gain=10.0,
    )  # fmt: skip
    with torch.no_grad():
        net.head.out.weight.zero_()
        net.group_linear.weight.copy_(torch.tensor([[-1.0, 0.0]]))
        logits, _ = net(_tensors([obs]))
    finish = obs["rank_features"][:, 0]
    assert finish.max() > 0
    ranks = len(finish)
    np.testing.assert_allclose(logits[0, :ranks].numpy(), -10.0 * finish, rtol=1e-5, atol=1e-5)
    pairs = finish.reshape(-1, 2).max(1)
    np.testing.assert_allclose(
        logits[0, ranks : ranks + ranks // 2].numpy(), -10.0 * pairs, rtol=1e-5, atol=1e-5
    )
