"""Fixtures for tests that talk to a real Kafka broker (integration and reliability).

Set KAFKA_BOOTSTRAP_SERVERS to reuse a running broker; otherwise one local broker is
started for the whole session (see ops.local_kafka), because a real broker is the only
honest check of consumer groups and transactions.

Worker processes come from one factory, `workers` (per test) or `module_workers`
(shared by a module's tests): it stops every worker it started and closes every
client it made, and a failed test's report carries the tail of each worker's log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nudge.ops import local_kafka
from nudge.testing import EventPublisher, OutputReader, WorkerProcess
from tests.workers import Workers, new_prefix


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
    """A prefix for a test's own topics and groups."""
    return new_prefix()


#: The factories in use now, whose workers' logs a failure report shows.
_OPEN: list[Workers] = []


def _workers(request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> Iterator[Workers]:
    workers = Workers(request, tmp)
    failed = request.session.testsfailed
    _OPEN.append(workers)
    try:
        yield workers
    finally:
        _OPEN.remove(workers)
        workers.close(check_logs=request.session.testsfailed == failed)


@pytest.fixture
def workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Workers (and clients) for one test."""
    yield from _workers(request, tmp_path_factory)


@pytest.fixture(scope="module")
def module_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Workers (and clients) shared by the tests of a module."""
    yield from _workers(request, tmp_path_factory)


@pytest.fixture(scope="module")
def publisher(worker: WorkerProcess, module_workers: Workers) -> EventPublisher:
    """A publisher to the module's `worker`."""
    return module_workers.publisher(worker)


@pytest.fixture(scope="module")
def outputs(
    request: pytest.FixtureRequest, worker: WorkerProcess, module_workers: Workers
) -> OutputReader:
    """A reader of the module's `worker`'s output topics: the module's OUTPUTS."""
    return module_workers.reader(worker, request.module.OUTPUTS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """A failed test's report ends with the tail of every worker it could have used."""
    report = yield
    if report.failed:
        for workers in _OPEN:
            for worker in workers.made:
                report.sections.append((f"worker log {worker.log_path}", worker.tail()))
    return report
