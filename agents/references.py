"""Published evaluation returns at 100k environment steps from pixels, for the final summary.

The numbers are the papers' tables (see ../shared/PAPERS.md in the project's notes): CURL's
Table 1 (Laskin et al. 2020) for PlaNet, Dreamer and CURL; DrQ (Kostrikov et al. 2020);
DreamerV3 (Hafner et al. 2023). Keyed by the resolved environment name
(:func:`envs.registry.resolve_name`), so ``cheetah`` and ``dmc:cheetah-run`` find the same row.
"""

from __future__ import annotations

from envs.registry import resolve_name

__all__ = ["REFERENCE_ENV_STEPS", "REFERENCES", "references_for"]

#: The environment steps at which the references were measured.
REFERENCE_ENV_STEPS = 100_000

#: ``{resolved env name: {method: return at 100k env steps}}``.
REFERENCES: dict[str, dict[str, float]] = {
    "dmc:cheetah-run": {
        "PlaNet": 138,
        "Dreamer": 238,
        "CURL": 299,
        "DreamerV3": 337,
        "DrQ": 344,
    },
    "dmc:cartpole-swingup": {"PlaNet": 297, "Dreamer": 326, "CURL": 582, "DrQ": 759},
}


def references_for(env_name: str) -> dict[str, float]:
    """The published returns at 100k steps for ``env_name`` (a preset or full name); ``{}`` for
    an environment without published pixel-based references here."""
    try:
        return dict(REFERENCES.get(resolve_name(env_name), {}))
    except ValueError:
        return {}
