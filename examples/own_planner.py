"""Plan with your own objective on a trained world model.

    python examples/own_planner.py runs/x/checkpoints/last.pt --env cheetah

Loads a checkpoint of ``python -m agents.cem_planner`` (or ``worldmodel.pretrain``), watches a few
frames of the environment, and plans the next action with CEM under a custom objective: the
predicted return minus a penalty on the action magnitude. To act with it in the RL loop, pass the
same function as ``objective_fn`` to ``agents.loop.MPCAgent``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agents.cem import CEM, CEMConfig
from envs import make_env
from worldmodel.training.checkpoint import model_from_checkpoint


def reward_minus_effort(model, state, penalty: float = 0.1):
    """An objective ``(N, H, A) -> (N,)``: predicted return minus ``penalty * sum(a^2)``."""

    def objective(actions: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = model.imagine(state, actions)  # latent rollout of all N candidates at once
        return out.reward.mean(1).sum(-1) - penalty * actions.square().sum(dim=(1, 2))

    return objective


def main(argv: list[str] | None = None) -> np.ndarray:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a checkpoint, e.g. runs/x/checkpoints/last.pt")
    parser.add_argument("--env", default="cheetah", help="the env the model was trained on")
    parser.add_argument("--frames", type=int, default=5, help="frames to observe first")
    args = parser.parse_args(argv)

    model = model_from_checkpoint(args.ckpt)  # on the CPU, in eval mode
    env = make_env(args.env, size=model.image_size, seed=0)
    obs, _ = env.reset(seed=0)
    frames, actions = [obs], []
    for _ in range(args.frames - 1):  # a few random steps to watch
        actions.append(env.action_space.sample())
        frames.append(env.step(actions[-1])[0])
    env.close()

    obs = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W) uint8
    act = torch.from_numpy(np.stack(actions))[None]  # (1, T-1, A)
    with torch.inference_mode():
        state = model.observe(obs, act)  # the recurrent state after the last frame

    low = torch.full((model.action_dim,), -1.0)
    cem = CEM(CEMConfig(population=200, elites=20, iterations=4, horizon=12), low, -low)
    action = cem.act(reward_minus_effort(model, state)).numpy()
    print(f"planned action: {np.round(action, 3)}")
    return action


if __name__ == "__main__":
    main()
