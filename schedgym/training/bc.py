"""Behaviour cloning warm start: imitate a heuristic's actions (and fit the value head to its
discounted returns) before PPO, so RL starts at the heuristic's level instead of at random.

Traces come from the training scenarios on training seeds (never validation or test seeds).
Steps are subsampled uniformly per episode so a long episode does not fill memory.

Plain cloning only sees the states the teacher visits; one wrong choice puts the clone in states
it never saw, and errors compound. ``bc_dagger_rounds`` adds DAgger (Ross, Gordon, Bagnell,
AISTATS 2011): each round runs the current network, labels the states *it* visits with the
teacher's action, adds them to the data and clones again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from schedgym.core.errors import ConfigError
from schedgym.training.envs import make_scenario_env, scheduling_env
from schedgym.training.teachers import labels_any_state, make_teacher, state_only_teachers


def collect_traces(
    env_id: str,
    scenarios: list[dict[str, Any]],
    policy_name: str,
    episodes: int,
    steps_per_episode: int,
    gamma: float,
    seed: int,
    actor: Any = None,
    augmentation: str | None = None,
) -> dict[str, Any]:
    """Observations, masks, actions and discounted returns of ``policy_name`` (subsampled).

    With ``actor`` (a Policy), the actor chooses the actions that are taken and the teacher
    only labels each state (DAgger); the returns are then the actor's. The observations are
    augmented by ``augmentation``, as the network is trained on them."""
    rng = np.random.default_rng(seed)
    observations: dict[str, list[np.ndarray]] = {}
    masks: list[np.ndarray] = []
    actions: list[int] = []
    returns: list[float] = []
    policy = make_teacher(env_id, policy_name)
    for episode in range(episodes):
        env = make_scenario_env(env_id, scenarios[episode % len(scenarios)], augmentation)
        obs, _ = env.reset(seed=seed + episode)
        policy.reset(env)
        if actor is not None:
            actor.reset(env)
        steps: list[tuple[dict[str, np.ndarray], np.ndarray, int]] = []
        rewards: list[float] = []
        done = False
        while not done:
            mask = np.asarray(scheduling_env(env).action_masks(), dtype=bool)
            action = int(policy.act(obs, env))
            steps.append((obs, mask, action))
            if actor is not None:
                action = int(actor.act(obs, env))
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        env.close()
        discounted = np.zeros(len(rewards))
        running = 0.0
        for t in range(len(rewards) - 1, -1, -1):
            running = rewards[t] + gamma * running
            discounted[t] = running
        keep = np.sort(rng.permutation(len(steps))[:steps_per_episode])
        for t in keep.tolist():
            step_obs, mask, action = steps[t]
            for key, value in step_obs.items():
                observations.setdefault(key, []).append(np.asarray(value))
            masks.append(mask)
            actions.append(action)
            returns.append(float(discounted[t]))
    return {
        "observations": {k: np.stack(v) for k, v in observations.items()},
        "masks": np.stack(masks),
        "actions": np.asarray(actions, np.int64),
        "returns": np.asarray(returns, np.float32),
    }


def merge_traces(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The samples of both trace sets, ``first``'s then ``second``'s."""
    return {
        "observations": {
            k: np.concatenate([v, second["observations"][k]])
            for k, v in first["observations"].items()
        },
        **{k: np.concatenate([first[k], second[k]]) for k in ("masks", "actions", "returns")},
    }


def behaviour_clone(
    policy: Any,
    traces: dict[str, Any],
    epochs: int,
    batch_size: int,
    seed: int,
    learning_rate: float = 1e-3,
    log: Any = None,
) -> dict[str, float]:
    """Train ``policy`` (a CandidateScoringPolicy) on ``traces``; returns the final accuracy
    and losses. Cross-entropy over the masked actions plus 0.5 x value MSE in units of the
    returns' variance: raw returns run to hundreds, and their squared error would swamp the
    imitation gradient under the shared norm clipping (the policy stayed at the majority action)."""
    generator = torch.Generator().manual_seed(seed)
    count = len(traces["actions"])
    obs = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in traces["observations"].items()}
    masks = torch.as_tensor(traces["masks"])
    actions = torch.as_tensor(traces["actions"])
    returns = torch.as_tensor(traces["returns"])
    return_scale = float(returns.var()) if count > 1 else 1.0
    return_scale = return_scale if return_scale > 1e-8 else 1.0
    policy.set_training_mode(True)
    # Imitation is supervised and stable: a larger step than PPO's; PPO's rate comes back after.
    previous_rates = [group["lr"] for group in policy.optimizer.param_groups]
    for group in policy.optimizer.param_groups:
        group["lr"] = learning_rate
    stats = {"bc_accuracy": 0.0, "bc_policy_loss": 0.0, "bc_value_loss": 0.0}
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        correct = 0
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            batch_obs = {k: v[index] for k, v in obs.items()}
            values, log_prob, _ = policy.evaluate_actions(
                batch_obs, actions[index], action_masks=masks[index].numpy()
            )
            policy_loss = -log_prob.mean()
            value_loss = torch.nn.functional.mse_loss(values.flatten(), returns[index])
            loss = policy_loss + 0.5 * value_loss / return_scale
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()
            with torch.no_grad():
                logits = policy.action_logits(batch_obs).masked_fill(~masks[index], -torch.inf)
                correct += int((logits.argmax(1) == actions[index]).sum())
            stats["bc_policy_loss"] = float(policy_loss.detach())
            stats["bc_value_loss"] = float(value_loss.detach())
        stats["bc_accuracy"] = correct / count
        if log is not None:
            log(f"behaviour cloning epoch {epoch + 1}/{epochs}: accuracy {correct / count:.3f}")
    for group, rate in zip(policy.optimizer.param_groups, previous_rates, strict=True):
        group["lr"] = rate
    policy.set_training_mode(False)
    return stats


def warm_start(
    policy: Any,
    env_id: str,
    scenarios: list[dict[str, Any]],
    params: dict[str, Any],
    seed: int,
    log: Any = None,
) -> dict[str, Any]:
    """Clone ``params["bc_policy"]`` into ``policy``, then ``bc_dagger_rounds`` DAgger rounds;
    returns what the checkpoint metadata records about it. ``seed`` is a training seed; each
    round's episodes use the seeds after the previous round's."""
    from schedgym.agents.policy import NetworkPolicy

    teacher = str(params["bc_policy"])
    episodes = int(params["bc_episodes"])
    steps = int(params["bc_steps_per_episode"])
    gamma = float(params["gamma"])
    epochs = int(params["bc_epochs"])
    batch_size = int(params.get("bc_batch_size") or params["batch_size"])
    rate = float(params["bc_learning_rate"])
    rounds = int(params.get("bc_dagger_rounds") or 0)
    augmentation = params.get("observation_augmentation")
    if rounds and not labels_any_state(env_id, teacher):
        raise ConfigError(
            f"bc_dagger_rounds: {rounds} needs a teacher that can label any state (one of "
            f"{sorted(state_only_teachers(env_id))}); {teacher!r} may plan from its own past "
            "actions: set bc_dagger_rounds to 0"
        )
    traces = collect_traces(
        env_id, scenarios, teacher, episodes, steps, gamma, seed, augmentation=augmentation
    )
    stats = behaviour_clone(policy, traces, epochs, batch_size, seed, rate, log)
    history = [{"round": 0, "samples": len(traces["actions"]), **stats}]
    for round_index in range(1, rounds + 1):
        more = collect_traces(
            env_id,
            scenarios,
            teacher,
            episodes,
            steps,
            gamma,
            seed + round_index * episodes,
            actor=NetworkPolicy(policy),
            augmentation=augmentation,
        )
        # How often the network already agrees with the teacher on its own states: DAgger's
        # measure of progress (plain accuracy is on the teacher's states).
        on_policy = float(np.mean(more["actions"] == _greedy(policy, more)))
        traces = merge_traces(traces, more)
        stats = behaviour_clone(policy, traces, epochs, batch_size, seed + round_index, rate, log)
        history.append(
            {
                "round": round_index,
                "samples": len(traces["actions"]),
                "on_policy_agreement": on_policy,
                **stats,
            }
        )
        if log is not None:
            log(f"DAgger round {round_index}/{rounds}: agreement on its own states {on_policy:.3f}")
    return {
        "policy": teacher,
        "episodes": episodes,
        "samples": len(traces["actions"]),
        "epochs": epochs,
        "dagger_rounds": rounds,
        "rounds": history,
        **stats,
    }


def _greedy(policy: Any, traces: dict[str, Any], batch_size: int = 256) -> np.ndarray:
    """The network's greedy valid action on every traced state."""
    chosen = []
    with torch.no_grad():
        for start in range(0, len(traces["actions"]), batch_size):
            batch = {
                key: torch.as_tensor(value[start : start + batch_size], dtype=torch.float32)
                for key, value in traces["observations"].items()
            }
            mask = torch.as_tensor(traces["masks"][start : start + batch_size])
            logits = policy.action_logits(batch).masked_fill(~mask, -torch.inf)
            chosen.append(logits.argmax(1).numpy())
    return np.concatenate(chosen)
