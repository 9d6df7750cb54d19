"""Fixtures shared by several test modules."""
import os
import sys

import pytest


@pytest.fixture()
def sandbox(tmp_path, monkeypatch, request):
    """An experiment script's runs, cell records and results go under tmp_path instead of the
    checkout's runs/ and experiments/results/; the script is the requesting module's ``SCRIPT``."""
    from experiments import common

    monkeypatch.setattr(common, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(request.module.SCRIPT, "RESULTS", tmp_path / "results")
    return tmp_path


@pytest.fixture(scope="session")
def docker_engine():
    """(engine, image): a private dockerd in a network namespace of its own (tests/docker_env.py)
    with the khop image built on it — once per test session, since the compose and the Swarm tests
    share it and an image build costs a minute of the machine's cores. Skips, saying why, where no
    engine can be had; afterwards the host is as it was (daemon stopped, namespace deleted,
    ip_forward restored), which the teardown asserts."""
    import time
    from pathlib import Path

    import docker_env  # tests/docker_env.py: the test engine's setup, not part of the installed package

    def log(msg: str) -> None:
        print(f"[docker_engine {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    # one name per concurrent test session on a machine: starting an engine stops any of the same name
    eng = docker_env.Engine(os.environ.get("KHOP_TEST_ENGINE") or "khoptest")
    timings = {}
    try:
        t0 = time.monotonic()
        try:
            eng.start()
        except docker_env.EngineUnavailable as err:
            pytest.skip(f"no Docker engine can be started here: {err}")
        timings["engine start"] = time.monotonic() - t0
        t0 = time.monotonic()
        try:
            base = eng.base_image()
        except docker_env.EngineUnavailable as err:
            pytest.skip(f"no base image can be made here: {err}")
        timings["base image"] = time.monotonic() - t0
        t0 = time.monotonic()
        image = eng.build_image("khop:test")
        timings["image build"] = time.monotonic() - t0
        log(f"engine ready ({base}, {image}): " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        yield eng, image
    finally:
        t0 = time.monotonic()
        eng.stop()
        log(f"engine stopped and namespace removed in {time.monotonic() - t0:.0f} s")
        assert not Path(f"/run/netns/{eng.name}").exists()
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward
