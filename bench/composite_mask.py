"""Where does a composite model (``model.composite=true``) copy? Its mask on held-out clips.

    python bench/composite_mask.py CKPT DATA_DIR [--n-past 2] [--horizon 10]

For every clip of ``DATA_DIR`` (episode files, e.g. ``envs.import_video``'s): observe the first
``n_past`` frames, imagine ``horizon`` frames (prior sample 0, seed 0, decoded) and report the mean
copy mask ``m`` at t+1 and at the last step, and its mean over the "still" pixels, those that do not
change (by more than 2/255 in any channel) between the last context frame and t+1. A mask well
below 1 on still pixels means the generated frame leaks into pixels that copying gets exactly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worldmodel.data import list_episode_files, load_episode  # noqa: E402
from worldmodel.model.svg import WorldModel  # noqa: E402


def mask_stats(model: WorldModel, obs: torch.Tensor, n_past: int, horizon: int) -> dict:
    """``obs (T, C, S, S)`` uint8, ``T >= n_past + 1``: the mask statistics of one clip."""
    if not model.cfg.composite:
        raise ValueError("the model has no copy mask (trained without model.composite=true)")
    masks: list[torch.Tensor] = []
    decoder = model.decoder
    composite = decoder._composite

    def record(out: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        masks.append(torch.sigmoid(out[..., decoder.channels :, :, :].float()))
        return composite(out, frame)

    decoder._composite = record
    try:
        with torch.no_grad():
            state = model.observe(obs[None, :n_past])
            model.imagine(
                state,
                None,
                horizon=horizon,
                decode=True,
                generator=torch.Generator().manual_seed(0),
            )
    finally:
        del decoder._composite  # back to the class's method
    first, last = masks[0].flatten(), masks[-1].flatten()
    still = (obs[n_past].float() - obs[n_past - 1].float()).abs().amax(0) <= 2.0
    return {
        "mask_t1": first.mean().item(),
        "mask_last": last.mean().item(),
        "still_fraction": still.float().mean().item(),
        "mask_still_t1": first.view(still.shape)[still].mean().item() if still.any() else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--n-past", type=int, default=2)
    p.add_argument("--horizon", type=int, default=10)
    a = p.parse_args(argv)
    from worldmodel.training.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(a.ckpt)
    rows = []
    for f in list_episode_files(a.data):
        obs = torch.from_numpy(load_episode(f).obs).permute(0, 3, 1, 2)
        if len(obs) < a.n_past + 1:
            continue
        r = mask_stats(model, obs[: a.n_past + a.horizon], a.n_past, a.horizon)
        rows.append(r)
        still = "n/a" if r["mask_still_t1"] is None else f"{r['mask_still_t1']:.3f}"
        print(
            f"{f.name}: mask t+1 {r['mask_t1']:.3f}, t+{a.horizon} {r['mask_last']:.3f}; "
            f"on still pixels at t+1 {still} ({100 * r['still_fraction']:.0f}% still)"
        )
    if rows:
        mean = sum(r["mask_t1"] for r in rows) / len(rows)
        print(f"{len(rows)} clips: mean mask at t+1 {mean:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
