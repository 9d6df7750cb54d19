"""E copies of one SMAX map as two jit-compiled, vmapped jax functions: reset and step (with the
auto-reset, the episode's outcome and the next action masks in the same compiled call).

Imported only by smax.py when an smax task is built, because importing jax costs seconds and
~950 MB of install. Before the import it pins jax to the CPU and XLA's CPU backend to one thread
(unless the user set ``JAX_PLATFORMS`` / ``XLA_FLAGS``): the envserver shares a 2-core machine with
one process per agent, and on E = 8 copies XLA's thread pool measured slower than one thread (see
docs/tasks.md, "SMAX").

Why the state is cast to strong types: SMAX's reset builds some fields from Python scalars (weakly
typed int32) that its step returns strongly typed, so the first step after a reset compiled the
step a second time (5–13 s per map and batch, ecosystem.md §3). Casting both to strong types keeps
one compiled step for the whole run.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402 - after the environment above, which jax reads at import
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario  # noqa: E402

log = logging.getLogger("envserver")


@dataclass
class BatchStep:
    """One step of the E copies, as numpy: obs [n, E, obs_dim], reward / done / decided / won [E],
    masks [n, E, n_actions] (after the auto-reset of the copies that finished)."""
    obs: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    decided: np.ndarray
    won: np.ndarray
    masks: np.ndarray


def _strong(tree):
    return jax.tree.map(lambda x: lax.convert_element_type(x, x.dtype), tree)


class SmaxBatch:
    def __init__(self, map_name: str, n_envs: int, seed: int) -> None:
        # HeuristicEnemySMAX's defaults: enemies shoot and attack the closest ally (JaxMARL's SMAX baselines)
        env = HeuristicEnemySMAX(scenario=map_name_to_scenario(map_name))
        self.env, self.n_envs, self.map_name = env, n_envs, map_name
        self.n_allies = env.num_allies
        self.names = [f"ally_{i}" for i in range(self.n_allies)]
        self.obs_dim = int(env.observation_space(self.names[0]).shape[0])
        self.n_actions = int(env.action_space(self.names[0]).n)
        self._reset = jax.jit(jax.vmap(self._reset_one))
        self._step = jax.jit(jax.vmap(self._step_one))
        self.keys = jax.random.split(jax.random.PRNGKey(seed), n_envs)
        self.state = None
        self.compile_s = self._compile()

    def _compile(self) -> tuple[float, float]:
        """Compile reset and step now, on a throwaway state (the keys are left as they are): the
        seconds this takes fall in the task's build, before the envserver admits any agent, not
        inside a step's deadline. Returns (reset, step) seconds, which the envserver logs."""
        started = time.perf_counter()
        _key, state, _obs, _masks = jax.block_until_ready(self._reset(self.keys))
        between = time.perf_counter()
        jax.block_until_ready(self._step(self.keys, state, jnp.zeros((self.n_envs, self.n_allies), jnp.int32)))
        done = time.perf_counter()
        log.info("SMAX %s, %d copies: jit compiled reset in %.1f s, step in %.1f s", self.map_name, self.n_envs,
                 between - started, done - between)
        return between - started, done - between

    # --- one copy, traced once and vmapped over E ------------------------------------------------
    def _observe(self, state):
        obs = self.env.get_obs(state)
        avail = self.env.get_avail_actions(state)
        return (jnp.stack([obs[a] for a in self.names]).astype(jnp.float32),
                jnp.stack([avail[a] for a in self.names]).astype(jnp.bool_))

    def _reset_one(self, key):
        key, sub = jax.random.split(key)
        _obs, state = self.env.reset(sub)
        state = _strong(state)
        return (key, state, *self._observe(state))

    def _step_one(self, key, state, actions):
        key, k_step, k_reset = jax.random.split(key, 3)
        _obs, state, rewards, dones, _ = self.env.step_env(k_step, state, dict(zip(self.names, actions)))
        alive = state.state.unit_alive
        allies_dead, enemies_dead = ~alive[:self.n_allies].any(), ~alive[self.n_allies:].any()
        done = dones["__all__"]
        _obs, fresh = self.env.reset(k_reset)
        state = jax.tree.map(lambda new, old: lax.select(done, new, old), _strong(fresh), _strong(state))
        obs, masks = self._observe(state)
        return (key, state, obs, rewards[self.names[0]].astype(jnp.float32), done,
                allies_dead | enemies_dead, enemies_dead & ~allies_dead, masks)

    # --- the E copies, as numpy ----------------------------------------------------------------------
    def reset(self) -> tuple[np.ndarray, np.ndarray]:
        """Reset every copy: (obs [n, E, obs_dim], masks [n, E, n_actions])."""
        self.keys, self.state, obs, masks = self._reset(self.keys)
        return np.array(obs).swapaxes(0, 1), np.array(masks).swapaxes(0, 1)

    def step(self, actions: np.ndarray) -> BatchStep:
        """``actions`` [E, n] int: step every copy, auto-resetting those whose battle ended."""
        self.keys, self.state, obs, reward, done, decided, won, masks = self._step(
            self.keys, self.state, jnp.asarray(actions, dtype=jnp.int32))
        return BatchStep(np.array(obs).swapaxes(0, 1), np.array(reward), np.array(done), np.array(decided),
                         np.array(won), np.array(masks).swapaxes(0, 1))
