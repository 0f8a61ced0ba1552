"""rl-baselines3-zoo hyperparameters derived from ``hyperparams/maskable_ppo.yml``.

rl_zoo3 cannot read ``maskable_ppo.yml`` itself: it takes one entry per env id without merging
``default`` into it, hands every key it does not know to the algorithm's constructor (our
``scenarios``, ``bc_*`` and ``eval_*`` would be rejected by MaskablePPO) and needs ``policy``
and ``n_timesteps``. Its ``--conf-file`` also accepts a Python module holding a ``hyperparams``
dict, so this module is that dict, computed from the one YAML file (nothing is copied).

No released rl_zoo3 (up to 2.9.2) lists sb3-contrib's MaskablePPO among its algorithms, and its
evaluation callback ignores action masks. ``python -m schedgym.training.zoo`` is rl_zoo3's own
``train`` entry, unmodified, run after adding ``ppo_mask`` to rl_zoo3's algorithm table and
making its evaluation the maskable one; every argument is rl_zoo3's::

    python -m schedgym.training.zoo --algo ppo_mask --env schedgym/SoCDAG-v0 \\
        --gym-packages schedgym --conf-file schedgym.training.zoo

Each entry is ``default`` merged with the env's entry (as ``schedgym train`` does), keeping the
MaskablePPO arguments, with our :class:`~schedgym.agents.sb3.CandidateScoringPolicy` and its
extractor, and ``env_kwargs`` = the file's first scenario (rl_zoo3 builds every env with
``gym.make(env_id, **env_kwargs)``, so it trains on one scenario, not a mix). What rl_zoo3 has no
place for is dropped: the scenario mix, the behaviour-cloning warm start and our validation
(rl_zoo3 evaluates with its own ``--eval-freq``). Entries are built on first access because the
encoder's layout needs an instance of the environment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# rl_zoo3 requires a budget in the file; the same default as ``schedgym train --timesteps``.
DEFAULT_TIMESTEPS = 10_000


def zoo_hyperparams(env_id: str) -> dict[str, Any]:
    """The rl_zoo3 ``ppo_mask`` entry of ``env_id``: MaskablePPO arguments plus ``policy``,
    ``policy_kwargs``, ``env_kwargs``, ``n_timesteps`` and, where the file sets it, ``n_envs``."""
    import gymnasium as gym

    import schedgym  # noqa: F401  (registers the ids)
    from schedgym.agents.layouts import encoder_for, layout_of
    from schedgym.agents.sb3 import CandidateScoringPolicy, scoring_policy_kwargs
    from schedgym.core.policy import env_family
    from schedgym.registration import env_entry
    from schedgym.training.config import PPO_KEYS, load_hyperparams

    env_id = env_entry(env_id).env_id
    family = env_family(env_id)
    params = load_hyperparams(env_id)
    scenario = dict(params["scenarios"][0])
    probe = gym.make(env_id, disable_env_checker=True, **scenario)
    layout = layout_of(family, probe.unwrapped)
    probe.close()
    encoder_kwargs = dict((params.get("policy_kwargs") or {}).get("encoder_kwargs") or {})
    entry: dict[str, Any] = {k: params[k] for k in PPO_KEYS if k in params}
    entry.update(
        # A dotted name, which rl_zoo3 imports (it does not accept a class here).
        policy=f"{CandidateScoringPolicy.__module__}.{CandidateScoringPolicy.__qualname__}",
        policy_kwargs=scoring_policy_kwargs(encoder_for(family), layout, encoder_kwargs),
        env_kwargs=scenario,
        n_timesteps=DEFAULT_TIMESTEPS,
    )
    if "n_envs" in params:  # rl_zoo3 reads it too (a DummyVecEnv by default, as ours)
        entry["n_envs"] = params["n_envs"]
    return entry


class _ZooHyperparams(Mapping):
    """``{env id: zoo_hyperparams(env id)}`` over the registered ids, built on access."""

    def __getitem__(self, env_id: str) -> dict[str, Any]:
        if env_id not in self._ids():
            raise KeyError(env_id)
        return zoo_hyperparams(env_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())

    @staticmethod
    def _ids() -> list[str]:
        from schedgym.registration import env_ids

        return env_ids()


# What rl_zoo3's ``--conf-file schedgym.training.zoo`` reads.
hyperparams: Mapping[str, dict[str, Any]] = _ZooHyperparams()


def enable_maskable_ppo() -> None:
    """Add ``ppo_mask`` (sb3-contrib's MaskablePPO) to rl_zoo3's algorithm table and make
    rl_zoo3 evaluate with sb3-contrib's mask-aware callback."""
    import rl_zoo3.exp_manager
    import rl_zoo3.utils
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

    rl_zoo3.utils.ALGOS.setdefault("ppo_mask", MaskablePPO)
    # rl_zoo3's EvalCallback would call predict() without masks and step invalid actions.
    rl_zoo3.exp_manager.EvalCallback = MaskableEvalCallback  # type: ignore[misc,unused-ignore]


def main() -> None:
    """rl_zoo3's ``train`` entry (its arguments, from ``sys.argv``) with ``ppo_mask`` enabled."""
    try:
        import rl_zoo3.train
    except ModuleNotFoundError:
        raise SystemExit(
            "rl_zoo3 is not installed; pip install 'schedgym[zoo]' (rl-baselines3-zoo)"
        ) from None
    enable_maskable_ppo()
    rl_zoo3.train.train()


if __name__ == "__main__":
    main()
