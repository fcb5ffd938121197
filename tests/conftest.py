"""Fixtures for tests that talk to a real Kafka broker (integration and reliability).

Set KAFKA_BOOTSTRAP_SERVERS to reuse a running broker; otherwise one local broker is
started for the whole session (see ops.local_kafka), because a real broker is the only
honest check of consumer groups and transactions.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from nudge.ops import local_kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker, started once per session if none is given."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    data_dir = tmp_path_factory.mktemp("kafka")
    handle = local_kafka.start(port=local_kafka.free_port(), data_dir=data_dir)
    try:
        yield handle.bootstrap_servers
    finally:
        local_kafka.stop(data_dir)


@pytest.fixture
def unique_prefix() -> str:
    """A topic/group name prefix unique to one test, so tests sharing a broker don't collide."""
    return f"t{uuid.uuid4().hex[:8]}."
