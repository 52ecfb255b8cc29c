"""The world model: SVG-LP as an action-conditioned video predictor, and its planning rollout.

* :mod:`~worldmodel.model.svg` -- :class:`~worldmodel.model.svg.WorldModel` (frame encoder, LSTM
  predictor, learned prior and posterior, reward head) and its
  :class:`~worldmodel.model.svg.ModelConfig`.
* :mod:`~worldmodel.model.nets` -- SVG's DCGAN- and VGG-style frame encoder and plain decoder.
* :mod:`~worldmodel.model.decoders` -- the progressively growing and the multi-scale decoder;
  :mod:`~worldmodel.model.gran` -- GRAN's recurrent canvas decoder.
* :mod:`~worldmodel.model.layers` -- generic layers from PGGAN the decoders use (pixel norm,
  fade-in, average-pool resizing).
* :mod:`~worldmodel.model.rollout` -- the fused latent rollout the planner imagines with.

Nothing here imports the training or the anti-blur code. Import from the modules.
"""
