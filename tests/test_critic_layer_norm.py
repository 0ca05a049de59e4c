"""The critics' optional layer norm (``Config.critic_layer_norm``): the maths against
``torch.nn`` modules built by hand, every path that evaluates Q agreeing, and the setting
surviving a checkpoint, ``eval.py``'s loader and the SB3 round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from gumbel_ac.agent import make_agent
from gumbel_ac.checkpoint import load_run
from gumbel_ac.config import Config
from gumbel_ac.distributions import ActionSpec
from gumbel_ac.networks import TwinCritic
from gumbel_ac.trainer import train


def _randomised(critic: TwinCritic, seed: int) -> TwinCritic:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in critic.parameters():  # non-trivial gains, shifts and action weights too
            p.copy_(torch.randn(p.shape, generator=gen))
    return critic


def test_layer_norm_critic_matches_a_hand_built_mlp() -> None:
    """Each twin is Linear -> LayerNorm -> ReLU per hidden layer, then Linear (Ba et al. 2016)."""
    obs_dim, act_dim, widths = 3, 4, (5, 6)
    critic = _randomised(TwinCritic(obs_dim, act_dim, widths, layer_norm=True), seed=0)
    obs, act = torch.randn(7, obs_dim), torch.randn(7, act_dim)
    q = critic(obs, act)
    for twin in range(2):
        x = torch.cat([obs, act], dim=-1)
        weights = [torch.cat([critic.w_obs[twin], critic.w_act[twin]], dim=0), *[w[twin] for w in critic.hidden_w]]
        biases = [critic.b_in[twin], *[b[twin] for b in critic.hidden_b]]
        for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
            norm = nn.LayerNorm(w.shape[1])
            with torch.no_grad():
                norm.weight.copy_(critic.ln_gain[layer][twin, 0])
                norm.bias.copy_(critic.ln_shift[layer][twin, 0])
            x = torch.relu(norm(x @ w + b))
        expected = (x @ critic.w_out[twin] + critic.b_out[twin]).squeeze(-1)
        torch.testing.assert_close(q[twin], expected, rtol=1e-5, atol=1e-5)


def test_layer_norm_off_has_no_extra_parameters_and_on_adds_gain_and_shift() -> None:
    plain, normed = TwinCritic(3, 2, (8, 8)), TwinCritic(3, 2, (8, 8), layer_norm=True)
    extra = sum(p.numel() for p in normed.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * 2 * (8 + 8)  # twins x (gain, shift) x widths
    assert all(torch.equal(g, torch.ones_like(g)) for g in normed.ln_gain)  # identity at the start
    assert all(torch.equal(s, torch.zeros_like(s)) for s in normed.ln_shift)


@pytest.mark.parametrize("detach", [False, True])
def test_every_q_path_agrees_with_layer_norm(detach: bool) -> None:
    torch.manual_seed(0)
    agent = make_agent(
        obs_dim=2, spec=ActionSpec((2, 3)), hidden_sizes=(8, 8), alpha=0.3, target_entropy_ratio=0.5,
        critic_layer_norm=True,
    )  # fmt: skip
    _randomised(agent.critic, seed=1)
    obs = torch.randn(4, 2)
    q_all = agent.critic.all_actions(obs, agent.spec.joint_onehot_JK, detach_params=detach)
    for j in range(agent.spec.num_joint):
        a = agent.spec.joint_onehot_JK[j].expand(4, -1)
        torch.testing.assert_close(q_all[:, :, j], agent.critic(obs, a, detach_params=detach), rtol=1e-5, atol=1e-5)


def test_layer_norm_gradients_reach_gain_and_shift_but_not_when_detached() -> None:
    critic = _randomised(TwinCritic(3, 2, (8,), layer_norm=True), seed=2)
    obs, act = torch.randn(5, 3), torch.randn(5, 2, requires_grad=True)
    critic(obs, act).sum().backward()
    assert critic.ln_gain[0].grad is not None and critic.ln_gain[0].grad.abs().sum() > 0
    assert critic.ln_shift[0].grad is not None and critic.ln_shift[0].grad.abs().sum() > 0
    critic.zero_grad(set_to_none=True)
    act2 = torch.randn(5, 2, requires_grad=True)
    critic(obs, act2, detach_params=True).sum().backward()
    assert critic.ln_gain[0].grad is None and act2.grad is not None  # the actor path only


def test_layer_norm_run_saves_loads_and_exports_to_sb3(tmp_path: Path) -> None:
    cfg = Config(
        critic_layer_norm=True,
        total_steps=600,
        learning_starts=200,
        eval_every=0,
        checkpoint_every=0,
        final_eval_episodes=1,
        progress=False,
        runs_dir=str(tmp_path),
        run_name="ln",
    )
    train(cfg)
    loaded = load_run(tmp_path / "ln")
    assert loaded.config.critic_layer_norm and loaded.agent.critic.layer_norm
    assert len(loaded.agent.critic.ln_gain) == len(cfg.hidden_sizes)
    assert not torch.equal(loaded.agent.critic.ln_gain[0], torch.ones_like(loaded.agent.critic.ln_gain[0]))  # trained

    from gumbel_ac.sb3.interop import from_checkpoint

    model = from_checkpoint(tmp_path / "ln", device="cpu")
    assert model.policy.agent.critic.layer_norm
    for key, value in loaded.agent.state_dict().items():
        torch.testing.assert_close(model.policy.agent.state_dict()[key], value)
    assert model.to_config().critic_layer_norm
