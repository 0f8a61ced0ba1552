"""PrefillChunk-v0: config validation, conservation (hypothesis), reward accounting, capacity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedgym  # noqa: F401
from schedgym.cli import main
from schedgym.core.errors import ConfigError, InvalidActionError
from schedgym.envs.prefillchunk.config import PrefillChunkConfig
from schedgym.envs.prefillchunk.env import PrefillChunkEnv
from schedgym.envs.prefillchunk.generator import PrefillChunkGenerator
from schedgym.leaderboard.capacity import env_episode_fn, search_capacity
from schedgym.serving.request import DECODE, FINISHED, PREFILL, WAITING
from schedgym.workloads.requests import RequestStream


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_rate_per_s", 0.0),
        ("request_rate_per_s", -1.0),
        ("num_requests", 0),
        ("model", "GPT-9"),
        ("gpu", "TPU"),
        ("tp", 3),
        ("engine_overhead", "fast"),
        ("arrival_process", "uniform"),
        ("lengths", "zipf"),
        ("token_budgets", [128, 256]),
        ("token_budgets", [0, 512, 256]),
        ("slo_tbt_s", 0.0),
        ("slo_penalty", -1.0),
        ("max_batch_requests", 0),
        ("gpu_memory_utilization", 1.5),
        ("queue_slots", 0),
        ("horizon_s", -2.0),
        ("invalid_action", "ignore"),
        ("prompt_tokens", 0),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PrefillChunkConfig(**{field: value})


def small_env(**overrides):
    base = {
        "num_requests": 20,
        "request_rate_per_s": 8.0,
        "lengths": "fixed",
        "prompt_tokens": 700,
        "output_tokens": 30,
        "max_batch_requests": 16,
    }
    base.update(overrides)
    return PrefillChunkEnv(**base)


def check_invariants(env: PrefillChunkEnv) -> None:
    sim = env.simulator
    inst = sim.instance
    arrived = sim.requests[: sim.requests_arrived]
    states = [r.state for r in arrived]
    # Every arrived request is finished, queued, prefilling or decoding: none is lost.
    assert states.count(FINISHED) == sim.requests_completed
    assert states.count(WAITING) == len(inst.waiting)
    assert states.count(PREFILL) == len(inst.prefilling)
    assert states.count(DECODE) == inst.num_decoding
    assert 0 <= inst.kv.used_blocks <= inst.kv.capacity_blocks
    generated = sum(inst.generated(r) for r in arrived)
    assert generated == inst.tokens_generated  # no token lost or produced twice
    for request in arrived:
        assert inst.generated(request) <= request.output_tokens


def run_random(env, seed, actions):
    env.reset(seed=seed)
    done = False
    index = 0
    while not done:
        mask = env.action_masks()
        wanted = actions[index % len(actions)]
        action = wanted if mask[wanted] else int(np.flatnonzero(mask)[0])
        index += 1
        _, _, terminated, truncated, _ = env.step(action)
        check_invariants(env)
        done = terminated or truncated
    sim = env.simulator
    assert sim.requests_completed == sim.config.num_requests
    assert all(r.generated == r.output_tokens for r in sim.finished)
    assert sim.instance.kv.used_blocks == 0
    return sim


# A squeezed KV cache (0.22 of the GPU: 741 blocks) and a burst of arrivals force preemptions.
SQUEEZED = {
    "gpu_memory_utilization": 0.22,
    "request_rate_per_s": 100.0,
    "prompt_tokens": 600,
    "output_tokens": 300,
}


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    actions=st.lists(st.integers(0, 20), min_size=5, max_size=400),
    squeezed=st.booleans(),
)
def test_conservation_under_random_compositions(seed, actions, squeezed):
    # run_random checks the invariants after every step and conservation at the end.
    sim = run_random(small_env(**(SQUEEZED if squeezed else {})), seed, actions)
    assert len(sim.finished) == sim.config.num_requests


def test_preemption_by_recompute_loses_no_token():
    env = small_env(**SQUEEZED)
    preemptions = sum(
        run_random(env, seed, list(range(21))).instance.preemptions for seed in range(3)
    )
    assert preemptions > 0


def test_reward_counts_tokens_and_late_tokens_like_the_tbt_samples():
    env = small_env(num_requests=40, prompt_tokens=1500, output_tokens=60, slo_tbt_s=0.05)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    total_reward = 0.0
    done = False
    while not done:
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, reward, terminated, truncated, info = env.step(action)
        total_reward += reward
        done = terminated or truncated
    sim = env.simulator
    late = int((sim.tbt_samples_s() > 0.05).sum())
    assert late > 0  # random compositions with 4096-token prefills break a 50 ms SLO
    assert sim.total_violations == late
    tokens = sim.instance.tokens_generated
    assert tokens == 40 * 60
    expected = (tokens - env.config.slo_penalty * late) / env.config.reward_scale_tokens
    assert math.isclose(total_reward, expected, rel_tol=1e-9)
    assert math.isclose(info["slo_violation_frac"], late / sim.tbt_samples_s().size)


def test_mask_and_modes():
    env = small_env()
    env.reset(seed=0)
    mask = env.action_masks()
    assert not mask[0]  # nothing decodes yet: decode-only is meaningless
    assert not mask[env.num_budgets] and not mask[2 * env.num_budgets]  # budget 0 off mode 0
    with pytest.raises(InvalidActionError):
        env.step(0)
    env.step(env.action_index(2, 4096))  # prefill-only: the first prompt whole
    sim = env.simulator
    assert sim.instance.num_decoding == 1 and sim.last_tokens == 1
    assert env.action_masks()[0]


def test_stall_free_chunks_bound_the_iteration():
    # One 4000-token prompt under a 512-token budget takes ceil(4000 / 512) = 8 iterations.
    env = small_env(num_requests=1, prompt_tokens=4000, output_tokens=5)
    env.reset(seed=0)
    steps = 0
    while env.simulator.instance.tokens_generated == 0:
        env.step(env.action_index(0, 512))
        steps += 1
    assert steps == 8


# ------------------------------------------------------------------------- capacity
def capacity(policy, slo, **overrides):
    run = env_episode_fn("schedgym/PrefillChunk-v0", policy, overrides=overrides)
    return search_capacity(run, slo, tolerance=0.03).capacity_qps


def test_paper_effect_reduced_scale_sarathi_capacity_twice_vllm():
    # Mistral-7B on an A100, ShareGPT lengths up to 4k tokens, 150 requests per probe.
    scale = {"num_requests": 150, "max_total_tokens": 4096}
    vllm = capacity("vllm", 0.1, **scale)
    sarathi = capacity("sarathi-512", 0.1, **scale)
    assert sarathi >= 2.0 * vllm > 0
    # At the relaxed SLO vLLM's long prefills are tolerated and the gap narrows.
    vllm_relaxed = capacity("vllm", 0.5, **scale)
    sarathi_relaxed = capacity("sarathi-512", 0.5, **scale)
    assert vllm_relaxed > vllm
    assert sarathi_relaxed / vllm_relaxed < sarathi / vllm


def test_capacity_command_json(capsys):
    code = main(
        [
            "capacity",
            "PrefillChunk-v0",
            "--policy",
            "sarathi-512",
            "--slo-tbt-p99",
            "0.1",
            "--preset",
            "tiny",
            "--max-qps",
            "64",
            "--tolerance",
            "0.1",
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["capacity_qps"] > 0
    assert payload["probes"] and all("feasible" in p for p in payload["probes"])


def test_capacity_command_rejects_bad_input(capsys):
    assert main(["capacity", "PrefillChunk-v0", "--policy", "nope", "--slo-tbt-p99", "0.1"]) == 2
    assert "policy" in capsys.readouterr().err
    code = main(
        [
            "capacity",
            "PrefillChunk-v0",
            "--policy",
            "vllm",
            "--slo-tbt-p99",
            "0.1",
            "--set",
            "request_rate_per_s=2",
        ]
    )
    assert code == 2


def test_budget_counting_decodes_leaves_the_prompts_the_rest():
    """Sarathi-Serve's token budget counts each running decode as one token: with
    ``budget_counts_decodes`` a stall-free 512 budget with d decodes prefills 512 - d tokens,
    without it 512 tokens ride on top of the decodes."""
    for counts, expected in ((True, lambda d: 512 - d), (False, lambda d: 512)):
        env = small_env(
            num_requests=6, prompt_tokens=3000, output_tokens=50, budget_counts_decodes=counts
        )
        env.reset(seed=0)
        sim = env.simulator
        checked = 0
        while not sim.done and checked < 5:
            inst = sim.instance
            decodes = inst.num_decoding
            remaining = sum(r.remaining_prefill for r in [*inst.prefilling, *inst.waiting])
            before = inst.prefill_tokens_computed
            env.step(env.action_index(0, 512))
            if decodes and remaining >= 512:
                assert inst.prefill_tokens_computed - before == expected(decodes)
                checked += 1
        assert checked > 0


def test_sarathi_policy_keeps_iterations_within_its_token_budget():
    """Without the env's decode counting, ``sarathi-512`` asks for the largest configured
    prefill budget within 512 minus the running decodes, so no iteration exceeds 512 tokens."""
    from schedgym.core.policy import make_policy

    env = small_env(num_requests=20, prompt_tokens=1500, output_tokens=200, request_rate_per_s=50.0)
    policy = make_policy("schedgym/PrefillChunk-v0", "sarathi-512")
    env.reset(seed=1)
    sim = env.simulator
    mixed = 0
    while not sim.done:
        inst = sim.instance
        decodes = inst.num_decoding
        before = inst.prefill_tokens_computed
        env.step(policy.act(None, env))
        prefilled = inst.prefill_tokens_computed - before
        assert prefilled + decodes <= 512
        mixed += decodes > 0 and prefilled > 0
    assert mixed > 0


def test_paper_setting_reduced_scale_sarathi_capacity_twice_vllm():
    """The paper's setting: Sarathi's token budget counts the decodes and the decode kernel is
    GQA-aware (FlashInfer, Sarathi-Serve's default backend); ShareGPT lengths up to the 8k
    context, 150 requests per probe. Sarathi-512 beats vLLM at least 2x at the strict SLO, and
    the gap narrows at the relaxed one."""
    paper = {"num_requests": 150, "budget_counts_decodes": True, "gqa_decode_attention": True}
    vllm = capacity("vllm", 0.1, **paper)
    sarathi = capacity("sarathi-512", 0.1, **paper)
    assert sarathi >= 2.0 * vllm > 0
    vllm_relaxed = capacity("vllm", 0.5, **paper)
    sarathi_relaxed = capacity("sarathi-512", 0.5, **paper)
    assert sarathi_relaxed / vllm_relaxed < sarathi / vllm


def test_recorded_stream_must_hold_num_requests():
    env = PrefillChunkEnv(preset="tiny")
    stream = PrefillChunkGenerator.generate(env.config, 0)
    short = RequestStream(
        stream.arrival_s[:-1],
        stream.prompt_tokens[:-1],
        stream.output_tokens[:-1],
        stream.priority[:-1],
    )
    with pytest.raises(ConfigError, match=r"instance: holds \d+ requests, the config's num_req"):
        env.reset(seed=0, options={"instance": short})
    env.reset(seed=1, options={"instance": stream})
    assert env.simulator.episode is stream
    assert [r.prompt_tokens for r in env.simulator.requests] == stream.prompt_tokens.tolist()
