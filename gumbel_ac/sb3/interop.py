"""Export an SB3 ``GumbelAC`` to our checkpoint folder, and build one from it.

Two formats, two trust levels:

* SB3's ``model.save("x.zip")`` / ``GumbelAC.load("x.zip")`` cloudpickles parts of the model
  (schedules, spaces, classes): **loading an untrusted .zip can run arbitrary code**.
* Our checkpoint (:mod:`gumbel_ac.checkpoint`) is safetensors + JSON: loading it never runs
  code from the files, and ``python eval.py RUN_DIR`` evaluates it.

:func:`export_checkpoint` writes the policy of an MlpPolicy model with
:func:`gumbel_ac.checkpoint.save_checkpoint` (weights, the hyperparameters as a
:class:`~gumbel_ac.config.Config`, the spaces); :func:`from_checkpoint` reads one with
:func:`gumbel_ac.checkpoint.load_run` and returns a ``GumbelAC`` ready to predict or to
continue training (fresh optimizer and replay: the native checkpoint stores weights).
CnnPolicy models cannot be exported (SB3's extractors are not the native agent's); an
MlpPolicy with ``policy_kwargs=dict(encoder="auto")`` holds the native convolutional agent on
image observations and exports like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from gumbel_ac.checkpoint import CheckpointError, check_spaces_match, load_run, save_checkpoint, write_json_atomic
from gumbel_ac.sb3.algorithm import GumbelAC
from gumbel_ac.vector import describe_spaces


def _guess_env_id(model: GumbelAC) -> str | None:
    """The Gymnasium id of the model's training env, where the VecEnv can tell."""
    env = model.get_env()
    if env is None:
        return None
    base = env.unwrapped if isinstance(env, VecEnv) else env
    env_id = getattr(base, "env_id", None)  # TorchVecEnvAdapter
    if env_id:
        return str(env_id)
    try:
        spec = env.get_attr("spec", indices=[0])[0]
    except (AttributeError, IndexError):
        return None
    return getattr(spec, "id", None)


def export_checkpoint(
    model: GumbelAC,
    run_dir: str | Path,
    *,
    env_id: str | None = None,
    step: int | None = None,
    keep: int = 3,
) -> Path:
    """Write ``model``'s policy as a native checkpoint under ``run_dir``; return its folder.

    ``python eval.py RUN_DIR`` then evaluates it, and :func:`gumbel_ac.load_run` loads it --
    neither unpickles anything (unlike SB3's ``.zip``).

    Args:
        model: a ``GumbelAC`` with an MlpPolicy (the native agent has no CNN).
        run_dir: the run folder (created; ``config.json`` and ``checkpoints/step_*`` written).
        env_id: Gymnasium id eval.py should build (default: read from the model's env).
        step: the checkpoint's step (default: ``model.num_timesteps``).
        keep: newest checkpoints to keep in ``run_dir``.
    """
    policy = model.policy
    if not policy.is_plain:
        raise ValueError(
            f"export_checkpoint needs an MlpPolicy; this model uses {policy.features_extractor_class.__name__}, "
            "which the native checkpoint format (actor and critics on flat observations) cannot hold. "
            "Use model.save() for it (SB3's .zip: trusted files only)."
        )
    if is_image_space(model.observation_space) and policy.normalize_images and policy.encoder is None:
        raise ValueError(
            "export_checkpoint: this MlpPolicy divides image observations by 255 (normalize_images=True) "
            "and the native evaluator does not; train with policy_kwargs=dict(normalize_images=False) to export"
        )
    env_id = env_id or _guess_env_id(model)
    if not env_id:
        raise ValueError("export_checkpoint cannot tell the env id of the model's env; pass env_id='...'")
    config = model.to_config(env_id=env_id)
    spaces = describe_spaces(model.observation_space, model.action_space)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.to_dict())
    import stable_baselines3

    return save_checkpoint(
        run_dir,
        step=int(model.num_timesteps if step is None else step),
        agent=policy.agent,
        config=config,
        spaces=spaces,
        training_meta={"source": "stable-baselines3", "sb3_version": stable_baselines3.__version__},
        keep=keep,
    )


def from_checkpoint(
    path: str | Path,
    env: GymEnv | str | None = None,
    *,
    device: torch.device | str = "auto",
    **kwargs: Any,
) -> GumbelAC:
    """A ``GumbelAC`` holding the policy of a native checkpoint (run or checkpoint folder).

    Hyperparameters come from the checkpoint's config (``kwargs`` override them, e.g.
    ``learning_starts=0`` to train on at once); the weights are loaded (a run with
    ``actor_average_rate`` gives its averaged actor as the policy) and the spaces checked
    against ``env`` (default: the checkpoint's training env, ``num_envs`` copies). Optimizer moments and
    replay start fresh. Loading reads safetensors + JSON only: no code runs from the files.
    """
    loaded = load_run(path, device="cpu")
    cfg = loaded.config
    env_name = cfg.env
    if env is None:
        # The training env again, vectorized as it was trained (SB3's own make_vec_env for
        # Gymnasium ids, the adapter for our batched torch envs).
        if cfg.env.startswith("gumbel_ac/"):
            from gumbel_ac.sb3.vec_env import make_torch_vec_env

            env = make_torch_vec_env(cfg.env, n_envs=cfg.num_envs, seed=cfg.seed)
        else:
            from stable_baselines3.common.env_util import make_vec_env

            env = make_vec_env(cfg.env, n_envs=cfg.num_envs, seed=cfg.seed)
    elif isinstance(env, str):
        env_name = env
    params: dict[str, Any] = dict(
        estimator=cfg.estimator,
        actor_lr=cfg.actor_lr,
        critic_lr=cfg.critic_lr,
        alpha_lr=cfg.alpha_lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        target_update_rate=cfg.target_update_rate,
        target_update_rate_final=cfg.target_update_rate_final,
        target_update_anneal_start=cfg.target_update_anneal_start,
        target_update_anneal_steps=cfg.target_update_anneal_steps,
        gamma=cfg.gamma,
        gradient_steps=cfg.updates_per_step,
        n_steps=cfg.n_step,
        alpha=cfg.alpha,
        autotune_alpha=cfg.autotune_alpha,
        alpha_max=cfg.alpha_max,
        alpha_min=cfg.alpha_min,
        target_q_reduce=cfg.target_q_reduce,
        q_clip=cfg.q_clip,
        huber_delta=cfg.huber_delta,
        target_critics=cfg.target_critics,
        target_entropy_ratio=cfg.target_entropy_ratio,
        gumbel_temperature=cfg.gumbel_temperature,
        gumbel_temperature_final=cfg.gumbel_temperature_final,
        temperature_schedule=cfg.temperature_schedule,
        temperature_anneal_steps=cfg.temperature_anneal_steps,
        rao_samples=cfg.rao_samples,
        max_nonfinite_updates=cfg.max_nonfinite_updates,
        seed=cfg.seed,
        policy_kwargs=dict(net_arch=list(cfg.hidden_sizes)),
    )
    if loaded.agent.image_shape is not None:  # the native rows and encoder, as trained
        params["policy_kwargs"]["encoder"] = loaded.agent.encoder_kind
    if cfg.critic_layer_norm:
        params["policy_kwargs"]["critic_layer_norm"] = True
    if cfg.n_critics != 2:
        params["policy_kwargs"]["n_critics"] = cfg.n_critics
    if loaded.agent.obs_bounds is not None:
        params["policy_kwargs"]["obs_rescale"] = True
    params.update(kwargs)
    model = GumbelAC("MlpPolicy", env, device=device, **params)
    check_spaces_match(loaded.meta, describe_spaces(model.observation_space, model.action_space), env_name)
    agent = model.policy.agent
    if agent.obs_bounds != loaded.agent.obs_bounds:
        raise CheckpointError(
            f"{path}: the policy rescales observations from the bounds {loaded.agent.obs_bounds}, but "
            f"{env_name}'s observation space has {agent.obs_bounds}; load it with an env of the same bounds"
        )
    agent.load_state_dict(_deployed_weights(loaded.agent.state_dict()))
    return model


def _deployed_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The native agent's weights with its averaged actor, when it keeps one
    (``Config.actor_average_rate``), in the actor's place: the policy the run evaluated and
    saved is the one SB3 gets (SB3's algorithm keeps no averaged actor, so training on in SB3
    continues from it)."""
    prefix = "actor_average."
    averaged = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not averaged:
        return state
    out = {k: v for k, v in state.items() if not k.startswith(prefix)}
    out.update({f"actor.{k}": v for k, v in averaged.items()})
    return out
