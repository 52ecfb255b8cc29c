"""Training the world model: the optimisation step, checkpoints and the run directory.

* :mod:`~worldmodel.training.train` -- :class:`~worldmodel.training.train.Trainer` (one step of
  the ELBO plus an extra objective), its configs and :func:`~worldmodel.training.train.predict`.
* :mod:`~worldmodel.training.training_setup` -- builds a trainer with the anti-blur objective of
  the ``loss`` config.
* :mod:`~worldmodel.training.losses` -- loss functions (ELBO terms, GDL, adversarial, feature,
  InfoNCE); also ``from worldmodel import losses``.
* :mod:`~worldmodel.training.checkpoint` -- atomic saving, safe loading, and
  :func:`~worldmodel.training.checkpoint.model_from_checkpoint` (a model for planning or
  evaluation, without importing the trainer).
* :mod:`~worldmodel.training.distributed` -- ``torchrun`` helpers;
  :mod:`~worldmodel.training.run_dir` -- a run's directory (TensorBoard, progress bar, summary).

This ``__init__`` imports nothing (``import worldmodel`` stays light). Import from the modules.
"""
