"""Small pieces shared by ``worldmodel``, ``envs`` and ``agents``, defined once.

A leaf package, like ``episode_format``: it imports the standard library only at import time (a
test checks that it pulls in none of torch, gymnasium, hydra, ``worldmodel``, ``envs``,
``agents``), so that ``envs``, which never imports ``worldmodel``, and ``worldmodel``, which never
imports hydra outside its entry points, can both use it.

* :mod:`wmcommon.checks`: the validation helpers (``is_int``: "a bool is not an int").
* :mod:`wmcommon.cli`: the command-line glue of every Hydra entry point (the pre-flight check of a
  command line, and ``error: <message>`` / exit status 1 for an expected error); hydra and
  omegaconf are imported inside its functions.
"""
