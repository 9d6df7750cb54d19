"""envserver: owns the physics of one task and serves it to agentd processes over one ROUTER socket.

Importing this package — which the other khop packages do first — gives the process one BLAS
thread. OpenBLAS reads OMP_NUM_THREADS / OPENBLAS_NUM_THREADS once, when numpy loads it, and khop's
processes share few cores (N agents, or N learners in one in-process run), so a second BLAS thread
only spins: with the actor in numpy at E = 32 it doubled the in-process reference's CPU
(bench/NOTES.md §19). setdefault: a setting the user made wins.
"""
import os as _os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
