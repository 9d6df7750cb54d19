"""`khop run` on one machine: the run configuration, the launcher and its supervisor, the zygote
agents are forked from, the in-process runner, the progress bar and the CurveZMQ key tool."""
