"""worldmodel: large stochastic recurrent video prediction (SVG-LP at scale) as a world model.

Pure PyTorch. Never imports hydra, omegaconf, gymnasium or dm_control (except in the entry-point
modules ``worldmodel.pretrain`` and ``worldmodel.evaluate``).

Subpackages: :mod:`worldmodel.model` (the world model and its planning rollout),
:mod:`worldmodel.training` (trainer, losses, checkpoints), :mod:`worldmodel.antiblur` (GDL,
adversarial and feature losses, discriminators, PGGAN), :mod:`worldmodel.evaluation` (reports) and
:mod:`worldmodel.metrics` (video-prediction metrics). ``losses`` is
:mod:`worldmodel.training.losses`.
"""

from __future__ import annotations

from worldmodel.training import losses

__version__ = "0.1.0"
__all__ = ["losses", "__version__"]
