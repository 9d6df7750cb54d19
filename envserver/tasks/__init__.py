"""Task registry: the names `khop tasks` lists and `--task` accepts.

Each entry maps a name to the class that builds it; a module is imported only when its task is
used, so the tabular game does not pay for importing MuJoCo.
"""
from __future__ import annotations

import importlib

from .base import AgentSpec, StepResult, TaskSpec, VecTask
from .physics_pool import resolve_threads

# name -> "module:Class" (relative to this package), kept as strings for lazy import
_ENTRIES: dict[str, str] = {
    # --- tabular games ---
    "coop-game": "coop_game:CoopGame",  # dpo.md §4.1, near-additive per agent (coop_game.py docstring)
    "coop-game-joint": "coop_game:CoopGameJoint",  # the same game with r and P drawn per joint action
    "matrix-game-1": "matrix_games:MatrixGame1",  # dpo.md Table 3, one-step 2x2 games
    "matrix-game-2": "matrix_games:MatrixGame2",
    "matrix-game-3": "matrix_games:MatrixGame3",
    "matrix-game-4": "matrix_games:MatrixGame4",
    "networked-mdp": "networked_mdp:NetworkedMDPTask",  # scalable-general-utilities.md §2, spatial decay
    # the same MDP with 16 … 256 agents on a ring: the benchmark's scaling tasks (bench/scaling.py, bench/memory.py)
    **{f"networked-mdp-ring{n}": f"networked_mdp:NetworkedMDPRing{n}" for n in (16, 32, 64, 128, 256)},
    "networked-mdp-start0": "networked_mdp:NetworkedMDPStart0",  # every agent starts in local state 0
    # --- end tabular games ---
    # --- MuJoCo tasks ---
    # safe-<robot>-<partition>[-local] and mamujoco-<robot>-<partition>, listed in mujoco_catalog
    # (pure data, no MuJoCo import); each class is built on first use by mujoco_tasks
    **importlib.import_module(f"{__name__}.mujoco_catalog").REGISTRY_ENTRIES,
    # two Shadow hands pass a block: the Safe MAIG ShadowHandOver stand-in (hand_over.py; needs khop[hands])
    "shadow-hand-over": "hand_over:ShadowHandOver",  # one agent per hand
    "shadow-hand-over-fingers": "hand_over:ShadowHandOverFingers",  # three finger groups per hand
    # the same two with the reference's other cost (ShadowHandOver_Safe_joint: A_FFJ1 alone)
    "shadow-hand-over-safe-joint": "hand_over:ShadowHandOverSafeJoint",
    "shadow-hand-over-fingers-safe-joint": "hand_over:ShadowHandOverFingersSafeJoint",
    # --- end MuJoCo tasks ---
    # --- particle and PettingZoo tasks ---
    "mpe-line-control": "particles:LineControl",
    "mpe-circle-control": "particles:CircleControl",
    "mpe-simple-spread": "pettingzoo_mpe:SimpleSpread",  # mpe2's simple_spread_v3 (N=5) via the PettingZoo adapter
    # "pettingzoo:package.module:factory" names are resolved by task_class(), not listed here
    # --- end particle and PettingZoo tasks ---
    # --- SMAX (JaxMARL's SMAC on jax; the smax extra) ---
    "smax-3m": "smax:Smax3m",
    "smax-2s3z": "smax:Smax2s3z",
    "smax-5m_vs_6m": "smax:Smax5mVs6m",
    "smax-smacv2-5-units": "smax:SmaxSmacv2FiveUnits",
    # --- end SMAX ---
}


def task_names() -> list[str]:
    return sorted(_ENTRIES)


def task_class(name: str) -> type[VecTask]:
    """Resolve a task name; unknown names raise ValueError naming the choices.

    ``pettingzoo:package.module:factory`` serves any PettingZoo ParallelEnv; its class is built
    (one env instantiated to read the spaces) and cached per name by ``pettingzoo_task``.
    """
    if name.startswith("pettingzoo:"):
        from .pettingzoo_task import pettingzoo_task_class

        return pettingzoo_task_class(name)
    try:
        entry = _ENTRIES[name]
    except KeyError:
        if name.startswith(("safe-", "mamujoco-")):  # name the bad robot or partition precisely
            importlib.import_module(f"{__name__}.mujoco_catalog").task_key(name)
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(task_names())} "
                         "(or pettingzoo:package.module:factory)") from None
    module_name, cls_name = entry.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, cls_name)


def task_spec(name: str) -> TaskSpec:
    return task_class(name).spec


def make_task(name: str, n_envs: int, seed: int, physics_threads: int = 1) -> VecTask:
    """``physics_threads``: threads stepping the copies (0: automatic, physics_pool.py). One by
    default here: a run asks for its own count (``--physics-threads``, automatic by default)."""
    threads = resolve_threads(physics_threads, n_envs)  # a bad count fails before the task is built
    task = task_class(name)(n_envs=n_envs, seed=seed)
    if threads > 1:
        task.use_threads(threads)
    return task


__all__ = ["AgentSpec", "StepResult", "TaskSpec", "VecTask", "make_task", "task_class", "task_names", "task_spec"]
