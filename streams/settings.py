"""Worker settings, all from environment variables with documented defaults.

Secrets (the API token, SASL passwords) come only from the environment.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from nudge.config import CATALOG, EXPERIMENTS, POLICY, shipped
from nudge.policy.config import ConfigError

Number = TypeVar("Number", int, float)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _number(kind: type[Number], name: str, default: str) -> Number:
    """A numeric variable; a typo is a user error that names the variable."""
    text = _env(name, default)
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, not {text!r}"
        ) from None


@dataclass(frozen=True)
class Settings:
    """Each field documents its variable; `nudge worker --help-env` lists them."""

    bootstrap_servers: str = field(
        default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        metadata={"env": "KAFKA_BOOTSTRAP_SERVERS", "doc": "Kafka brokers, comma-separated."},
    )
    app_id: str = field(
        default_factory=lambda: _env("NUDGE_APP_ID", "nudge"),
        metadata={"env": "NUDGE_APP_ID", "doc": "Consumer group and changelog prefix."},
    )
    topic_prefix: str = field(
        default_factory=lambda: _env("NUDGE_TOPIC_PREFIX", "nudge."),
        metadata={"env": "NUDGE_TOPIC_PREFIX", "doc": "Prefix of every topic name."},
    )
    partitions: int = field(
        default_factory=lambda: _number(int, "NUDGE_PARTITIONS", "8"),
        metadata={"env": "NUDGE_PARTITIONS", "doc": "Partitions of every topic (co-partitioned)."},
    )
    replication_factor: int = field(
        default_factory=lambda: _number(int, "NUDGE_REPLICATION_FACTOR", "1"),
        metadata={"env": "NUDGE_REPLICATION_FACTOR", "doc": "Replication of created topics."},
    )
    data_dir: Path = field(
        default_factory=lambda: Path(_env("NUDGE_DATA_DIR", ".data/worker")),
        metadata={"env": "NUDGE_DATA_DIR", "doc": "Where RocksDB tables live (one per worker)."},
    )
    web_host: str = field(
        default_factory=lambda: _env("NUDGE_WEB_HOST", "127.0.0.1"),
        metadata={"env": "NUDGE_WEB_HOST", "doc": "HTTP bind address (0.0.0.0 in containers)."},
    )
    web_port: int = field(
        default_factory=lambda: _number(int, "NUDGE_WEB_PORT", "6066"),
        metadata={"env": "NUDGE_WEB_PORT", "doc": "HTTP port: /health, /ready, /metrics, API."},
    )
    advertised_url: str | None = field(
        default_factory=lambda: os.environ.get("NUDGE_ADVERTISED_URL") or None,
        metadata={
            "env": "NUDGE_ADVERTISED_URL",
            "doc": "URL other workers forward API requests to (unset: http://NUDGE_WEB_HOST:"
            "NUDGE_WEB_PORT, with the host name when NUDGE_WEB_HOST is 0.0.0.0).",
        },
    )
    catalog_path: Path = field(
        default_factory=lambda: Path(_env("NUDGE_CATALOG", str(shipped(CATALOG)))),
        metadata={"env": "NUDGE_CATALOG", "doc": "Action catalog (TOML)."},
    )
    policy_path: Path = field(
        default_factory=lambda: Path(_env("NUDGE_POLICY", str(shipped(POLICY)))),
        metadata={"env": "NUDGE_POLICY", "doc": "Contact policy (TOML)."},
    )
    experiments_path: Path = field(
        default_factory=lambda: Path(_env("NUDGE_EXPERIMENTS", str(shipped(EXPERIMENTS)))),
        metadata={
            "env": "NUDGE_EXPERIMENTS",
            "doc": "Experiments: arms running other catalogs or policies (TOML; the default"
            " runs none).",
        },
    )
    processing_guarantee: str = field(
        default_factory=lambda: _env("NUDGE_PROCESSING_GUARANTEE", "at_least_once"),
        metadata={
            "env": "NUDGE_PROCESSING_GUARANTEE",
            "doc": "at_least_once or exactly_once (transactions; adds commit latency).",
        },
    )
    standby_replicas: int = field(
        default_factory=lambda: _number(int, "NUDGE_STANDBY_REPLICAS", "1"),
        metadata={"env": "NUDGE_STANDBY_REPLICAS", "doc": "Warm table copies on other workers."},
    )
    session_timeout: float = field(
        default_factory=lambda: _number(float, "NUDGE_SESSION_TIMEOUT", "10"),
        metadata={
            "env": "NUDGE_SESSION_TIMEOUT",
            "doc": "Seconds of silence before a crashed worker's partitions move (>= 6).",
        },
    )
    block_cache_mb: int = field(
        default_factory=lambda: _number(int, "NUDGE_ROCKSDB_BLOCK_CACHE_MB", "8"),
        metadata={
            "env": "NUDGE_ROCKSDB_BLOCK_CACHE_MB",
            "doc": "RocksDB block cache per table partition (Faust's default is 2 GiB).",
        },
    )
    producer_linger_ms: float = field(
        default_factory=lambda: _number(float, "NUDGE_PRODUCER_LINGER_MS", "0"),
        metadata={
            "env": "NUDGE_PRODUCER_LINGER_MS",
            "doc": "How long the producer waits to fill a batch (latency for fewer requests).",
        },
    )
    model_dir: Path = field(
        default_factory=lambda: Path(_env("NUDGE_MODEL_DIR", ".data/models")),
        metadata={
            "env": "NUDGE_MODEL_DIR",
            "doc": "Model artifacts; CURRENT names the version to serve (none: heuristic).",
        },
    )
    model_reload_seconds: float = field(
        default_factory=lambda: _number(float, "NUDGE_MODEL_RELOAD_SECONDS", "10"),
        metadata={
            "env": "NUDGE_MODEL_RELOAD_SECONDS",
            "doc": "How often to check CURRENT for a new model version.",
        },
    )
    api_token: str | None = field(
        default_factory=lambda: os.environ.get("NUDGE_API_TOKEN") or None,
        repr=False,
        metadata={"env": "NUDGE_API_TOKEN", "doc": "Bearer token for the HTTP API (no default)."},
    )
    erasure_key: str | None = field(
        default_factory=lambda: os.environ.get("NUDGE_ERASURE_KEY") or None,
        repr=False,
        metadata={
            "env": "NUDGE_ERASURE_KEY",
            "doc": "Secret that keys the hashes of erased ids (policy/erasure.py); unset:"
            " unkeyed hashes, which anyone holding an id can test (no default).",
        },
    )
    security_protocol: str = field(
        default_factory=lambda: _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        metadata={
            "env": "KAFKA_SECURITY_PROTOCOL",
            "doc": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        },
    )
    sasl_mechanism: str = field(
        default_factory=lambda: _env("KAFKA_SASL_MECHANISM", "PLAIN"),
        metadata={"env": "KAFKA_SASL_MECHANISM", "doc": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."},
    )
    sasl_username: str | None = field(
        default_factory=lambda: os.environ.get("KAFKA_SASL_USERNAME"),
        metadata={"env": "KAFKA_SASL_USERNAME", "doc": "SASL user (with SASL_* protocols)."},
    )
    sasl_password: str | None = field(
        default_factory=lambda: os.environ.get("KAFKA_SASL_PASSWORD"),
        repr=False,
        metadata={"env": "KAFKA_SASL_PASSWORD", "doc": "SASL password (secret: environment only)."},
    )
    ssl_cafile: str | None = field(
        default_factory=lambda: os.environ.get("KAFKA_SSL_CAFILE"),
        metadata={"env": "KAFKA_SSL_CAFILE", "doc": "CA bundle to verify the brokers (SSL)."},
    )
    clock: str = field(
        default_factory=lambda: _env("NUDGE_CLOCK", "wall"),
        metadata={
            "env": "NUDGE_CLOCK",
            "doc": "wall, or event: decide as of each event's own time (as nudge replay does).",
        },
    )
    log_level: str = field(
        default_factory=lambda: _env("NUDGE_LOG_LEVEL", "info"),
        metadata={"env": "NUDGE_LOG_LEVEL", "doc": "debug logs one line per decision."},
    )
    max_task_idle_ms: float = field(
        default_factory=lambda: _number(float, "NUDGE_MAX_TASK_IDLE_MS", "20"),
        metadata={
            "env": "NUDGE_MAX_TASK_IDLE_MS",
            "doc": "Longest wait for a topic with unread records before deciding without it "
            "(time order across topics, README 'Ordering'); 0 turns ordering off.",
        },
    )
    batch_max_events: int = field(
        default_factory=lambda: _number(int, "NUDGE_BATCH_MAX_EVENTS", "500"),
        metadata={
            "env": "NUDGE_BATCH_MAX_EVENTS",
            "doc": "Most events decided as one batch (one state write per customer, one "
            "hand-over to Kafka); a batch is whatever is ready, never waited for.",
        },
    )
    batch_max_ms: float = field(
        default_factory=lambda: _number(float, "NUDGE_BATCH_MAX_MS", "10"),
        metadata={
            "env": "NUDGE_BATCH_MAX_MS",
            "doc": "Longest a batch is decided before its outputs go out; the rest of a "
            "backlog follows in the next slice.",
        },
    )
    faust_metrics: bool = field(
        default_factory=lambda: _env("NUDGE_FAUST_METRICS", "true").lower() in ("1", "true"),
        metadata={
            "env": "NUDGE_FAUST_METRICS",
            "doc": "Faust's own Prometheus sensor; false saves CPU on every message.",
        },
    )

    def __post_init__(self) -> None:
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ConfigError("NUDGE_PROCESSING_GUARANTEE must be at_least_once or exactly_once")
        if self.clock not in ("wall", "event"):
            raise ConfigError("NUDGE_CLOCK must be wall or event")
        if self.partitions < 1:
            raise ConfigError("NUDGE_PARTITIONS must be at least 1")
        if self.max_task_idle_ms < 0:
            raise ConfigError("NUDGE_MAX_TASK_IDLE_MS must not be negative")
        if self.batch_max_events < 1:
            raise ConfigError("NUDGE_BATCH_MAX_EVENTS must be at least 1")
        if self.batch_max_ms <= 0:
            raise ConfigError("NUDGE_BATCH_MAX_MS must be positive")
        if self.advertised_url and not self.advertised_url.startswith(("http://", "https://")):
            raise ConfigError("NUDGE_ADVERTISED_URL must be an http:// or https:// URL")
        if self.model_reload_seconds <= 0:
            raise ConfigError("NUDGE_MODEL_RELOAD_SECONDS must be positive")
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.security_protocol not in protocols:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL must be one of {protocols}")
        if self.security_protocol.startswith("SASL"):
            # Caught here, not as a client library's assertion or a None sent as a password.
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
            if self.sasl_mechanism not in mechanisms:
                raise ConfigError(f"KAFKA_SASL_MECHANISM must be one of {mechanisms}")
            if not (self.sasl_username and self.sasl_password):
                raise ConfigError(
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must both be set with "
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
                )

    def canonical_url(self) -> str:
        """Where other workers reach this one's API (streams/routing.py): a
        wildcard bind address is no address, the host's name stands in."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = self.web_host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.web_port}"

    def kafka_security(self) -> dict[str, object]:
        """Connection security for kafka-python clients (same keys as the worker's)."""
        options: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options


def environment_reference() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: for docs and --help."""
    defaults = Settings()
    rows = []
    for f in fields(Settings):
        secret = f.name in ("api_token", "sasl_password", "erasure_key")
        shown = "(unset)" if secret else str(getattr(defaults, f.name))
        rows.append((f.metadata["env"], shown, f.metadata["doc"]))
    return rows
