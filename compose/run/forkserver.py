"""The zygote: one warm parent per `khop run` that agents are forked from.

Why: every agent process imports torch (218 MB RSS), numpy, pyzmq and the learner code, and
builds its first tensors from nothing — ~160 MB of private memory and seconds of CPU each, the
same in every agent. This process does it once (``preload``), freezes what it has built (so the
children's garbage collector leaves those pages alone, gc.freeze), and then forks one child per
request; the children share those pages copy-on-write.

Each child is still its own process with its own everything that matters: it is forked *before*
any socket, zmq Context, learner or file of the agent exists (this process creates none of them),
its global random generators are reseeded from the OS (as a fresh interpreter's are), its
stdout/stderr go to its own log.txt, and it then runs ``python -m MODULE ARGS`` exactly as a
spawned agent does.

How a child ends up a child of the launcher: it is forked twice (the middle process exits at
once), so the kernel re-parents it to the nearest subreaper, the launcher (PR_SET_CHILD_SUBREAPER,
compose/run/zygote.py). The launcher then waits for it like any child of its own, and the child
sets PR_SET_PDEATHSIG once its parent *is* the launcher, so a SIGKILLed launcher still takes every
agent with it. A child that finds another parent (the launcher died while it was being forked)
exits at once.

Protocol over the SOCK_SEQPACKET socket the launcher passes (argv[1]): this process sends
``{"ready": …}`` once warm; each request is one JSON message ``{"name", "module", "argv",
"title"}`` carrying the open log file as an SCM_RIGHTS descriptor, answered ``{"pid": N}`` or
``{"error": "…"}``. End of file on the socket ends this process.
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import runpy
import signal
import socket
import sys
import time
import traceback

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def preload() -> None:
    """Import and warm up what every agent needs, so its pages are built once."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import mujoco  # noqa: F401  (the envserver's tasks and some agent-side task code import it)
    import numpy  # noqa: F401
    import torch
    import zmq  # noqa: F401  (no Context: a Context owns I/O threads, which a fork would not copy)

    torch.set_num_threads(1)  # agentd/core.py pin_threads: one thread per agent
    import agentd.agent  # noqa: F401  (all agentd.main imports; the module a child runs must not be loaded yet)
    import agentd.learner
    import envserver.tasks  # noqa: F401

    _warm_up(agentd.learner)


def _warm_up(learners) -> None:
    """One act → update cycle of a tiny discrete and a tiny continuous learner, so torch's lazy
    one-time work (autograd, optimiser and distribution code paths, kernels picked on first use)
    is done here and shared, not repeated in every agent."""
    import numpy as np

    from envserver.tasks.base import AgentSpec

    for spec in (AgentSpec(obs_dim=3, act_kind="discrete", act_dim=1, n_actions=2),
                 AgentSpec(obs_dim=3, act_kind="continuous", act_dim=1)):
        learner = learners.make_learner("dpo", spec, critic_dim=3, n_agents=1, n_envs=2, seed=0,
                                        overrides={"rollout_len": 4})
        obs = np.zeros((2, 3), np.float32)
        while not learner.ready():
            learner.act(obs, obs)
            learner.observe(np.zeros(2, np.float32), np.zeros((2, 0), np.float32), np.zeros(2, bool))
        learner.update(obs)


def serve(sock: socket.socket, launcher: int) -> None:
    """Answer fork requests until the launcher closes its end."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 1)
        except ConnectionResetError:
            return
        if not data:
            return
        try:
            request = json.loads(data)
            if len(fds) != 1:
                raise ValueError("a fork request carries exactly one log file descriptor")
            reply = {"pid": _fork(request, fds[0], sock, launcher)}
        except (OSError, ValueError, KeyError) as err:
            reply = {"error": f"{type(err).__name__}: {err}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(reply).encode())


def _fork(request: dict, log_fd: int, sock: socket.socket, launcher: int) -> int:
    """Fork twice; the grandchild becomes the agent, the middle process reports its pid and exits."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            me = os.getpid()
            child = os.fork()
            if child == 0:
                os.close(w)
                _become(request, log_fd, sock, launcher, me)
            os.write(w, str(child).encode())
        except BaseException as err:  # noqa: BLE001  (whatever happens, this process must not go on)
            os.write(w, f"!{err}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    os.waitpid(middle, 0)
    if not said or said.startswith("!"):
        raise OSError(f"fork failed: {said[1:] or 'the middle process said nothing'}")
    return int(said)


def _become(request: dict, log_fd: int, sock: socket.socket, launcher: int, middle: int) -> None:
    """The agent's side of the fork: adopt its files, wait to be the launcher's, reseed, run."""
    code = 1
    try:
        sock.close()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        while os.getppid() == middle:  # the middle process is exiting; the kernel re-parents us then
            time.sleep(0.0005)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher:  # the launcher died meanwhile: nobody would ever stop us
            os._exit(1)
        _fresh_process_state()
        from .proctitle import set_title

        set_title(request["title"], request["name"])
        code = _run_module(request["module"], request["argv"])
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what a normal interpreter exit runs (logging's flush among them)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fresh_process_state() -> None:
    """What a new interpreter would have and a fork would copy: the default signal handlers, and
    global random generators seeded from the OS. (khop's learners draw from their own seeded
    generators, agentd/learner/base.py; the globals only must not be one stream in every agent.)"""
    import numpy as np
    import random
    import torch

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed()
    np.random.seed()
    torch.seed()


def _run_module(module: str, argv: list[str]) -> int:
    """``python -m module argv…``: its exit code, as the interpreter would compute it."""
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    fd, launcher = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle; it closes us
    from .proctitle import set_title

    set_title([sys.executable, "-m", "compose.run.forkserver", str(fd), str(launcher)], "khop-zygote")
    sock = socket.socket(fileno=fd)
    started = time.monotonic()
    try:
        preload()
        gc.collect()
        gc.freeze()  # the children's collector then never writes to these objects' pages
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:  # a fork copies only the calling thread; another's locks would never be released
            sock.send(json.dumps({"error": f"the zygote runs {threads} threads after preloading; forking "
                                           "it is unsafe"}).encode())
            return 1
    except Exception as err:  # noqa: BLE001  (told to the launcher, which then spawns instead)
        traceback.print_exc()
        sock.send(json.dumps({"error": f"preloading failed: {type(err).__name__}: {err}"}).encode())
        return 1
    sock.send(json.dumps({"ready": True, "pid": os.getpid(), "preload_s": time.monotonic() - started}).encode())
    serve(sock, launcher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
