"""worldmodel: large stochastic recurrent video prediction (SVG-LP at scale) as a world model.

Pure PyTorch. Never imports hydra, omegaconf, gymnasium or dm_control (except in the entry-point
modules ``worldmodel.pretrain`` and ``worldmodel.evaluate``).
"""

from __future__ import annotations

from worldmodel import losses

__version__ = "0.1.0"
__all__ = ["losses", "__version__"]
