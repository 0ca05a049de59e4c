"""gumbel_ac for Stable-Baselines3 users (the only package that imports SB3).

    from gumbel_ac.sb3 import GumbelAC
    model = GumbelAC("MlpPolicy", make_vec_env("CartPole-v1", n_envs=16)).learn(30_000)

* :class:`GumbelAC` -- an SB3 ``OffPolicyAlgorithm`` whose ``train()`` calls the core's
  :meth:`gumbel_ac.learner.Learner.step` (the same update as ``train.py``);
  :class:`GumbelACPolicy` / ``"MlpPolicy"`` / ``"CnnPolicy"`` hold the core's agent.
* :class:`TorchVecEnvAdapter`, :func:`make_torch_vec_env` -- our batched torch envs as an SB3
  ``VecEnv`` for any SB3 algorithm (a compatibility path that copies to numpy each step).
* :func:`export_checkpoint`, :func:`from_checkpoint` -- to and from our safetensors + JSON
  checkpoint (``eval.py`` reads it; unlike SB3's ``.zip`` it never unpickles code).
* :class:`WandbOutputFormat`, :func:`configure_logger` -- SB3's logged scalars to wandb.
"""

from gumbel_ac.sb3.algorithm import GumbelAC
from gumbel_ac.sb3.interop import export_checkpoint, from_checkpoint
from gumbel_ac.sb3.policies import CnnPolicy, GumbelACPolicy, MlpPolicy
from gumbel_ac.sb3.vec_env import TorchVecEnvAdapter, make_torch_vec_env
from gumbel_ac.sb3.wandb_logger import WandbOutputFormat, configure_logger

__all__ = [
    "GumbelAC",
    "GumbelACPolicy",
    "MlpPolicy",
    "CnnPolicy",
    "TorchVecEnvAdapter",
    "make_torch_vec_env",
    "export_checkpoint",
    "from_checkpoint",
    "WandbOutputFormat",
    "configure_logger",
]
