"""`khop compose`: what it writes, that it says the same as `khop run`, and that every file passes the
official Compose schema, `docker compose config` and the Swarm loader (`docker stack config`)."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

import docker_env  # tests/docker_env.py
from compose.cli import main
from compose.containers.compose_file import to_yaml
from compose.containers.secrets import unreadable_in_containers
from compose.run.config import RunConfig, process_args, validate
from compose.run.keys import make_keys
from topologies import load_topology, neighbours

yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml comes with check-jsonschema (pip install -e '.[test]')")


def load_yaml(path: Path):
    return yaml.YAML(typ="safe").load(path.read_text())


def khop_compose(out: Path, *args: str) -> tuple[int, str]:
    """`khop compose -o OUT ARGS` in this process (imports once): (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["compose", "-o", str(out), *args])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, err.getvalue()


# (file stem, arguments): the renders every validator below checks; {keys} is a `khop keys` directory
ROOT = Path(__file__).resolve().parent.parent
RENDERS = {
    "ring6": ["--name", "ring6"],
    "line6-k2": ["--name", "line6-k2", "--topology", "line", "--kappa", "2", "--algo", "ippo", "--steps", "9600",
                 "--envs", "8", "--seed", "3", "--set", "rollout_len=64", "--set", "lr_actor=1e-3", "--deadline", "45",
                 "--checkpoint-every", "2", "--relay", "async", "--image", "registry.example:5000/khop:0.1",
                 "--volume", "khop-runs"],
    "cheetah-nfs": ["--name", "cheetah-nfs", "--task", "safe-halfcheetah-2x3", "--nfs", "nfs.internal:/exports/khop"],
    "hopper-curve": ["--name", "hopper-curve", "--task", "mamujoco-hopper-3x1", "--curve", "{keys}"],
    "bind-node": ["--name", "bind-node", "--task", "mamujoco-hopper-3x1", "--bind", "/srv/khop", "--node", "worker-1"],
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """`khop keys DIR --agents 3` in a directory beside (not under) the compose files'."""
    d = tmp_path_factory.mktemp("keys") / "hopper"
    make_keys(d, 3)
    return d


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, keys) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("compose")
    out = {}
    for stem, args in RENDERS.items():
        code, err = khop_compose(d / f"{stem}.yaml", *[a.format(keys=keys) for a in args])
        assert code == 0, err
        out[stem] = d / f"{stem}.yaml"
    return out


def test_one_service_per_agent_with_khop_runs_own_arguments(rendered):
    path = rendered["line6-k2"]
    doc = load_yaml(path)
    services = doc["services"]
    assert sorted(services) == ["agent-0", "agent-1", "agent-2", "agent-3", "agent-4", "agent-5", "envserver"]
    cfg = RunConfig(topology="line", kappa=2, algo="ippo", steps=9600, envs=8, seed=3, deadline_s=45.0,
                    checkpoint_every=2, overrides=["rollout_len=64", "lr_actor=1e-3"], relay="async")
    validate(cfg)  # as `khop compose` does: settles κ's rule and the effective --actor-input the agents get
    assert cfg.actor_input == "local"
    expected = process_args(cfg, 6, "tcp://*:5555", "tcp://envserver:5555", PurePosixPath("/khop/topology.json"),
                            PurePosixPath("/runs/line6-k2"))
    assert services["envserver"]["command"] == ["envserver", *expected["envserver"]]
    for i in range(6):
        svc = services[f"agent-{i}"]
        assert svc["command"] == ["agentd", *expected[f"agent-{i}"]]
        assert svc["image"] == "registry.example:5000/khop:0.1"
        assert svc["init"] is True and svc["restart"] == "on-failure"
        assert svc["deploy"]["restart_policy"]["condition"] == "on-failure" and svc["deploy"]["replicas"] == 1
        assert svc["networks"] == ["khop"] and svc["depends_on"] == ["envserver"]
        assert {"type": "volume", "source": "runs", "target": "/runs"} in svc["volumes"]
        assert "7000" in " ".join(svc["healthcheck"]["test"])
    env = services["envserver"]
    assert env["restart"] == "no" and env["deploy"]["restart_policy"]["condition"] == "none"
    assert env["environment"]["KHOP_RUN_DIR"] == "/runs/line6-k2"
    assert doc["networks"]["khop"]["internal"] is True
    assert doc["volumes"]["runs"]["name"] == "khop-runs"
    assert "name" not in doc  # `docker stack deploy` refuses a top-level name


def test_topology_addresses_are_service_names_and_agents_bind_all_interfaces(rendered):
    doc = load_yaml(rendered["ring6"])
    topo_file = rendered["ring6"].with_name("ring6.topology.json")
    assert doc["configs"]["topology"]["file"] == "./ring6.topology.json"
    g = load_topology(topo_file)
    assert sorted(g.nodes) == list(range(6))
    assert neighbours(g, 0) == [1, 5]  # coop-game's ring
    for i in g.nodes:
        assert g.nodes[i]["address"] == f"tcp://agent-{i}:7000"
        assert g.nodes[i]["bind"] == "tcp://*:7000"
    for f in (topo_file, rendered["ring6"].with_name("ring6.config.json")):
        assert f.stat().st_mode & 0o444 == 0o444, f  # bind-mounted: readable by the containers' user
    config = json.loads(rendered["ring6"].with_name("ring6.config.json").read_text())
    assert config["run_dir"] == "/runs/ring6" and config["launcher"] == "compose" and config["n_agents"] == 6
    assert config["task"] == "coop-game" and config["steps"] == RunConfig().steps


def test_nfs_volume_for_a_swarm(rendered):
    doc = load_yaml(rendered["cheetah-nfs"])
    assert sorted(doc["services"]) == ["agent-0", "agent-1", "envserver"]
    vol = doc["volumes"]["runs"]
    assert vol["name"] == "khop-cheetah-nfs"
    assert vol["driver_opts"] == {"type": "nfs", "o": "addr=nfs.internal,rw,nfsvers=4", "device": ":/exports/khop"}


@pytest.mark.parametrize("stem", list(RENDERS))
def test_every_service_resolves_by_dns_round_robin(rendered, stem):
    """Swarm's default endpoint is a virtual IP that needs the kernel's IPVS; where that is missing
    (these machines) every connection to a service name fails. dnsrr needs nothing."""
    for name, svc in load_yaml(rendered[stem])["services"].items():
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name


def test_curve_keys_are_secrets_each_service_only_its_own_secret_key(rendered, keys):
    path = rendered["hopper-curve"]
    doc = load_yaml(path)
    services = doc["services"]
    mounted = {name: [m["source"] for m in svc["secrets"]] for name, svc in services.items()}
    assert mounted == {  # hopper-3x1 is the line 0-1-2
        "envserver": ["envserver.key_secret", "authorized_keys"],
        "agent-0": ["agent-0.key_secret", "envserver.key", "agent-1.key", "authorized_keys"],
        "agent-1": ["agent-1.key_secret", "envserver.key", "agent-0.key", "agent-2.key", "authorized_keys"],
        "agent-2": ["agent-2.key_secret", "envserver.key", "agent-1.key", "authorized_keys"],
    }
    for name, svc in services.items():
        assert svc["command"][-2:] == ["--curve", "/run/secrets"], name
        for m in svc["secrets"]:  # under /run/secrets, the image's user's alone (Swarm honours these)
            assert m["target"] == m["source"] and m["uid"] == m["gid"] == "1000" and m["mode"] == 0o400
        assert set(svc["environment"]) <= {"OMP_NUM_THREADS", "PYTHONUNBUFFERED", "KHOP_RUN_DIR"}
    for f, secret in doc["secrets"].items():
        assert secret["name"] == f"khop-hopper-curve-{f}"
        assert (path.parent / secret["file"]).resolve() == keys / f
    # no key material in anything written: the files are referenced, never copied
    key_lines = [line.split()[-1].strip('"') for f in keys.iterdir() for line in f.read_text().splitlines()
                 if "key" in line and "=" in line] + [line.split()[1] for line in
                                                      (keys / "authorized_keys").read_text().splitlines()[1:]]
    assert len(key_lines) >= 4 * 2
    for written in (path, path.with_name("hopper-curve.topology.json"), path.with_name("hopper-curve.config.json")):
        text = written.read_text()
        assert not [k for k in key_lines if k in text], written


def test_key_files_never_enter_an_image():
    """The build context re-admits compose/ (the default place for compose files, where a user may
    well keep keys too); key files are excluded again after it, and in .dockerignore the last match wins."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    last_include = max(i for i, line in enumerate(lines) if line.startswith("!"))
    for pattern in ("**/*.key", "**/*.key_secret", "**/authorized_keys"):
        assert pattern in lines[last_include:], pattern


def test_one_host_compose_cannot_read_keys_its_user_does_not_own(keys, tmp_path):
    files = sorted(os.listdir(keys))
    if os.stat(keys / files[0]).st_uid == 1000:
        pytest.skip("the keys belong to uid 1000 here, which is the containers' user")
    assert unreadable_in_containers(keys, files) == files  # `khop keys` writes 0600: only the owner reads
    copy = tmp_path / "k"
    shutil.copytree(keys, copy)
    (copy / files[0]).chmod(0o644)
    assert unreadable_in_containers(copy, files) == files[1:]


def test_bind_mount_on_one_node(rendered):
    doc = load_yaml(rendered["bind-node"])
    assert "volumes" not in doc
    for name, svc in doc["services"].items():
        assert svc["volumes"] == [{"type": "bind", "source": "/srv/khop", "target": "/runs"}], name
        assert svc["deploy"]["placement"] == {"constraints": ["node.hostname == worker-1"]}, name
    assert "placement" not in load_yaml(rendered["ring6"])["services"]["agent-0"]["deploy"]


def test_a_name_too_long_for_swarm_objects_is_a_warning(tmp_path):
    """Swarm refuses config and secret names over 64 characters; `docker compose` does not mind."""
    code, err = khop_compose(tmp_path / "x.yaml", "--name", "a" * 51)
    assert code == 0 and "warning: run name 'aaaa" in err and "has 65 characters (at most 64)" in err, err
    assert "has 65 characters" in " ".join(json.loads((tmp_path / "x.config.json").read_text())["warnings"])
    code, err = khop_compose(tmp_path / "y.yaml", "--name", "a" * 50)
    assert code == 0 and "too long" not in err, err


def test_curve_directory_without_the_agents_keys_is_refused(keys, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in ("envserver.key", "envserver.key_secret", "authorized_keys", "agent-0.key", "agent-0.key_secret"):
        shutil.copy(keys / f, partial / f)
    out = tmp_path / "out"
    code, err = khop_compose(out / "x.yaml", "--name", "x", "--task", "mamujoco-hopper-3x1", "--curve", str(partial))
    assert code == 2 and "missing agent-1.key" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--kappa", "-1"], "--kappa must be >= 0"),
    (["--topology", "halfcheetah-2x3"], "has 2 nodes but task has 6 agents"),
    (["--set", "nonsense=1"], "unknown learner override"),
    (["--name", "Bad Name"], "run name 'Bad Name'"),
    (["--nfs", "no-export"], "--nfs expects SERVER:/EXPORT"),
    (["--bind", "runs"], "--bind runs: the host directory must be an absolute path"),
    (["--bind", "/srv/khop", "--nfs", "nfs:/x"], "cannot go with --volume or --nfs"),
    (["--node", "two words"], "--node 'two words'"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    code, err = khop_compose(tmp_path / "x.yaml", "--name", "x", *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("stem", list(RENDERS))
def test_valid_against_the_compose_spec_schema(rendered, stem):
    res = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                          str(rendered[stem])], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("stem", list(RENDERS))
def test_docker_compose_config_accepts_it(rendered, stem):
    binary = docker_env.compose_binary()
    if binary is None:
        pytest.skip("no docker-compose v2 binary here (python tests/docker_env.py prepare installs one)")
    res = subprocess.run([str(binary), "-f", str(rendered[stem]), "-p", stem, "config", "-q"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    full = subprocess.run([str(binary), "-f", str(rendered[stem]), "-p", stem, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert full.returncode == 0 and not full.stderr.strip(), full.stderr  # no warning either
    doc = json.loads(full.stdout)
    assert doc["services"]["agent-0"]["restart"] == "on-failure"


def _stack_cli() -> str | None:
    for cli in (shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"):
        if cli and Path(cli).exists() and subprocess.run([cli, "stack", "config", "--help"], capture_output=True,
                                                         timeout=30).returncode == 0:
            return cli
    return None


@pytest.mark.parametrize("stem", list(RENDERS))
def test_swarm_loader_accepts_it(rendered, stem):
    cli = _stack_cli()
    if cli is None:
        pytest.skip("no docker CLI with `docker stack config` (Docker 24+) to run the Swarm loader")
    res = subprocess.run([cli, "stack", "config", "-c", str(rendered[stem])], capture_output=True, text=True,
                         timeout=120, cwd=rendered[stem].parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "agent-0" in res.stdout and "restart_policy" in res.stdout


@pytest.mark.parametrize("value", ["plain", "--flag", "tcp://*:5555", "yes", "no", "on", "null", "1e-3", "0",
                                   "a: b", "x, y", "[list]", "{map}", "#comment", "it's", 'say "hi"', "tab\there",
                                   "κ=1", "- dash", "", "/abs/path", "-c", "-"])
def test_yaml_writer_round_trips_every_string(value):
    doc = {"k": value, "lst": [value, "other", value], "nested": {"x": [{"y": value}]}}
    assert yaml.YAML(typ="safe").load(to_yaml(doc)) == doc
