"""Checkpoints load without unpickling, act within the mask, and refuse other layouts."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO

import schedgym  # noqa: F401
from schedgym.agents.checkpoint import FORMAT, add_metadata, layout_record, load_policy
from schedgym.agents.layouts import encoder_for
from schedgym.agents.policy import GNNPolicy
from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs
from schedgym.core.errors import ConfigError
from schedgym.core.policy import make_policy, policy_spec
from schedgym.core.rollout import run_episode


def _save_untrained(path, env_id="schedgym/SoCDAG-v0", **kwargs):
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    record = layout_record(env_id.split("/")[1].split("-")[0], env)
    model = MaskablePPO(
        CandidateScoringPolicy,
        env,
        n_steps=16,
        batch_size=8,
        seed=0,
        policy_kwargs=scoring_policy_kwargs(
            encoder_for(record["family"]), record["layout"], {"hidden": 16}
        ),
    )
    model.save(path)
    add_metadata(
        path,
        {
            "format": FORMAT,
            "env_id": env_id,
            "encoder": encoder_for(record["family"]),
            "encoder_kwargs": {"hidden": 16},
            **record,
        },
    )
    return model


def test_checkpoint_round_trip_acts_within_mask(tmp_path):
    path = tmp_path / "agent.zip"
    model = _save_untrained(path, preset="tiny")
    env = gym.make("schedgym/SoCDAG-v0", preset="tiny", disable_env_checker=True)
    policy, meta = load_policy(path, env)
    assert meta["family"] == "SoCDAG"
    for key, value in model.policy.state_dict().items():
        assert np.array_equal(value.numpy(), policy.state_dict()[key].numpy()), key
    agent = make_policy("schedgym/SoCDAG-v0", str(path))
    assert isinstance(agent, GNNPolicy)
    obs, _ = env.reset(seed=1)
    agent.reset(env)
    for _ in range(30):
        mask = env.unwrapped.action_masks()
        action = agent.act(obs, env)
        assert mask[action]
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    # Greedy and deterministic: the same seed gives the same episode.
    short = gym.make("schedgym/SoCDAG-v0", preset="tiny", num_jobs=3, disable_env_checker=True)
    first = run_episode(short, agent, 5)
    second = run_episode(short, agent, 5)
    assert first.metrics == second.metrics


def test_loading_never_unpickles_sb3_data(tmp_path):
    """SB3's ``data`` member is cloudpickle; replace it with a pickle that would raise if run."""
    path = tmp_path / "agent.zip"
    _save_untrained(path, preset="tiny")
    poisoned = tmp_path / "poisoned.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(poisoned, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "data":
                data = b"\x80\x04cbuiltins\nexec\n(S'raise SystemExit(99)'\ntR."
            target.writestr(name, data)
    env = gym.make("schedgym/SoCDAG-v0", preset="tiny", disable_env_checker=True)
    policy, _ = load_policy(poisoned, env)
    assert policy is not None


def test_checkpoint_for_another_env_or_layout_is_refused(tmp_path):
    path = tmp_path / "agent.zip"
    _save_untrained(path, preset="tiny")
    other_env = gym.make("schedgym/PrefixBatch-v0", preset="tiny", disable_env_checker=True)
    with pytest.raises(ConfigError, match="trained on schedgym/SoCDAG-v0"):
        load_policy(path, other_env)
    other_layout = gym.make(
        "schedgym/SoCDAG-v0", preset="tiny", max_active_jobs=5, disable_env_checker=True
    )
    with pytest.raises(ConfigError, match="observation shapes"):
        load_policy(path, other_layout)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("policy.pth", b"")
    with pytest.raises(ConfigError, match="not a schedgym agent checkpoint"):
        load_policy(plain, other_env)
    with pytest.raises(ConfigError, match="no checkpoint at"):
        policy_spec("SoCDAG-v0", str(tmp_path / "missing.zip")).factory()


def test_listing_policies_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, schedgym\n"
        "from schedgym.core.policy import policy_names\n"
        "[policy_names(e) for e in ('SoCDAG-v0', 'LLMCluster-v0', 'PrefillChunk-v0')]\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_a_smaller_mesh_is_told_how_to_fit_a_checkpoint_and_then_fits(tmp_path):
    """MeshAssign's rank padding is a config field of its own (``max_ranks``): a checkpoint
    trained on 8 GPUs padded to 16 refuses the unpadded 8-GPU mesh, naming the field, and
    serves it padded the same way."""
    path = tmp_path / "mesh.zip"
    _save_untrained(path, "schedgym/MeshAssign-v0", preset="tiny", max_ranks=16)
    unpadded = gym.make("schedgym/MeshAssign-v0", preset="tiny", disable_env_checker=True)
    with pytest.raises(ConfigError, match=r"max_ranks=16 \(--set max_ranks=16\)"):
        load_policy(path, unpadded)
    padded = gym.make(
        "schedgym/MeshAssign-v0", preset="tiny", max_ranks=16, disable_env_checker=True
    )
    result = run_episode(padded, make_policy("schedgym/MeshAssign-v0", str(path)), seed=0)
    assert result.steps > 0 and result.metrics["step_time_s"] > 0
    # A larger env than the checkpoint cannot be padded down: no hint then.
    larger = gym.make(
        "schedgym/MeshAssign-v0", preset="tiny", num_gpus=32, disable_env_checker=True
    )
    with pytest.raises(ConfigError, match="observation shapes") as refused:
        load_policy(path, larger)
    assert "max_ranks" not in str(refused.value)
