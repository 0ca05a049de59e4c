"""Evaluate a saved policy: ``python eval.py runs/<run-name>``.

Loads the newest checkpoint of the run (or the checkpoint folder given), builds the env it
was trained on (or ``--env``), and prints the mean ± std return over ``--episodes`` episodes.
``--gif out.gif`` also renders one episode. Loading never executes code from the files
(safetensors + JSON only). Bad input exits with status 2 and one line saying what is wrong.

What the run's saved config contributes (the env, its env_kwargs) passed the same checks and
caps as the training flags when it was loaded, and ``--episodes``/``--seed`` meet the matching
training flags' limits; the evaluation env is then checked to fit the device's free memory
before it is built. Evaluation never compiles the env step: a saved ``compile: true`` in
env_kwargs is dropped (a compile costs more than it saves on a few episodes;
``gumbel_ac.vector.eval_env_kwargs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import TYPE_CHECKING, Any

from gumbel_ac.cli import exit_status, guarded

if TYPE_CHECKING:
    from gumbel_ac.config import Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``); argparse raises ``SystemExit`` on bad flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder (runs/<name>) or one checkpoint folder inside it")
    parser.add_argument(
        "--episodes", type=int, default=10, help="episodes to average over (default 10; at most 100000)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=True,
        help="act with the most likely action (default)",
    )
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions from the policy")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the evaluation envs and sampling (default 0; 0 to 2**31 - 1)"
    )
    parser.add_argument("--env", default=None, help="env id to evaluate on (default: the run's eval env)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the policy and the evaluation envs run (default auto: CUDA when available, as train.py)",
    )
    parser.add_argument(
        "--checkpoint",
        default="last",
        help="which checkpoint of the run folder: last (the newest, default), best (the best periodic "
        "evaluation's policy) or step_N",
    )
    parser.add_argument("--gif", default=None, metavar="PATH", help="also render one episode to this GIF")
    return parser.parse_args(argv)


def quiet_headless_rendering() -> None:
    """Let pygame render off-screen, silently, on a machine without a display.

    Rendering to rgb_array still initialises SDL's video; with no display SDL printed
    ``error: XDG_RUNTIME_DIR is invalid or not set`` to stderr, which reads like one of our
    own ``error:`` lines although the GIF is written. SDL's dummy driver needs no display.
    Variables the user set are kept; this runs before pygame is first imported (the render).
    """
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's import banner on stdout


def run(args: argparse.Namespace) -> int:
    """Evaluate as ``args`` say and print one summary line; user errors raise (see ``guarded``)."""
    import numpy as np

    from gumbel_ac.budget import check_bytes_fit, env_bytes
    from gumbel_ac.checkpoint import check_spaces_match, load_run, select_checkpoint
    from gumbel_ac.config import MAX_EVAL_EPISODES, MAX_SEED, ConfigError
    from gumbel_ac.evaluation import evaluate, record_gif
    from gumbel_ac.vector import describe_spaces, eval_env_kwargs, make_env, resolve_device

    # The training flags' limits (eval_episodes, seed), checked before anything is loaded.
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.episodes > MAX_EVAL_EPISODES:
        raise ConfigError(f"--episodes must be at most {MAX_EVAL_EPISODES} (one env each), got {args.episodes}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be in [0, 2**31 - 1], got {args.seed}")
    gif_dir = os.path.dirname(os.path.abspath(args.gif)) if args.gif else None
    if gif_dir is not None and not os.path.isdir(gif_dir):  # now, not after the whole evaluation
        raise ConfigError(f"--gif {args.gif}: folder {gif_dir} does not exist; create it or choose another path")
    device = resolve_device(args.device)
    loaded = load_run(select_checkpoint(args.run, args.checkpoint), device=device)
    # --env plays the part of the run's eval_env, so the config's own rule decides which env
    # kwargs apply (the run's, e.g. DeepSea's size, on its own env; none on another env).
    config = dataclasses.replace(loaded.config, eval_env=args.env) if args.env else loaded.config
    env_id = config.eval_env or config.env
    env_kwargs = eval_env_kwargs(config.eval_env_kwargs())
    probe = make_env(env_id, num_envs=1, device=device, **env_kwargs)
    spaces = describe_spaces(probe.single_observation_space, probe.single_action_space)
    obs_dim = probe.obs_dim
    probe.close()
    check_spaces_match(loaded.meta, spaces, env_id)
    # One env per episode: refuse before building them if they cannot fit.
    check_bytes_fit(
        env_bytes(args.episodes, obs_dim),
        device,
        f"evaluating {args.episodes} episodes of {env_id} side by side",
        "lower --episodes",
    )
    returns = evaluate(
        loaded.agent,
        env_id,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=args.deterministic,
        device=device,
        env_kwargs=env_kwargs,
    )
    mode = "deterministic" if args.deterministic else "stochastic"
    print(
        f"{env_id}: {np.mean(returns):.2f} ± {np.std(returns):.2f} over {args.episodes} {mode} episodes "
        f"(checkpoint {loaded.path}, step {loaded.step}{_best_note(loaded.meta)}{_average_note(loaded.config)})"
    )
    if args.gif:
        quiet_headless_rendering()
        total = record_gif(
            loaded.agent.cpu(),
            env_id,
            args.gif,
            seed=args.seed,
            deterministic=args.deterministic,
            env_kwargs=env_kwargs,
        )
        print(f"wrote {args.gif} (episode return {total:.1f})")
    return 0


def _average_note(config: Config) -> str:
    """``; the averaged actor (rate R)`` when the run kept one: that is the policy evaluated."""
    rate = config.actor_average_rate
    return "" if rate is None else f"; the averaged actor, rate {rate:g}"


def _best_note(meta: dict[str, Any]) -> str:
    """``; the best periodic evaluation, X`` for a best/ checkpoint (its manifest records it)."""
    best = meta.get("training", {}).get("best_eval") if isinstance(meta.get("training"), dict) else None
    if isinstance(best, dict) and isinstance(best.get("mean"), (int, float)):
        return f"; the best periodic evaluation, {best['mean']:.3g}"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Entry point: the exit status (0 ok, 2 bad input) is returned, never raised, so tests and
    other Python code can call ``main([...])`` in-process instead of starting an interpreter."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argparse usage error (2, message already printed)
        return exit_status(exc)
    result = guarded(lambda: run(args))
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
