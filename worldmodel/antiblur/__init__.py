"""Anti-blur training: the losses and networks that sharpen the world model's predictions.

* :mod:`~worldmodel.antiblur.adversarial` -- the ``loss`` config group
  (:class:`~worldmodel.antiblur.adversarial.AntiBlurConfig`), the objective the trainer runs
  (:class:`~worldmodel.antiblur.adversarial.AntiBlurObjective`: GDL, adversarial and feature
  terms) and the discriminator's side
  (:class:`~worldmodel.antiblur.adversarial.AdversarialTrainer`).
* :mod:`~worldmodel.antiblur.discriminator` -- the multi-scale conditional discriminator.
* :mod:`~worldmodel.antiblur.comparator` -- DeePSiM's comparators for the feature loss (the
  discriminator's features, a random or a pretrained video encoder).
* :mod:`~worldmodel.antiblur.pggan` -- Progressive GAN's discriminator layers (minibatch stddev,
  equalized learning rate) and the progressive-growing schedule.

Used by :mod:`worldmodel.training` and the evaluation (GAM); the model never imports it. Import
from the modules.
"""
