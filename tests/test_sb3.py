"""Stable-Baselines3 integration: GumbelAC as an SB3 algorithm, the VecEnv adapter, interop.

Every learn() here is tiny (a few hundred env steps, small networks): the tests check the
plumbing -- callbacks, save/load with optimizer state, predict shapes, export to eval.py and
back, SB3's own PPO on our batched CartPole -- not learning. Learning to threshold is the
``slow`` test at the end.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import (
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import SubprocVecEnv

from gumbel_ac.checkpoint import load_run
from gumbel_ac.config import ConfigError
from gumbel_ac.estimators import ESTIMATORS
from gumbel_ac.learner import Learner
from gumbel_ac.sb3 import (
    GumbelAC,
    WandbOutputFormat,
    configure_logger,
    export_checkpoint,
    from_checkpoint,
)
from gumbel_ac.sb3.policies import FeatureActor, FeatureCritic

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

#: Small, fast settings for plumbing tests (learning is not the point).
TINY: dict[str, Any] = dict(
    learning_starts=64,
    batch_size=32,
    buffer_size=2_000,
    seed=0,
    policy_kwargs=dict(net_arch=[32, 32]),
)


def tiny_model(env: Any = None, **kwargs: Any) -> GumbelAC:
    env = env if env is not None else make_vec_env("CartPole-v1", n_envs=4, seed=0)
    return GumbelAC("MlpPolicy", env, **{**TINY, **kwargs})


def probe_obs(n: int = 64, seed: int = 0) -> np.ndarray:
    """CartPole-like observations (the space has infinite bounds, so draw them by hand)."""
    return np.random.default_rng(seed).normal(scale=0.5, size=(n, 4)).astype(np.float32)


def flat_grad_intact(model: GumbelAC) -> bool:
    """Every trained parameter and its .grad are views into the learner's flat buffers."""
    model.learner.check_views()  # raises otherwise
    trained = [p for p in model.policy.agent.parameters() if p.requires_grad]
    return sum(p.numel() for p in trained) == model.learner.flat_grad.numel()


# --------------------------------------------------------------------------- tiny envs
class ImageEnv(gym.Env):
    """36x36 grey images (NatureCNN's minimum); reward 1 for action == a bit in the image."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._bit, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        return np.full((36, 36, 1), 255 * self._bit, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._bit, self._t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self._bit)
        self._bit, self._t = int(self.np_random.integers(2)), self._t + 1
        return self._obs(), reward, False, self._t >= 10, {}


class MultiHeadEnv(gym.Env):
    """MultiDiscrete([2, 3]) actions; reward 1 when the heads equal the observed targets."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (5,), dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, 3])
        self._target, self._t = np.zeros(2, dtype=np.int64), 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(5, dtype=np.float32)
        obs[self._target[0]] = 1.0
        obs[2 + self._target[1]] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._target, self._t = np.array([self.np_random.integers(2), self.np_random.integers(3)]), 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(np.all(np.asarray(action) == self._target))
        self._target = np.array([self.np_random.integers(2), self.np_random.integers(3)])
        self._t += 1
        return self._obs(), reward, False, self._t >= 8, {}


def batched_envs_available() -> bool:
    try:
        import gumbel_ac.envs  # noqa: F401
    except ImportError:
        return False
    return "gumbel_ac/CartPole-v1" in gym.registry


needs_batched_envs = pytest.mark.skipif(
    not batched_envs_available(), reason="the batched torch envs (envs/, import gumbel_ac.envs) are not installed yet"
)


# --------------------------------------------------------------------------- learn + callbacks
@pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")
def test_learn_with_callbacks_logger_and_progress_bar(tmp_path: Path) -> None:
    model = tiny_model()
    model.set_logger(configure_logger(str(tmp_path / "log"), ["stdout", "csv"]))
    eval_env = make_vec_env("CartPole-v1", n_envs=2, seed=1)
    eval_cb = EvalCallback(
        eval_env,
        eval_freq=50,
        n_eval_episodes=2,
        log_path=str(tmp_path / "eval"),
        best_model_save_path=str(tmp_path / "best"),
        verbose=0,
    )
    ckpt_cb = CheckpointCallback(save_freq=75, save_path=str(tmp_path / "ckpt"), name_prefix="gac")
    model.learn(600, callback=[eval_cb, ckpt_cb], progress_bar=True, log_interval=1)

    assert model.num_timesteps >= 600 and model._n_updates > 0
    assert (tmp_path / "eval" / "evaluations.npz").is_file() and len(eval_cb.evaluations_results) >= 2
    assert (tmp_path / "best" / "best_model.zip").is_file()
    zips = sorted((tmp_path / "ckpt").glob("gac_*_steps.zip"))
    assert zips, "CheckpointCallback wrote nothing"
    GumbelAC.load(zips[-1])  # every checkpoint is loadable
    with open(tmp_path / "log" / "progress.csv") as fh:
        header = next(csv.reader(fh))
    for key in ("train/critic_loss", "train/actor_loss", "train/alpha", "rollout/ep_rew_mean", "eval/mean_reward"):
        assert key in header, key
    assert len(model.ep_info_buffer) > 0


def test_subproc_vec_env_and_string_env() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        model = tiny_model(env).learn(200)
        assert model._n_updates > 0
    finally:
        env.close()
    model = GumbelAC("MlpPolicy", "CartPole-v1", **TINY).learn(100)  # SB3 builds + Monitor-wraps the env
    assert model.n_envs == 1 and model._n_updates > 0


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_trains_by_name(name: str) -> None:
    tau = 1.0 if name == "reinmax" else 0.6  # ReinMax needs tau >= 1 (Liu et al. 2023)
    model = tiny_model(
        make_vec_env("CartPole-v1", n_envs=2, seed=0), estimator=name, gumbel_temperature=tau, rao_samples=4
    )
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.policy.agent.actor.parameters()])
    model.learn(120)
    after = torch.cat([p.detach().reshape(-1) for p in model.policy.agent.actor.parameters()])
    assert model._n_updates > 0
    assert torch.isfinite(after).all() and not torch.equal(before, after)


def test_sb3_trains_through_the_native_learner_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SB3 gradient step is ``Learner.step``: replaying the recorded last step on a copy
    of the learner taken just before it gives the same parameters, bit for bit."""
    recorded: list[tuple[Learner, Any, dict[str, Any], torch.Tensor]] = []
    original = Learner.step

    def spy(self: Learner, batch: Any, **kwargs: Any) -> Any:
        recorded[:] = [(copy.deepcopy(self), batch, kwargs, torch.get_rng_state())]
        calls.append(1)
        return original(self, batch, **kwargs)

    calls: list[int] = []
    monkeypatch.setattr(Learner, "step", spy)
    model = tiny_model(make_vec_env("CartPole-v1", n_envs=2, seed=0), seed=3)
    model.learn(160)
    assert len(calls) == model._n_updates > 0
    twin, batch, kwargs, rng = recorded[0]
    twin.check_views()  # the copy's parameters still live in its own flat buffers
    torch.set_rng_state(rng)  # the estimator draws from the global RNG (generator=None)
    original(twin, batch, **kwargs)
    assert torch.equal(twin.flat_param, model.learner.flat_param)
    assert torch.equal(twin.flat_critic_target, model.learner.flat_critic_target)


def test_sb3_tau_only_mirrors_the_polyak_rate() -> None:
    model = tiny_model(target_update_rate=0.05, gumbel_temperature=0.9)
    assert model.tau == 0.05 == model.learner.target_update_rate  # never the Gumbel temperature
    with pytest.raises(AttributeError, match="target_update_rate"):
        model.tau = 0.5


def test_sb3_anneals_the_polyak_rate_like_the_native_default() -> None:
    # The native default: 0.2 until 10k env steps, then linearly to 0.005 at 40k; train() sets
    # the learner's rate from the env steps taken, as the native trainer does.
    from gumbel_ac.config import Config

    native = Config()
    model = tiny_model(learning_starts=0)
    model.learn(64)  # some replay to train on
    assert model.to_config().target_update_rate_final == native.target_update_rate_final == 0.005
    for steps, expected in ((0, 0.2), (10_000, 0.2), (25_000, 0.1025), (40_000, 0.005), (90_000, 0.005)):
        model.num_timesteps = steps
        model.train(gradient_steps=1, batch_size=8)
        assert model.learner.target_update_rate == pytest.approx(expected)
        assert model.learner.target_update_rate == native.target_update_rate_at(steps)
    constant = tiny_model(target_update_rate_final=None, learning_starts=0)
    constant.learn(64)
    constant.num_timesteps = 90_000
    constant.train(gradient_steps=1, batch_size=8)
    assert constant.learner.target_update_rate == 0.2 and constant.to_config().target_update_rate_final is None


def test_sb3_hyperparameters_are_its_arguments_no_env_preset() -> None:
    """CartPole's preset (alpha cap, 10 critics) is train.py's; a GumbelAC model trains with its
    own arguments, and its exported config says exactly those."""
    model = tiny_model()
    cfg = model.to_config(env_id="CartPole-v1")
    assert (cfg.preset, cfg.alpha_max, cfg.n_critics, cfg.target_critics) == ("none", None, 2, None)
    assert model.learner.log_alpha_max is None
    assert model.policy.agent.critic.num_critics == 2


def test_sb3_alpha_bounds_reach_the_learner_and_the_config() -> None:
    import math

    from gumbel_ac.config import Config

    default = tiny_model()
    assert (default.alpha_max, default.alpha_min) == (Config().alpha_max, Config().alpha_min)
    model = tiny_model(alpha_max=0.2, alpha_min=0.01)
    assert model.learner.log_alpha_max == pytest.approx(math.log(0.2))
    assert model.learner.log_alpha_min == pytest.approx(math.log(0.01))
    assert (model.to_config().alpha_max, model.to_config().alpha_min) == (0.2, 0.01)
    with pytest.raises(ConfigError, match="alpha_max"):
        tiny_model(alpha_max=-1.0)


def test_sb3_critic_variants_reach_the_learner_and_the_config() -> None:
    default = tiny_model()
    assert (default.learner.target_q_reduce, default.learner.q_clip) == ("min", None)
    model = tiny_model(target_q_reduce="mean", q_clip=0.5)
    assert (model.learner.target_q_reduce, model.learner.q_clip) == ("mean", 0.5)
    assert (model.to_config().target_q_reduce, model.to_config().q_clip) == ("mean", 0.5)
    model.learn(300)  # the learner's step runs with both
    with pytest.raises(ConfigError, match="q_clip must be > 0"):
        tiny_model(q_clip=0.0)
    assert default.learner.huber_delta is None
    huber = tiny_model(huber_delta=1.0)
    assert (huber.learner.huber_delta, huber.to_config().huber_delta) == (1.0, 1.0)
    with pytest.raises(ConfigError, match="huber_delta must be > 0"):
        tiny_model(huber_delta=-1.0)


def test_bad_hyperparameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="estimator"):
        tiny_model(estimator="no-such-estimator")
    with pytest.raises(ConfigError, match="tau|temperature"):
        tiny_model(gumbel_temperature=0.0)
    with pytest.raises(Exception, match="not supported|action space"):
        GumbelAC("MlpPolicy", "Pendulum-v1")  # Box actions


# --------------------------------------------------------------------------- predict / save / load
def test_predict_returns_integer_indices() -> None:
    model = tiny_model()
    obs = probe_obs(5)
    for deterministic in (True, False):
        batched, _ = model.predict(obs, deterministic=deterministic)
        assert batched.shape == (5,) and np.issubdtype(batched.dtype, np.integer)
        assert set(batched.tolist()) <= {0, 1}
        single, _ = model.predict(obs[0], deterministic=deterministic)
        assert single.shape == () and np.issubdtype(single.dtype, np.integer)


def test_multidiscrete_actions() -> None:
    env = make_vec_env(MultiHeadEnv, n_envs=2, seed=0)
    model = GumbelAC("MlpPolicy", env, **{**TINY, "learning_starts": 32}).learn(120)
    assert model._n_updates > 0
    obs = np.stack([env.observation_space.sample() for _ in range(7)])
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (7, 2) and np.issubdtype(actions.dtype, np.integer)
    assert (actions[:, 0] < 2).all() and (actions[:, 1] < 3).all()
    single, _ = model.predict(obs[0])
    assert single.shape == (2,)


def test_save_load_same_actions_optimizer_state_and_continued_training(tmp_path: Path) -> None:
    model = tiny_model().learn(400)
    obs = probe_obs()
    expected, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model.zip")

    env = make_vec_env("CartPole-v1", n_envs=4, seed=5)
    loaded = GumbelAC.load(tmp_path / "model.zip", env=env)
    got, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(got, expected)
    for key, value in model.policy.agent.state_dict().items():
        torch.testing.assert_close(loaded.policy.agent.state_dict()[key], value, rtol=0, atol=0)
    saved_opt, loaded_opt = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    assert loaded_opt["steps"] == saved_opt["steps"] > 0
    torch.testing.assert_close(loaded_opt["exp_avg"], saved_opt["exp_avg"], rtol=0, atol=0)
    torch.testing.assert_close(loaded_opt["exp_avg_sq"], saved_opt["exp_avg_sq"], rtol=0, atol=0)
    assert flat_grad_intact(loaded)

    # Continued training: the restored optimizer keeps counting, the weights move.
    before = {k: v.clone() for k, v in loaded.policy.agent.state_dict().items()}
    steps_before, n_before = loaded.num_timesteps, loaded_opt["steps"]
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.num_timesteps >= steps_before + 200
    assert loaded.policy.optimizer.state_dict()["steps"] > n_before
    assert any(not torch.equal(before[k], v) for k, v in loaded.policy.agent.state_dict().items())
    assert flat_grad_intact(loaded)

    # evaluate_policy on the loaded model (SB3's Monitor-wrapped eval env).
    mean, std = evaluate_policy(loaded, make_vec_env("CartPole-v1", n_envs=2, seed=9), n_eval_episodes=2)
    assert np.isfinite(mean) and mean >= 1.0


# --------------------------------------------------------------------------- CnnPolicy
@pytest.mark.parametrize("share", [True, False])
def test_cnn_policy(share: bool, tmp_path: Path) -> None:
    env = make_vec_env(ImageEnv, n_envs=2, seed=0)
    model = GumbelAC(
        "CnnPolicy",
        env,
        learning_starts=16,
        batch_size=8,
        buffer_size=200,
        seed=0,
        policy_kwargs=dict(
            net_arch=[16], share_features_extractor=share, features_extractor_kwargs=dict(features_dim=32)
        ),
    )
    agent = model.policy.agent
    assert isinstance(agent.actor, FeatureActor) and isinstance(agent.critic, FeatureCritic)
    critic_cnn = [p.detach().clone() for p in agent.critic.extractor.parameters()]
    actor_has_cnn = any("extractor" in name for name, _ in agent.actor.named_parameters())
    assert actor_has_cnn is (not share)  # shared: the CNN belongs to the critic only
    model.learn(40)
    assert model._n_updates > 0
    # The critic loss trains the critic's CNN in both modes.
    assert any(not torch.equal(a, b) for a, b in zip(critic_cnn, agent.critic.extractor.parameters(), strict=True))
    obs = np.stack([env.observation_space.sample() for _ in range(3)])  # channel-first after VecTransposeImage
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (3,)
    model.save(tmp_path / "cnn.zip")
    again, _ = GumbelAC.load(tmp_path / "cnn.zip").predict(obs, deterministic=True)
    np.testing.assert_array_equal(again, actions)
    with pytest.raises(ValueError, match="MlpPolicy"):
        export_checkpoint(model, tmp_path / "run", env_id="CartPole-v1")


def test_shared_cnn_gets_no_actor_gradient() -> None:
    """With a shared extractor only the critic loss reaches the CNN (SAC-AE / DrQ)."""
    from gumbel_ac.losses import actor_loss

    model = GumbelAC(
        "CnnPolicy",
        make_vec_env(ImageEnv, n_envs=1, seed=0),
        learning_starts=8,
        batch_size=4,
        buffer_size=50,
        policy_kwargs=dict(net_arch=[8], features_extractor_kwargs=dict(features_dim=8)),
    )
    agent, policy = model.policy.agent, model.policy
    obs = policy.preprocess(torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(4)])))
    model.learner.flat_grad.zero_()
    loss, _ = actor_loss(
        agent, obs, agent.actor(obs), model.learner.estimator, tau=0.6, alpha=agent.alpha.detach(), generator=None
    )
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in agent.critic.parameters())
    assert any(p.grad is not None and p.grad.any() for p in agent.actor.parameters())


# --------------------------------------------------------------------------- export / import
def test_export_to_eval_py_and_import_back(tmp_path: Path) -> None:
    model = tiny_model().learn(300)
    run_dir = tmp_path / "run"
    ckpt = export_checkpoint(model, run_dir)
    assert (ckpt / "model.safetensors").is_file() and (run_dir / "config.json").is_file()

    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), str(run_dir), "--episodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CartPole-v1" in proc.stdout

    obs = probe_obs()
    expected, _ = model.predict(obs, deterministic=True)
    native = load_run(run_dir).agent  # the native loader: safetensors + JSON, no pickle
    native_actions = native.act(torch.as_tensor(obs), deterministic=True)[:, 0].numpy()
    np.testing.assert_array_equal(native_actions, expected)

    back = from_checkpoint(run_dir, env=make_vec_env("CartPole-v1", n_envs=4, seed=3))
    got, _ = back.predict(obs, deterministic=True)
    np.testing.assert_array_equal(got, expected)
    assert back.policy.net_arch == [32, 32] and back.learning_starts == model.learning_starts
    back.learn(100)  # trainable after import
    assert flat_grad_intact(back)


def test_native_run_imports_into_sb3(tmp_path: Path) -> None:
    """A policy trained by the native trainer (train.py's path) predicts the same through SB3."""
    from gumbel_ac.config import Config
    from gumbel_ac.trainer import train

    cfg = Config(
        total_steps=256,
        num_envs=4,
        learning_starts=64,
        batch_size=32,
        buffer_size=1_000,
        hidden_sizes=(16,),
        eval_every=0,
        final_eval_episodes=0,
        checkpoint_every=0,
        log_every=128,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="native",
    )
    run_dir = train(dataclasses.replace(cfg, alpha_max=0.3)).run_dir
    model = from_checkpoint(run_dir)  # builds make_vec_env("CartPole-v1", n_envs=4)
    assert model.n_envs == 4 and model.policy.net_arch == [16]
    assert model.alpha_max == 0.3  # the run's hyperparameters come along
    obs = probe_obs()
    native = load_run(run_dir).agent.act(torch.as_tensor(obs), deterministic=True)[:, 0].numpy()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], native)
    with pytest.raises(Exception, match="does not match"):
        from_checkpoint(run_dir, env=make_vec_env(MultiHeadEnv, n_envs=1))


# --------------------------------------------------------------------------- wandb
class FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.metrics: list[tuple[str, dict]] = []

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.metrics.append((name, kwargs))

    def log(self, data: dict[str, Any]) -> None:
        self.logged.append(dict(data))


def test_sb3_scalars_reach_wandb(tmp_path: Path) -> None:
    run = FakeRun()
    model = tiny_model()
    logger = configure_logger(str(tmp_path), ["csv"], run=run)
    model.set_logger(logger)
    logger.record("secret/not_for_wandb", 1.0, exclude="wandb")
    model.learn(300, log_interval=1)
    keys = set().union(*[d.keys() for d in run.logged])
    assert {"train/critic_loss", "train/alpha", "rollout/ep_rew_mean", "global_step"} <= keys
    assert "secret/not_for_wandb" not in keys
    assert ("*", {"step_metric": "global_step"}) in run.metrics
    steps = [d["global_step"] for d in run.logged]
    assert steps == sorted(steps) and steps[-1] <= model.num_timesteps


def test_wandb_output_format_with_real_wandb_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "disabled")  # never online in tests (docs/DESIGN.md §6)
    fmt = WandbOutputFormat(project="gumbel_ac-test")
    fmt.write({"train/x": 1.5, "skip/text": "hello"}, {"train/x": None}, step=10)  # type: ignore[dict-item]
    fmt.close()
    import wandb

    assert wandb.run is None  # the format finished the run it started
    with pytest.raises(ValueError, match="WANDB_MODE"):
        WandbOutputFormat(mode="online")  # would override WANDB_MODE: refused


# --------------------------------------------------------------------------- VecEnv adapter
@needs_batched_envs
def test_adapter_sb3_semantics() -> None:
    from gumbel_ac.sb3 import make_torch_vec_env

    env = make_torch_vec_env("gumbel_ac/CartPole-v1", n_envs=4, seed=0, max_episode_steps=5)
    assert env.get_attr("render_mode") == [None] * 4
    assert env.env_is_wrapped(Monitor) == [True] * 4
    with pytest.raises(ValueError, match="all rows"):
        env.set_attr("render_env_index", 1, indices=[0])
    first = env.reset()
    assert first.shape == (4, 4) and first.dtype == np.float32
    env.seed(3)
    a = env.reset()
    env.seed(3)
    np.testing.assert_array_equal(env.reset(), a)
    for _ in range(5):
        obs, rewards, dones, infos = env.step(np.ones(4, dtype=np.int64))
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 4
    # Pushing right for 5 steps does not topple the pole: every row is truncated at step 5.
    assert dones.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (4,)
        assert info["episode"]["l"] == 5 and info["episode"]["r"] == 5.0
    assert not np.allclose(obs, np.stack([i["terminal_observation"] for i in infos]))  # obs is the reset one
    env.close()


@needs_batched_envs
def test_sb3_ppo_a2c_dqn_and_gumbel_ac_train_on_batched_cartpole() -> None:
    from gumbel_ac.sb3 import make_torch_vec_env

    env = make_torch_vec_env("gumbel_ac/CartPole-v1", n_envs=8, seed=0)
    ppo = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=2, seed=0).learn(512)
    assert ppo.num_timesteps >= 512 and len(ppo.ep_info_buffer) > 0
    mean, _ = evaluate_policy(ppo, make_torch_vec_env("gumbel_ac/CartPole-v1", n_envs=2, seed=1), n_eval_episodes=4)
    assert mean >= 1.0
    A2C("MlpPolicy", env, n_steps=8, seed=0).learn(256)
    DQN("MlpPolicy", env, learning_starts=64, batch_size=32, buffer_size=1000, seed=0).learn(256)
    gac = tiny_model(env).learn(300)
    assert gac._n_updates > 0 and len(gac.ep_info_buffer) > 0
    env.close()


# --------------------------------------------------------------------------- learning (slow)
@pytest.mark.slow
def test_gumbel_ac_solves_cartpole() -> None:
    """GumbelAC("MlpPolicy", CartPole-v1) reaches a deterministic eval >= 475.

    Settings mirror the native defaults (16 envs, one gradient step per vector step,
    batch 128, learning_starts 1000): the native trainer reaches 500 in ~25-35k env steps.
    """
    env = make_vec_env("CartPole-v1", n_envs=16, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=10, seed=1000)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    eval_cb = EvalCallback(eval_env, eval_freq=2_000 // 16, n_eval_episodes=10, callback_on_new_best=stop, verbose=0)
    model = GumbelAC("MlpPolicy", env, train_freq=1, gradient_steps=1, batch_size=128, learning_starts=1_000, seed=0)
    model.learn(100_000, callback=eval_cb)
    assert eval_cb.best_mean_reward >= 475, (
        f"best deterministic eval {eval_cb.best_mean_reward} after {model.num_timesteps} steps"
    )
