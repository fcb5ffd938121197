"""The Docker path cannot run here (no Docker engine), so these tests keep
docker-compose.yml, the Dockerfile and the Prometheus/Grafana files consistent
with each other and with the code's real settings: change one side and a test
fails."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import nudge.cli
from nudge.ops.local_kafka import KAFKA_VERSION
from nudge.streams.settings import Settings, environment_reference

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "ops/prometheus/prometheus.yml"
GRAFANA_DATASOURCE = ROOT / "ops/grafana/provisioning/datasources/prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "ops/grafana/provisioning/dashboards/dashboards.yml"

#: Settings that are secrets: never a literal in a checked-in file.
SECRETS = ("NUDGE_API_TOKEN", "KAFKA_SASL_PASSWORD")
#: `${NAME}`, `${NAME:?message}` or `${NAME?message}`: from the caller's environment,
#: with no default (a default would be a literal secret).
SECRET_INTERPOLATION = r"^\$\{%s(:?\?[^}]*)?\}$"
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|PRIVATE_KEY|API_KEY", re.I)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's environment as strings, from the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def reference_variables() -> set[str]:
    return {name for name, _default, _doc in environment_reference()}


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)} (host '' means all interfaces)."""
    listeners = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        listeners[name] = (host, int(port))
    return listeners


def healthcheck_url(service: dict) -> str:
    test = service["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    match = re.search(r"https?://[^\s'\"]+", text)
    assert match, f"no URL in healthcheck {text!r}"
    return match.group(0)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def mounted_host_paths(services: dict) -> list[tuple[str, str]]:
    """(service, host path) of every bind mount (short or long syntax)."""
    found = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    found.append((name, volume["source"]))
            elif volume.startswith((".", "/")) and ":" in volume:
                found.append((name, volume.split(":", 1)[0]))
    return found


# -- worker <-> Settings ---------------------------------------------------------------


def test_worker_sets_only_variables_the_code_reads(services: dict) -> None:
    env = environment(services["worker"])
    assert env, "the worker must be configured through its environment"
    unknown = set(env) - reference_variables() - {"KAFKA_BOOTSTRAP_SERVERS"}
    assert not unknown, f"worker env vars no setting reads: {sorted(unknown)}"


def test_dockerfile_env_is_read_by_the_code() -> None:
    env = dockerfile_env()
    unknown = (
        set(env)
        - reference_variables()
        - {
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONUNBUFFERED",
            "PIP_NO_CACHE_DIR",
            "PIP_DISABLE_PIP_VERSION_CHECK",
        }
    )
    assert not unknown, f"Dockerfile ENV no setting reads: {sorted(unknown)}"


def container_settings(services: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the worker container builds them: compose values over the image's ENV."""
    for name in reference_variables():
        monkeypatch.delenv(name, raising=False)
    env = {**dockerfile_env(), **environment(services["worker"])}
    for name, value in env.items():
        if name in reference_variables():
            monkeypatch.setenv(name, "test-secret" if value.startswith("${") else value)
    return Settings()


def worker_volumes(services: dict) -> dict[str, str | None]:
    """Container path -> volume name of the worker's mounts (None: anonymous)."""
    mounts = {}
    for volume in services["worker"]["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source")
        else:
            source, _, target = volume.rpartition(":") if ":" in volume else ("", "", volume)
            if target in ("ro", "rw"):
                source, _, target = source.rpartition(":")
            mounts[target] = source or None
    return mounts


def test_worker_environment_builds_valid_settings(
    services: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose values (over the image's ENV) parse into Settings, as in the container."""
    settings = container_settings(services, monkeypatch)
    assert settings.web_host == "0.0.0.0", "the worker must listen beyond the container's lo"
    assert settings.api_token == "test-secret"
    assert str(settings.data_dir) in worker_volumes(services), (
        f"NUDGE_DATA_DIR {settings.data_dir} is not a volume: tables would live in the"
        " container layer"
    )
    assert worker_volumes(services)[str(settings.data_dir)] is None, (
        "tables need a volume per replica (anonymous), never one shared by all"
    )


def test_worker_models_come_from_a_volume_every_replica_shares(
    compose: dict, services: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image ships no model: without a model volume every container would
    serve the heuristic forever, whatever anyone trains."""
    model_dir = str(container_settings(services, monkeypatch).model_dir)
    assert model_dir == dockerfile_env()["NUDGE_MODEL_DIR"], "the image sets no model dir"
    mounts = worker_volumes(services)
    assert model_dir in mounts, f"NUDGE_MODEL_DIR {model_dir} is not a worker volume"
    assert mounts[model_dir] in compose["volumes"], (
        "the model volume must be named, so one deployment reaches every replica"
    )
    instructions = dockerfile_instructions()
    declared = [json.loads(args) for instruction, args in instructions if instruction == "VOLUME"]
    assert any(model_dir in paths for paths in declared), "the Dockerfile declares no VOLUME"
    run = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert re.search(rf"mkdir -p [^&]*{model_dir}\b", run), "the image does not create it"
    assert re.search(rf"chown nudge [^&]*{model_dir}\b", run), (
        "`nudge train --out` run as the image's user could not write into it"
    )


def test_worker_reaches_kafka_on_its_internal_listener(services: dict) -> None:
    kafka_env = environment(services["kafka"])
    advertised = parse_listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    kafka_names = {"kafka", services["kafka"].get("hostname", "kafka")}
    internal = {f"{host}:{port}" for host, port in advertised.values() if host in kafka_names}
    assert internal, "kafka advertises no listener reachable by service name"
    bootstrap = environment(services["worker"])["KAFKA_BOOTSTRAP_SERVERS"]
    for server in bootstrap.split(","):
        assert server in internal, f"{server} is not a listener kafka advertises to containers"
    assert "kafka" in services["worker"]["depends_on"]
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in services["kafka"]


def test_worker_healthcheck_probes_the_web_port(services: dict) -> None:
    worker = services["worker"]
    port = int(environment(worker)["NUDGE_WEB_PORT"])
    url = urlsplit(healthcheck_url(worker))
    assert url.port == port
    assert url.path == "/ready"
    assert '"/ready"' in (ROOT / "streams/views.py").read_text(), "the worker serves no /ready"
    assert str(port) in [str(p) for p in worker.get("expose", [])]


def test_worker_scales(services: dict) -> None:
    """`--scale worker=3` fails on a container_name or a fixed host port."""
    worker = services["worker"]
    assert "container_name" not in worker
    for mapping in worker.get("ports", []):
        # Only "6066" (an ephemeral host port per replica) can be published by each replica.
        fixed = mapping.get("published") if isinstance(mapping, dict) else ":" in str(mapping)
        assert not fixed, f"fixed host port {mapping}"


# -- kafka -------------------------------------------------------------------------------


def test_kafka_image_is_the_version_the_tests_run(services: dict) -> None:
    image, _, tag = services["kafka"]["image"].rpartition(":")
    assert image == "apache/kafka"
    assert tag == KAFKA_VERSION


def test_kafka_kraft_single_node_is_consistent(services: dict) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols)
    assert controller in listeners and controller not in advertised
    assert set(advertised) <= set(listeners)
    for name, (_host, port) in advertised.items():
        assert listeners[name][1] == port, f"{name} advertises another port than it binds"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == listeners[controller][1]
    assert len(advertised) >= 2, "one listener for containers, one for the host"
    host_ports = {
        int(str(p).split(":")[-1]) for p in services["kafka"].get("ports", []) if ":" in str(p)
    }
    host_listeners = {p for h, p in advertised.values() if h in ("localhost", "127.0.0.1")}
    assert host_listeners and host_listeners <= host_ports, "host listener not published"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"


# -- secrets -----------------------------------------------------------------------------


def test_secrets_come_from_the_environment(services: dict) -> None:
    assert set(SECRETS) <= reference_variables()
    worker_env = environment(services["worker"])
    assert "NUDGE_API_TOKEN" in worker_env, "the worker's HTTP API needs its token"
    for name, service in services.items():
        for key, value in environment(service).items():
            if key in SECRETS or SECRET_WORDS.search(key):
                assert re.match(SECRET_INTERPOLATION % re.escape(key), value), (
                    f"{name}.{key} must be ${{{key}}} from the environment, not {value!r}"
                )
    assert not set(SECRETS) & set(dockerfile_env()), "no secret baked into the image"


# -- Prometheus and Grafana --------------------------------------------------------------


def test_mounted_host_paths_exist(services: dict) -> None:
    mounts = mounted_host_paths(services)
    assert any(path.startswith("./ops/") for _, path in mounts)
    for service, path in mounts:
        assert (ROOT / path).exists(), f"{service} mounts {path}, which is not in the repo"


def test_prometheus_discovers_every_worker(services: dict) -> None:
    config = load_yaml(PROMETHEUS)
    port = int(environment(services["worker"])["NUDGE_WEB_PORT"])
    jobs = [
        job
        for job in config["scrape_configs"]
        if any("worker" in sd.get("names", []) for sd in job.get("dns_sd_configs", []))
    ]
    assert len(jobs) == 1, "one job discovers the workers through DNS"
    job = jobs[0]
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A"
    assert sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["scrape_interval"] == "5s"
    mounted = {path for _, path in mounted_host_paths({"p": services["prometheus"]})}
    assert "./" + str(PROMETHEUS.relative_to(ROOT)) in mounted


def test_prometheus_rule_files_exist_and_define_worker_down(services: dict) -> None:
    config = load_yaml(PROMETHEUS)
    mounts = {
        v.split(":")[1]: v.split(":")[0]
        for v in services["prometheus"]["volumes"]
        if isinstance(v, str) and v.startswith(".")
    }
    alerts = set()
    for rule_file in config.get("rule_files", []):
        target = rule_file if rule_file.startswith("/") else f"/etc/prometheus/{rule_file}"
        assert target in mounts, f"rule file {rule_file} is not mounted into prometheus"
        for group in load_yaml(ROOT / mounts[target])["groups"]:
            for rule in group["rules"]:
                assert rule["expr"]
                alerts.add(rule.get("alert"))
    if config.get("rule_files"):
        assert "NudgeWorkerDown" in alerts


def test_grafana_provisioning_points_at_prometheus(services: dict) -> None:
    (datasource,) = load_yaml(GRAFANA_DATASOURCE)["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname in services, "the datasource names no compose service"
    published = [str(p).split(":")[-1] for p in services[url.hostname].get("ports", [])]
    assert str(url.port) in published
    (provider,) = load_yaml(GRAFANA_DASHBOARDS)["providers"]
    dashboards_path = provider["options"]["path"]
    grafana_mounts = {
        v.split(":")[1]: v.split(":")[0]
        for v in services["grafana"]["volumes"]
        if isinstance(v, str) and v.startswith(".")
    }
    assert dashboards_path in grafana_mounts
    assert (ROOT / grafana_mounts[dashboards_path]).is_dir()
    assert grafana_mounts.get("/etc/grafana/provisioning") == "./ops/grafana/provisioning"


# -- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_runs_the_declared_console_script() -> None:
    instructions = dockerfile_instructions()
    (base,) = [args for instruction, args in instructions if instruction == "FROM"]
    assert base.startswith("python:3.11")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requires["requires-python"] == ">=3.11"
    (cmd,) = [json.loads(args) for instruction, args in instructions if instruction == "CMD"]
    scripts = requires["scripts"]
    assert cmd[0] in scripts, f"CMD runs {cmd[0]}, pyproject declares {sorted(scripts)}"
    assert cmd[1:] == ["worker"]
    assert any(i == "RUN" and "pip install" in a and " ." in a for i, a in instructions)
    module, _, function = scripts[cmd[0]].partition(":")
    cli = __import__(module, fromlist=[function])
    with pytest.raises(SystemExit) as exit_info:  # the subcommand exists
        getattr(cli, function)([*cmd[1:], "--help"])
    assert exit_info.value.code == 0


def test_dockerfile_config_comes_from_the_installed_package() -> None:
    """The image installs nudge (`pip install .`) and reads the shipped config as
    package data (tests/unit/test_packaging.py), so it needs no path into /app."""
    env = dockerfile_env()
    assert not {"NUDGE_CATALOG", "NUDGE_POLICY", "NUDGE_EXPERIMENTS"} & set(env)
    assert any("pip install --no-deps ." in args for _, args in dockerfile_instructions())


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".cache", ".data", ".git"} <= ignored
    assert not {"config", "pyproject.toml", "README.md"} & ignored


def test_topics_are_created_before_the_workers_start(services: dict) -> None:
    topics = services["topics"]
    assert topics["command"][:2] == ["nudge", "topics"]
    assert "topics" in nudge.cli.COMMANDS
    assert (
        topics["environment"]["NUDGE_PARTITIONS"]
        == services["worker"]["environment"]["NUDGE_PARTITIONS"]
    )
    assert (
        topics["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
        == services["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    )
    waits_for = services["worker"]["depends_on"]["topics"]["condition"]
    assert waits_for == "service_completed_successfully"


def test_simulator_feeds_the_workers_through_the_internal_listener(services: dict) -> None:
    simulator = services["simulator"]
    command = simulator["command"]
    assert command[:2] == ["nudge", "simulate"] and "simulate" in nudge.cli.COMMANDS
    bootstrap = command[command.index("--kafka") + 1]
    assert bootstrap == services["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert simulator["depends_on"]["worker"]["condition"] == "service_healthy"
    nudge.cli.build_parser().parse_args(command[1:])  # the arguments are ones simulate takes
