"""The trimmed SoCDAG forward and the valid-actions distribution compute what the padded forward
and sb3-contrib's masked categorical computed: same logits (bit for bit on every action, the
masked ones included), values, log-probabilities, entropies and gradients."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution

import schedgym  # noqa: F401
from schedgym.agents.checkpoint import load_policy
from schedgym.agents.layouts import encoder_for, layout_of
from schedgym.agents.nn import masked_max, masked_mean
from schedgym.agents.registry import CHECKPOINT_DIR
from schedgym.agents.sb3 import ValidActionsDistribution, build_encoder
from schedgym.agents.soc import job_summaries
from tests.agents.soc_padded_reference import padded_forward


def _observations(presets, steps=200, every=10):
    """Observations (and masks) of SoCDAG episodes under random valid actions, batched."""
    observations, masks = [], []
    for seed, preset in enumerate(presets):
        env = gym.make("schedgym/SoCDAG-v0", preset=preset, disable_env_checker=True)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for step in range(steps):
            mask = env.unwrapped.action_masks()
            if step % every == 0:
                observations.append(obs)
                masks.append(mask)
            obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
            if terminated or truncated:
                break
    tensors = {
        key: torch.as_tensor(np.stack([o[key] for o in observations]), dtype=torch.float32)
        for key in observations[0]
    }
    return env, tensors, torch.as_tensor(np.stack(masks))


def test_trimmed_forward_equals_the_padded_forward_for_the_shipped_checkpoint():
    env, obs, _ = _observations(["heavy", "noisy", "medium"])
    network, _ = load_policy(CHECKPOINT_DIR / "SoCDAG-v0.zip", env)
    encoder = network.features_extractor.encoder
    with torch.no_grad():
        logits, value = encoder(obs)
        expected_logits, expected_value = padded_forward(encoder, obs)
        # One graph at a time too (the rollout's and the greedy policy's batch of one).
        one = {key: v[3:4] for key, v in obs.items()}
        alone, _ = encoder(one)
        expected_alone, _ = padded_forward(encoder, one)
    assert torch.equal(logits, expected_logits)
    assert torch.equal(value, expected_value)
    assert torch.equal(alone, expected_alone)


@pytest.mark.parametrize("seed", [0, 1])
def test_trimmed_forward_and_gradients_match_a_random_network(seed):
    """A fresh network (random weights, wider hidden) on the tiny and heavy presets; the
    gradients of the valid logits and the value reach every weight as the padded forward's."""
    torch.manual_seed(seed)
    for preset in ("tiny", "heavy"):
        env, obs, masks = _observations([preset], steps=120, every=6)
        encoder = build_encoder(
            encoder_for("SoCDAG"), env.observation_space, layout_of("SoCDAG", env), hidden=48
        )
        logits, value = encoder(obs)
        expected_logits, expected_value = padded_forward(encoder, obs)
        torch.testing.assert_close(logits[masks], expected_logits[masks], rtol=0, atol=1e-6)
        torch.testing.assert_close(value, expected_value, rtol=0, atol=1e-6)
        weights = torch.randn_like(logits)
        loss = (logits * weights)[masks].sum() + value.square().sum()
        grads = torch.autograd.grad(loss, list(encoder.parameters()))
        expected_loss = (expected_logits * weights)[masks].sum() + expected_value.square().sum()
        expected_grads = torch.autograd.grad(expected_loss, list(encoder.parameters()))
        for grad, expected in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tasks_per_job", [1, 7, 16, 17, 34, 48, 100])
def test_job_summaries_equal_the_padded_masked_mean_and_max_bit_for_bit(tasks_per_job):
    generator = torch.Generator().manual_seed(tasks_per_job)
    batch, jobs, hidden = 6, 5, 32
    mask = torch.rand(batch, jobs, tasks_per_job, generator=generator) < 0.6
    mask[0, 1] = False  # a job without tasks
    x = torch.randn(batch * jobs * tasks_per_job, hidden, generator=generator) * 30
    occupied = mask.reshape(-1).nonzero(as_tuple=True)[0]
    mean, largest, present = job_summaries(x[occupied], occupied, tasks_per_job, batch * jobs)
    padded = torch.zeros_like(x).index_copy(0, occupied, x[occupied])
    padded = padded.view(batch, jobs, tasks_per_job, hidden)
    job_mask = mask.unsqueeze(-1)
    assert torch.equal(mean, masked_mean(padded, job_mask, 2).view(-1, hidden))
    assert torch.equal(largest, masked_max(padded, job_mask, 2).view(-1, hidden))
    assert torch.equal(present, job_mask.any(2).view(-1))


def test_valid_actions_distribution_matches_sb3_contrib():
    generator = torch.Generator().manual_seed(0)
    batch, actions = 16, 300
    logits = (torch.randn(batch, actions, generator=generator) * 3).requires_grad_()
    masks = torch.rand(batch, actions, generator=generator) < 0.1
    masks[:, 0] = True
    masks[3] = False
    masks[3, 5] = True  # a row with one valid action
    # Masked logits as the encoders leave them: ordinary scores and NOT_READY_SCORE. (Large
    # positive ones would cost sb3-contrib precision: it normalises over every logit first.)
    with torch.no_grad():
        logits[~masks & (torch.rand(batch, actions, generator=generator) < 0.5)] = -1.0e4
    chosen = torch.stack(
        [torch.multinomial(row.float(), 1, generator=generator)[0] for row in masks]
    )
    reference = MaskableCategoricalDistribution(actions).proba_distribution(logits)
    reference.apply_masking(masks)
    valid = ValidActionsDistribution(actions).proba_distribution(logits)
    valid.apply_masking(masks.numpy())
    for name, args in (("log_prob", (chosen,)), ("entropy", ())):
        got, expected = getattr(valid, name)(*args), getattr(reference, name)(*args)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)
        (grad,) = torch.autograd.grad(got.sum(), logits, retain_graph=True)
        (expected_grad,) = torch.autograd.grad(expected.sum(), logits, retain_graph=True)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)
    assert torch.equal(valid.mode(), reference.mode())
    torch.manual_seed(0)
    samples = torch.stack([valid.sample() for _ in range(4000)])
    assert masks.gather(1, samples.T).all()
    # Sampled frequencies follow the probabilities (row 0's most likely action).
    probs = reference.distribution.probs[0].detach()
    best = int(probs.argmax())
    frequency = float((samples[:, 0] == best).float().mean())
    assert frequency == pytest.approx(float(probs[best]), abs=0.03)
