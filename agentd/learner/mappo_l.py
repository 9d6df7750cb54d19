"""MAPPO-L: the centralised reference of DEC-MAPPO-L (Gu et al. 2023; safe-mamujoco.md §5).

The same learner as :class:`~agentd.learner.dec_mappo_l.DecMAPPOL`; what makes it centralised is
the input, not the loss: run it with κ = graph diameter, so every critic sees every agent's
observation (the lead sets κ). Like the MACPO-repo and SafePO implementations it updates agents
sequentially with the HAPPO token (SafePO ``mappolag.py`` Runner.train: a random permutation and
``factor``) and, like every MAPPO actor, acts on its own observation; all other hyperparameters
equal DEC-MAPPO-L's, so the two differ only in κ, the update order and the actor's input.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .dec_mappo_l import DecMAPPOL


class MAPPOL(DecMAPPOL):
    """MAPPO-L: DEC-MAPPO-L run centralised (κ = diameter), sequential updates (Gu et al. 2023)."""

    algo = "mappo-l"
    centralised = True  # κ = graph diameter by default
    defaults: ClassVar[dict[str, Any]] = {
        **DecMAPPOL.defaults,
        "update_order": "sequential",
        "actor_input": "local",  # MAPPO-L's actors act on their own observation (centralised critic only)
    }
