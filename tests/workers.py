"""Real worker processes for the tests that need them, from one factory: the
fixtures `workers` and `module_workers` (tests/conftest.py) hand one out per
test or per module, and it ends everything it made when that scope ends."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from nudge.testing import EventPublisher, OutputReader, WorkerProcess

#: The shipped policy with its clock-dependent parts made explicit (no default
#: quiet hours, holdout or exploration): the same decisions at any hour.
TEST_POLICY = Path(__file__).parent / "integration" / "policy.toml"


def new_prefix() -> str:
    """A topic/group name prefix no other test uses, so tests sharing a broker don't collide."""
    return f"t{uuid.uuid4().hex[:8]}."


class Workers:
    """Makes real `nudge worker` processes and the clients that talk to them,
    and ends them all when its scope ends, whatever the test did to them."""

    def __init__(self, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> None:
        self._request = request
        self._tmp = tmp
        self.made: list[WorkerProcess] = []
        self._clients: list[EventPublisher | OutputReader] = []
        self._clean: list[WorkerProcess] = []

    def new(
        self,
        *,
        bootstrap: str | None = None,
        prefix: str | None = None,
        data_dir: Path | None = None,
        partitions: int = 4,
        policy: Path | None = TEST_POLICY,
        env: dict[str, str] | None = None,
        no_traceback: bool = False,
    ) -> WorkerProcess:
        """A worker not started yet: on the session broker, a fresh prefix and
        data dir, the test policy (None: the shipped one) and no model, with
        `env` on top. `no_traceback`: its log must hold none when it ends."""
        data_dir = data_dir or self._tmp.mktemp("worker")
        models = data_dir / "no-models"
        models.mkdir(parents=True, exist_ok=True)
        base = {"NUDGE_MODEL_DIR": str(models)}
        if policy is not None:
            base["NUDGE_POLICY"] = str(policy)
        worker = WorkerProcess(
            bootstrap or self._request.getfixturevalue("kafka_bootstrap"),
            prefix or new_prefix(),
            data_dir,
            partitions=partitions,
            extra_env={**base, **(env or {})},
        )
        self.made.append(worker)
        if no_traceback:
            self._clean.append(worker)
        return worker

    def start(self, ready_timeout: float = 90.0, **options: object) -> WorkerProcess:
        """`new(**options)`, started and ready."""
        return self.new(**options).start(ready_timeout)  # type: ignore[arg-type]

    def publisher(self, worker: WorkerProcess, **security: object) -> EventPublisher:
        """A publisher to the worker's input topics, closed with the scope."""
        client = EventPublisher(worker.bootstrap, worker.prefix, **security)
        self._clients.append(client)
        return client

    def reader(
        self,
        worker: WorkerProcess,
        kinds: Iterable[str],
        isolation_level: str = "read_uncommitted",
        **security: object,
    ) -> OutputReader:
        """A reader of the worker's output topics from the beginning, closed with the scope."""
        client = OutputReader(worker.bootstrap, worker.prefix, kinds, isolation_level, **security)
        self._clients.append(client)
        return client

    def close(self, check_logs: bool) -> None:
        for client in self._clients:
            client.close()
        for worker in self.made:
            worker.stop()
        for worker in self._clean if check_logs else ():
            assert "Traceback" not in worker.tail(400), worker.tail(80)
