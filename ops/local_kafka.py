# Kafka 4.1.2: newest patch of 4.1, a mature 4.x line (KRaft only). Verified against it here:
# kafka-python 3.0.12 (create_topics, keyed produce, group consume + commit), aiokafka 0.14
# (group consume + commit, idempotent producer, transactions incl. abort and
# send_offsets_to_transaction, read_committed) and a faust-streaming 0.15.3 worker with a
# rocksdb:// table. Nothing needed the 3.9.x fallback.
"""Run a real single-node Apache Kafka broker (KRaft) from Maven Central jars, without Docker.

Development and integration tests need a genuine broker (consumer groups, transactions,
topic admin), and this machine reaches Maven Central but no container registry, so the
broker jars are fetched once with Maven and the JVM is started directly.

Usage: ``python -m nudge.ops.local_kafka start --port 9092 --data-dir .data/kafka``,
``... stop --data-dir .data/kafka`` and ``... status --data-dir .data/kafka``.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nudge.errors import UserError

KAFKA_VERSION = "4.1.2"

#: The pom and log4j configuration, installed with the package.
KAFKA_OPS_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_OPS_DIR / "pom.xml"
LOG4J2_CONFIG = KAFKA_OPS_DIR / "log4j2.properties"
#: Where the broker jars are kept between runs (shared by every checkout and install).
CACHE_DIR = Path(os.environ.get("NUDGE_CACHE_DIR", Path.home() / ".cache" / "nudge")) / "kafka"

HOST = "127.0.0.1"
# Small heap: the machine has 2 cores and other services; a dev broker needs little.
JVM_OPTS = ["-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
# Files inside data_dir.
PID_FILE = "kafka.pid"
OUT_FILE = "kafka.out"
STATE_FILE = "local_kafka.json"
PROPERTIES_FILE = "server.properties"
LOG_DIR = "data"  # Kafka's log.dirs (topic partitions and the KRaft metadata log)
APP_LOG_DIR = "logs"  # log4j output (server.log)
MARKER_FILE = ".complete"

#: Name of the client listener when SASL is on (Kafka lower-cases it in per-listener keys).
SASL_LISTENER = "SASL_PLAINTEXT"
#: The account the broker itself and the readiness probe use on a SASL listener.
SASL_BROKER_USER = "localkafka"
#: What a JAAS quoted string can hold without escaping (no quote, backslash or control chars).
_JAAS_SAFE = re.compile(r"[^\"\\\x00-\x1f\x7f]+")
_SASL_USER = re.compile(r"[A-Za-z0-9_.-]+")

log = logging.getLogger(__name__)

# Brokers started by this process, so their exit is reaped (no zombie looks alive).
_children: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(UserError):
    """The local broker could not be provisioned, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerHandle:
    """A running local broker: where clients connect and where its files live."""

    bootstrap_servers: str
    port: int
    controller_port: int
    data_dir: Path
    pid: int
    #: PLAINTEXT, or SASL_PLAINTEXT when started with ``sasl_users`` (PLAIN mechanism).
    security_protocol: str = "PLAINTEXT"

    def stop(self, timeout: float = 30) -> None:
        """Stop this broker (same as ``stop(handle.data_dir)``)."""
        stop(self.data_dir, timeout)


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    """Folder holding every jar the broker needs, one folder per Kafka version."""
    return CACHE_DIR / version / "libs"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Download the broker jars with Maven unless a complete copy is already cached.

    A marker file is written only after Maven succeeded, so an interrupted download is
    redone rather than trusted; a file lock keeps parallel callers from racing.
    """
    libs = libs_dir(version)
    marker = libs / MARKER_FILE
    if marker.exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs.parent / ".lock"):
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                f"Maven (mvn) not found on PATH; it is needed once to fetch Kafka {version}"
                f" into {libs}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        log.info("downloading Kafka %s jars with Maven into %s", version, libs)
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(libs.glob(f"kafka_2.13-{version}.jar")):
            output = (result.stdout + result.stderr).strip().splitlines()
            raise LocalKafkaError(
                f"Maven could not fetch Kafka {version} jars (exit {result.returncode}):\n"
                + "\n".join(output[-30:])
            )
        marker.write_text(f"{version}\n")
        log.info("Kafka jars ready in %.1fs", time.monotonic() - started)
    return libs


def broker_properties(port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    """server.properties for one combined broker+controller node on loopback."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir / LOG_DIR),
        # Two cores: a few threads are plenty for a dev/test broker.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.partitions": "8",
        "default.replication.factor": "1",
        # Topics must be created on purpose (faust declares its own; our code and tests use
        # the admin API), so a typo or a missing setup step fails loudly instead of silently
        # creating a topic with the wrong partition count.
        "auto.create.topics.enable": "false",
        # Single node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.min.isr": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions than the default 50: first group/transaction is ready sooner.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        # Tests and workers join groups right away; don't wait 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
    }


def sasl_properties(
    port: int, controller_port: int, users: Mapping[str, str], broker_password: str
) -> dict[str, str]:
    """Overrides that make the client listener SASL_PLAINTEXT with the PLAIN mechanism.

    Users and passwords live in the listener's JAAS config, as Kafka's PLAIN server
    expects; the broker authenticates to itself as ``SASL_BROKER_USER``. The
    controller listener stays PLAINTEXT on loopback.
    """
    for user, password in users.items():
        if not _SASL_USER.fullmatch(user) or user == SASL_BROKER_USER:
            raise LocalKafkaError(f"unusable SASL user name {user!r}")
        if not _JAAS_SAFE.fullmatch(password):
            raise LocalKafkaError(f"the password of SASL user {user!r} cannot go in a JAAS config")
    accounts = {SASL_BROKER_USER: broker_password, **users}
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        f' username="{SASL_BROKER_USER}" password="{broker_password}"'
        + "".join(f' user_{user}="{password}"' for user, password in accounts.items())
        + ";"
    )
    listener = SASL_LISTENER.lower()
    return {
        "listeners": f"{SASL_LISTENER}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"{SASL_LISTENER}://{HOST}:{port}",
        "inter.broker.listener.name": SASL_LISTENER,
        "listener.security.protocol.map": f"{SASL_LISTENER}:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"listener.name.{listener}.plain.sasl.jaas.config": jaas,
    }


def start(
    port: int,
    data_dir: Path,
    controller_port: int | None = None,
    timeout: float = 90,
    sasl_users: Mapping[str, str] | None = None,
) -> BrokerHandle:
    """Start a broker on ``127.0.0.1:port`` storing everything under ``data_dir``.

    Returns once a client really gets cluster metadata, not merely when the port opens.
    Restarting on the same data_dir keeps topics and offsets (same cluster id and
    controller port, stored in the data dir).

    ``sasl_users`` ({user: password}) makes the client listener SASL_PLAINTEXT with
    the PLAIN mechanism, for testing clients against an authenticating broker; the
    passwords go only into the data dir's server.properties (mode 0600).
    """
    java = _find_java()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if is_running(data_dir):
        raise LocalKafkaError(
            f"a broker is already running for {data_dir} (pid {_read_pid(data_dir)})"
        )

    state = _read_state(data_dir)
    if controller_port is None:
        controller_port = state.get("controller_port") or free_port()
    for p in (port, controller_port):
        if not _port_free(p):
            raise LocalKafkaError(
                f"port {HOST}:{p} is busy; pick another port or stop what uses it"
            )
    state.setdefault("cluster_id", _new_cluster_id())
    state.update(version=KAFKA_VERSION, port=port, controller_port=controller_port)
    _write_state(data_dir, state)

    libs = ensure_jars()
    properties = data_dir / PROPERTIES_FILE
    settings = broker_properties(port, controller_port, data_dir)
    probe_security: dict[str, str] = {}
    if sasl_users is not None:
        broker_password = secrets.token_urlsafe(24)  # new each start, only in the file
        settings.update(sasl_properties(port, controller_port, sasl_users, broker_password))
        probe_security = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": SASL_BROKER_USER,
            "sasl_plain_password": broker_password,
        }
        properties.touch(mode=0o600)
        properties.chmod(0o600)
    properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    base_command = [
        java,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={data_dir / APP_LOG_DIR}",
        "-cp",
        str(libs / "*"),  # expanded by java itself, not by a shell
    ]
    if not (data_dir / LOG_DIR / "meta.properties").exists():
        _format_storage(base_command, properties, state["cluster_id"])

    with open(data_dir / OUT_FILE, "ab") as out:
        out.write(f"--- local_kafka start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        process = subprocess.Popen(
            [*base_command, "kafka.Kafka", str(properties)],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: survives our Ctrl-C, killed as a group
        )
    _children[process.pid] = process
    (data_dir / PID_FILE).write_text(f"{process.pid}\n")
    bootstrap = f"{HOST}:{port}"
    started = time.monotonic()
    try:
        _wait_until_ready(
            process, bootstrap, data_dir, deadline=started + timeout, security=probe_security
        )
    except BaseException:
        stop(data_dir, timeout=10)
        raise
    log.info("Kafka %s ready at %s in %.1fs", KAFKA_VERSION, bootstrap, time.monotonic() - started)
    protocol = SASL_LISTENER if sasl_users is not None else "PLAINTEXT"
    return BrokerHandle(bootstrap, port, controller_port, data_dir, process.pid, protocol)


def stop(data_dir: Path, timeout: float = 30) -> None:
    """Stop the broker of ``data_dir``: SIGTERM (clean shutdown), SIGKILL after ``timeout``.

    Does nothing if no broker is running, so it is safe to call twice.
    """
    data_dir = Path(data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is not None and _is_our_broker(pid, data_dir):
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if _wait_for_exit(pid, wait):
                break
        else:
            raise LocalKafkaError(f"broker pid {pid} did not exit even after SIGKILL")
    if pid is not None:
        _children.pop(pid, None)
    (data_dir / PID_FILE).unlink(missing_ok=True)


def is_running(data_dir: Path) -> bool:
    """Whether the broker recorded in ``data_dir``'s pid file is alive."""
    data_dir = Path(data_dir).resolve()
    pid = _read_pid(data_dir)
    return pid is not None and _is_our_broker(pid, data_dir)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for tests and the controller)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- helpers ---------------------------------------------------------------------------


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise LocalKafkaError("Java not found (JAVA_HOME or PATH); Kafka 4 needs Java 17 or newer")
    return java


def _format_storage(base_command: list[str], properties: Path, cluster_id: str) -> None:
    """Format the KRaft log dir once; the cluster id comes from the data dir's state file."""
    command = [
        *base_command,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(properties),
        "--standalone",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalKafkaError(
            f"kafka-storage format failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def _wait_until_ready(
    process: subprocess.Popen[bytes],
    bootstrap: str,
    data_dir: Path,
    deadline: float,
    security: Mapping[str, str] | None = None,
) -> None:
    """Poll until a metadata request lists this broker; fail early if the JVM exits."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalKafkaError(
                f"Kafka exited with code {process.returncode} during startup." + _tail(data_dir)
            )
        # Cheap TCP check first, so kafka-python only tries once something listens.
        if _port_accepts(bootstrap) and _metadata_ok(bootstrap, security or {}):
            return
        time.sleep(0.2)
    raise LocalKafkaError(
        f"Kafka was not ready at {bootstrap} within the timeout." + _tail(data_dir)
    )


def _metadata_ok(bootstrap: str, security: Mapping[str, str] | None = None) -> bool:
    """True if kafka-python gets cluster metadata naming at least one broker."""
    from kafka import KafkaAdminClient  # imported lazily: stop/status don't need a client
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="local-kafka-probe",
            bootstrap_timeout_ms=5000,
            request_timeout_ms=5000,
            **(security or {}),
        )
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _port_accepts(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _tail(data_dir: Path, lines: int = 25) -> str:
    out = data_dir / OUT_FILE
    try:
        text = out.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return (
        f"\nLast lines of {out} (more in {data_dir / APP_LOG_DIR / 'server.log'}):\n"
        + "\n".join(text)
    )


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Alive and really the broker of this data dir (a stale pid file may name another process)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): trust the pid file
        return True
    return b"kafka.Kafka\0" in cmdline and str(data_dir / PROPERTIES_FILE).encode() in cmdline


def _pid_alive(pid: int) -> bool:
    """False once the process is gone or a zombie (exited, not yet reaped by its parent)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # also reaps our own child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): a signal-0 check
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_state(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(data_dir: Path, state: dict) -> None:
    (data_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _new_cluster_id() -> str:
    """Kafka's cluster id format: a random UUID, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like CLI flags
            return cluster_id


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- command line ----------------------------------------------------------------------


def running_port(data_dir: Path) -> int | None:
    """The client port of the broker running from data_dir, if one is."""
    return _read_state(data_dir).get("port") if is_running(data_dir) else None


def main(argv: Sequence[str] | None = None) -> int:
    """``start`` / ``stop`` / ``status`` for a broker kept in a data dir."""
    parser = argparse.ArgumentParser(
        prog="python -m nudge.ops.local_kafka", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="start a broker and wait until it serves clients")
    start_cmd.add_argument("--port", type=int, default=9092)
    start_cmd.add_argument("--controller-port", type=int, default=None)
    start_cmd.add_argument("--timeout", type=float, default=90)
    stop_cmd = commands.add_parser("stop", help="stop the broker (no-op if none is running)")
    stop_cmd.add_argument("--timeout", type=float, default=30)
    status_cmd = commands.add_parser("status", help="say whether the broker is running")
    for command in (start_cmd, stop_cmd, status_cmd):
        command.add_argument("--data-dir", type=Path, default=Path(".data/kafka"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    data_dir = args.data_dir.resolve()
    try:
        if args.command == "start":
            handle = start(args.port, data_dir, args.controller_port, args.timeout)
            print(handle.bootstrap_servers)
        elif args.command == "stop":
            stop(data_dir, args.timeout)
            print(f"stopped ({data_dir})")
        elif is_running(data_dir):
            port = _read_state(data_dir).get("port")
            print(f"running pid={_read_pid(data_dir)} bootstrap={HOST}:{port} ({data_dir})")
        else:
            print(f"not running ({data_dir})")
            return 1
    except LocalKafkaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
