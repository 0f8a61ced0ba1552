"""PrefillChunk baselines: each composes iterations the way its system does."""

from __future__ import annotations

import pytest

import schedgym  # noqa: F401
from schedgym.core.policy import make_policy, policy_names
from schedgym.core.rollout import run_episode
from schedgym.envs.prefillchunk.env import PrefillChunkEnv
from schedgym.leaderboard.policies import is_baseline

ENV_ID = "schedgym/PrefillChunk-v0"
# The shipped agent (gnn) registers too, before or after the baselines depending on imports.
BASELINES = [name for name in policy_names(ENV_ID) if is_baseline(ENV_ID, name)]


def make_env():
    return PrefillChunkEnv(
        num_requests=24,
        request_rate_per_s=6.0,
        lengths="fixed",
        prompt_tokens=900,
        output_tokens=20,
    )


def trace(policy_name):
    """Per iteration: (decodes in the batch, prefill tokens, running before) under a policy."""
    env = make_env()
    policy = make_policy(ENV_ID, policy_name)
    obs, _ = env.reset(seed=5)
    policy.reset(env)
    rows = []
    done = False
    while not done:
        inst = env.simulator.instance
        running_before = inst.num_running()
        computed = inst.prefill_tokens_computed
        _, _, terminated, truncated, _ = env.step(policy.act(obs, env))
        rows.append(
            (
                env.simulator.composer.last_decodes,
                inst.prefill_tokens_computed - computed,
                running_before,
            )
        )
        done = terminated or truncated
    assert env.simulator.requests_completed == 24
    return rows


def test_registered_names():
    assert BASELINES[:6] == [
        "vllm",
        "orca",
        "fastertransformer",
        "sarathi-512",
        "sarathi-2048",
        "random",
    ]


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_finishes_every_request(name):
    result = run_episode(make_env(), make_policy(ENV_ID, name), seed=1)
    assert result.metrics["requests_completed"] == 24


def test_vllm_pauses_decodes_for_prefills():
    rows = trace("vllm")
    assert any(prefill for _, prefill, _ in rows)
    assert all(decodes == 0 for decodes, prefill, _ in rows if prefill)


def test_orca_mixes_whole_prompts_with_decodes():
    rows = trace("orca")
    assert any(decodes and prefill for decodes, prefill, _ in rows)
    assert all(prefill % 900 == 0 for _, prefill, _ in rows)  # whole prompts only


def test_sarathi_chunks_within_its_budget():
    """Sarathi's budget bounds the iteration's tokens, each running decode counting one; the
    budget is used whole when nothing decodes (900-token prompts fill 512)."""
    for name, budget in (("sarathi-512", 512), ("sarathi-2048", 2048)):
        rows = trace(name)
        assert max(decodes + prefill for decodes, prefill, _ in rows) <= budget
        assert any(decodes and prefill for decodes, prefill, _ in rows)
    rows = trace("sarathi-512")
    assert max(prefill for decodes, prefill, _ in rows if decodes == 0) == 512


def test_fastertransformer_admits_only_into_an_empty_replica():
    rows = trace("fastertransformer")
    starts = [i for i, (_, prefill, running) in enumerate(rows) if prefill and running == 0]
    assert starts
    # A batch's prompts are prefilled back to back, then nothing new starts until it is empty.
    decoded_since_empty = False
    for decodes, prefill, running in rows:
        if running == 0:
            decoded_since_empty = False
        if prefill:
            assert decodes == 0
            assert not decoded_since_empty  # no admission once the batch has started decoding
        if decodes:
            decoded_since_empty = True


def test_random_policy_is_seeded():
    first = run_episode(make_env(), make_policy(ENV_ID, "random"), seed=2, record_actions=True)
    second = run_episode(make_env(), make_policy(ENV_ID, "random"), seed=2, record_actions=True)
    assert first.actions == second.actions
