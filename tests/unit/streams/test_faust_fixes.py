"""streams/faust_fixes: one door for every reach into Faust's and aiokafka's
internals. The worker's own create_app applies them all; an untested version
is refused before anything is patched; the lock files cannot move past the
versions the fixes were checked against; each fix has its entry in
docs/reliability.md."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

import faust
import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import PartitionRecords
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from nudge.errors import UserError
from nudge.streams import faust_fixes
from nudge.streams.app import NudgeApp, create_app
from nudge.streams.crash_journal import CrashJournal
from nudge.streams.faust_fixes import (
    commit_gate,
    commit_head,
    commit_hook,
    producer_buffer,
    seek_race,
    undecodable,
)
from nudge.streams.settings import Settings
from nudge.streams.worker import build_engine

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ("requirements.lock", "requirements-dev.lock")
#: Packages whose private names only streams/faust_fixes may use.
EXTERNAL = ("faust", "aiokafka", "mode", "rocksdict")
#: The class attributes the fixes replace: restored after each test.
PATCHED_CLASSES = (
    (Consumer, "getmany"),
    (Consumer, "_wait_next_records"),
    (Consumer, "perform_seek"),
    (Consumer, "_new_offset"),
    (Recovery, "on_recovery_completed"),
    (Recovery, "_resume_streams"),
    (Consumer, "commit"),
    (TransactionManager, "commit"),
    (PartitionRecords, "_unpack_records"),
    (AIOKafkaConsumerThread, "getmany"),
    (fetcher, "MemoryRecords"),
)


@pytest.fixture
def patch_scope(monkeypatch) -> None:
    """Whatever install patches process-wide is put back afterwards."""
    for owner, attr in PATCHED_CLASSES:
        monkeypatch.setattr(owner, attr, getattr(owner, attr))
    monkeypatch.setattr(undecodable, "_nudge", undecodable._nudge)


def worker_app(monkeypatch, tmp_path: Path, guarantee: str = "at_least_once") -> NudgeApp:
    """The app as the worker creates it (no broker needed until it starts)."""
    monkeypatch.setenv("NUDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NUDGE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NUDGE_PROCESSING_GUARANTEE", guarantee)
    monkeypatch.setenv("NUDGE_FAUST_METRICS", "false")  # its sensor registers once a process
    settings = Settings()
    engine, _ = build_engine(settings)
    return create_app(settings, engine)


def test_the_worker_app_gets_every_fix_on_the_installed_versions(
    monkeypatch, tmp_path, patch_scope
) -> None:
    nudge = worker_app(monkeypatch, tmp_path, "exactly_once")

    assert Consumer.getmany is seek_race._getmany_until_seek
    assert Consumer._wait_next_records is seek_race._stamped_wait_next_records
    assert Consumer.perform_seek is seek_race._perform_seek_without_race
    assert Consumer._new_offset is commit_head._new_offset_not_past_the_head
    for end_of_recovery in (Recovery.on_recovery_completed, Recovery._resume_streams):
        assert end_of_recovery.__qualname__.startswith("_resuming_without_clear")
    assert fetcher.MemoryRecords is undecodable._RawBatches
    assert PartitionRecords._unpack_records is undecodable._unpack_or_skip
    assert AIOKafkaConsumerThread.getmany is undecodable._getmany_reporting_skips
    assert undecodable._nudge is nudge
    assert TransactionManager.commit is commit_gate._gated_commit
    assert commit_gate._gates[nudge.app] is nudge.outbox.gate
    assert Consumer.commit is commit_hook._journaled_commit
    producer = nudge.app.producer
    for patched in (producer.buffer.flush, producer.buffer.put, producer.on_stop):
        assert patched.__module__ == producer_buffer.__name__, patched

    flush = producer.buffer.flush
    faust_fixes.install(nudge)  # again: nothing is wrapped twice
    assert producer.buffer.flush is flush


def test_at_least_once_commits_are_not_gated(monkeypatch, tmp_path, patch_scope) -> None:
    nudge = worker_app(monkeypatch, tmp_path)
    assert nudge.app not in commit_gate._gates


@pytest.mark.parametrize("found", ["0.16.0", "0.15.4"])
def test_an_untested_faust_version_is_refused_before_anything_is_patched(
    monkeypatch, tmp_path, patch_scope, found
) -> None:
    applied: list[str] = []
    for fix in (seek_race, producer_buffer, undecodable, commit_gate, commit_hook):
        monkeypatch.setattr(fix, "install", lambda *args, fix=fix: applied.append(fix.__name__))
    real = faust_fixes.installed_version
    monkeypatch.setattr(
        faust_fixes,
        "installed_version",
        lambda name: found if name == "faust-streaming" else real(name),
    )
    with pytest.raises(faust_fixes.UntestedVersion) as refused:
        worker_app(monkeypatch, tmp_path)
    message = str(refused.value)
    assert "streams/faust_fixes/seek_race.py" in message
    assert f"faust-streaming 0.15.3, but {found} is installed" in message
    assert "docs/reliability.md#seek_race" in message
    assert applied == []
    assert isinstance(refused.value, UserError)  # the CLI prints it in one line, exit 1


@pytest.mark.parametrize("fix", faust_fixes.FIXES, ids=faust_fixes.name)
def test_every_fix_is_checked(monkeypatch, fix) -> None:
    faust_fixes.check_versions()
    distribution = next(iter(fix.TESTED))
    monkeypatch.setitem(fix.TESTED, distribution, ("0.0.1",))
    with pytest.raises(
        faust_fixes.UntestedVersion, match=rf"faust_fixes/{faust_fixes.name(fix)}\.py"
    ):
        faust_fixes.check_versions()


def locked(lock: str, distribution: str) -> str:
    text = (ROOT / lock).read_text()
    match = re.search(rf"^{re.escape(distribution)}==(\S+)", text, re.MULTILINE)
    assert match, f"{distribution} is not pinned in {lock}"
    return match.group(1)


@pytest.mark.parametrize("lock", LOCKS)
@pytest.mark.parametrize("fix", faust_fixes.FIXES, ids=faust_fixes.name)
def test_the_locked_faust_and_aiokafka_are_versions_every_fix_was_checked_on(fix, lock) -> None:
    """Fails on a lock bump until each fix is re-checked (docs/reliability.md,
    Faust workarounds) and the new version added to its TESTED."""
    assert "faust-streaming" in fix.TESTED  # every fix relies on Faust
    for distribution, tested in fix.TESTED.items():
        assert locked(lock, distribution) in tested, (
            f"{lock} pins {distribution} {locked(lock, distribution)}; "
            f"{fix.__name__} was checked on {tested}"
        )


def workarounds_section() -> str:
    text = (ROOT / "docs/reliability.md").read_text()
    return text.split("\n## Faust workarounds\n", 1)[1].split("\n## ", 1)[0]


def test_every_fix_has_its_entry_in_the_reliability_docs() -> None:
    entries = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", workarounds_section(), re.S | re.M))
    assert set(entries) == {faust_fixes.name(fix) for fix in faust_fixes.FIXES}
    for fix in faust_fixes.FIXES:
        entry = " ".join(entries[faust_fixes.name(fix)].split())
        assert faust_fixes.docs_link(fix) in (fix.__doc__ or ""), fix.__name__
        for distribution, tested in fix.TESTED.items():
            assert f"{distribution} {', '.join(tested)}" in entry, (fix.__name__, distribution)
        proofs = re.findall(r"`(tests/[\w/]+\.py)`", entry.split("**Proved by:**", 1)[1])
        assert proofs, fix.__name__
        for proof in proofs:
            assert (ROOT / proof).is_file(), proof


def test_no_other_streams_module_reaches_into_private_names() -> None:
    """Everything private of Faust or aiokafka goes through faust_fixes: outside
    it, a leading underscore is read only on self, cls or the module's own names."""
    offences = []
    for path in sorted((ROOT / "streams").glob("*.py")):
        tree = ast.parse(path.read_text())
        own = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(EXTERNAL):
                offences += [f"{path.name}: {a.name}" for a in node.names if _private(a.name)]
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = node.value
                if not (
                    isinstance(base, ast.Name) and (base.id in {"self", "cls"} or base.id in own)
                ):
                    offences.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offences == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_a_gated_commit_waits_for_the_batch_in_progress(monkeypatch) -> None:
    committed: list[str] = []

    async def faust_commit(self, offsets, start_new_transaction=True) -> bool:
        committed.append("commit")
        return True

    monkeypatch.setattr(commit_gate, "_commit", faust_commit)
    app = faust.App("gate-test", broker="kafka://127.0.0.1:1")
    gate = asyncio.Lock()
    monkeypatch.setitem(commit_gate._gates, app, gate)
    manager = SimpleNamespace(app=app)

    async def run() -> None:
        async with gate:  # a batch in progress
            commit = asyncio.ensure_future(commit_gate._gated_commit(manager, {}))
            await asyncio.sleep(0.05)
            committed.append("batch done")
        assert await commit is True

    asyncio.run(run())
    assert committed == ["batch done", "commit"]


class StandInNudge:
    """What the commit hook reads of a NudgeApp (weakly referenced, as a NudgeApp)."""

    def __init__(self, app: faust.App, journal: CrashJournal | None) -> None:
        self.app, self.journal = app, journal


def test_a_consumer_commit_runs_in_the_crash_journal(monkeypatch, tmp_path, patch_scope) -> None:
    outcomes = iter((False, True))

    async def faust_commit(self, *args, **kwargs) -> bool:
        return next(outcomes)

    monkeypatch.setattr(commit_hook, "_commit", faust_commit)
    app = faust.App("hook-test", broker="kafka://127.0.0.1:1")
    journal = CrashJournal(tmp_path / "journal")
    nudge = StandInNudge(app, journal)
    commit_hook.install(nudge)  # type: ignore[arg-type]
    consumer = SimpleNamespace(app=app)

    assert asyncio.run(commit_hook._journaled_commit(consumer)) is False
    assert journal.epoch == 2 and len(list(journal.path.glob("*.journal"))) == 2  # kept
    assert asyncio.run(commit_hook._journaled_commit(consumer)) is True
    assert journal.epoch == 3 and [f.name for f in journal.path.glob("*.journal")] == [
        "000000000003.journal"
    ]  # the closed epochs dropped once the commit succeeded


def queues_with_a_record(app: faust.App) -> tuple[object, object]:
    """The changelog queue and a stream queue, each holding a fetched record."""
    changelog = app.tables.changelog_queue
    stream = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    for queue in (changelog, stream):
        queue.put_nowait("fetched")
    return changelog, stream


def test_the_resume_ending_a_recovery_keeps_what_was_fetched_after_the_seek(
    monkeypatch, tmp_path
) -> None:
    """Faust's end of recovery seeks, then resumes flow control, which
    emptied every queue: the first stream records after the seek and the
    standby's changelog records were dropped for good."""
    nudge = worker_app(monkeypatch, tmp_path)
    app = nudge.app
    changelog, stream = queues_with_a_record(app)

    async def end_of_recovery(recovery: Recovery, generation_id: int) -> None:
        recovery.app.flow_control.resume()  # as Faust's, after its seek

    resume = seek_race._resuming_without_clear(end_of_recovery)
    recovery = SimpleNamespace(app=app)
    asyncio.run(resume(recovery, app.consumer_generation_id))  # type: ignore[arg-type]
    assert changelog.qsize() == 1 and stream.qsize() == 1

    app.flow_control.resume()  # any other resume clears, as in Faust
    assert changelog.qsize() == 0 and stream.qsize() == 0


def test_the_end_of_a_superseded_recovery_clears_as_faust_does(monkeypatch, tmp_path) -> None:
    nudge = worker_app(monkeypatch, tmp_path)
    app = nudge.app
    changelog, stream = queues_with_a_record(app)

    async def end_of_recovery(recovery: Recovery, generation_id: int) -> None:
        recovery.app.consumer_generation_id = generation_id + 1  # a new rebalance began
        recovery.app.flow_control.resume()

    resume = seek_race._resuming_without_clear(end_of_recovery)
    asyncio.run(resume(SimpleNamespace(app=app), app.consumer_generation_id))  # type: ignore[arg-type]
    assert changelog.qsize() == 0 and stream.qsize() == 0


def test_a_seek_drops_the_stream_records_fetched_before_it_not_the_standbys(
    monkeypatch, tmp_path
) -> None:
    nudge = worker_app(monkeypatch, tmp_path)
    changelog, stream = queues_with_a_record(nudge.app)

    seek_race.clear_stream_queues(nudge.app)

    assert stream.qsize() == 0  # read again from the committed offset
    assert changelog.qsize() == 1  # nothing reads it again


def test_a_seek_rewinds_the_standby_changelogs_to_after_the_last_record_taken(
    monkeypatch, tmp_path
) -> None:
    """Stopping the flow for a seek drops the rest of the batch in hand,
    standby changelog records included, and the seek to committed offsets
    does not read those again: each standby partition goes back to just
    after the last record the recovery took."""
    nudge = worker_app(monkeypatch, tmp_path)
    recovery = nudge.app.tables.recovery
    standby, fresh, gone = (TP("t.nudge-customers-changelog", n) for n in (2, 3, 1))
    recovery.standby_tps = {standby, fresh, gone}
    recovery.standby_offsets.update({standby: 289, fresh: -1, gone: 40})
    seeks: dict[TP, int] = {}

    async def seek(tp: TP, offset: int) -> None:
        seeks[tp] = offset

    consumer = SimpleNamespace(app=nudge.app, assignment=lambda: {standby, fresh}, seek=seek)
    asyncio.run(seek_race._rewind_changelogs(consumer))  # type: ignore[arg-type]

    assert seeks == {standby: 290, fresh: 0}  # not the partition no longer assigned


def handed_and_acked(
    consumer: Consumer, tp: TP, committed: int | None, handed: list[int], acked: list[int]
) -> None:
    """The consumer's books: its committed offset, the records it handed
    out and the ones the streams acked."""
    consumer._committed_offset[tp] = committed
    for offset in handed:
        commit_head.note(consumer, tp, offset)
    consumer._acked[tp].extend(acked)
    consumer._acked_index[tp].update(acked)


def test_a_commit_never_passes_a_handed_out_record_not_yet_done(monkeypatch, tmp_path) -> None:
    """faust-streaming#606: committed 5, record 5 handed out and dropped for
    a re-read (or still in progress), 6 and 7 acked: Faust commits 8 and
    record 5 is lost."""
    consumer = worker_app(monkeypatch, tmp_path).app.consumer
    tp = TP("t.purchases", 3)
    handed_and_acked(consumer, tp, committed=5, handed=[5, 6, 7], acked=[6, 7])
    assert commit_head._new_offset(consumer, tp) == 8  # Faust's own: past record 5
    consumer._acked[tp][:] = [6, 7]  # (Faust's call consumed them)
    consumer._acked_index[tp].update([6, 7])

    assert commit_head._new_offset_not_past_the_head(consumer, tp) is None

    consumer._acked[tp].append(5)  # processed at last
    consumer._acked_index[tp].add(5)
    assert commit_head._new_offset_not_past_the_head(consumer, tp) == 8


def test_an_offset_never_handed_out_is_passed_as_faust_does(monkeypatch, tmp_path) -> None:
    """A transaction marker at the committed offset holds no record: Faust's
    one-offset allowance stays for it."""
    consumer = worker_app(monkeypatch, tmp_path).app.consumer
    tp = TP("t.purchases", 3)
    handed_and_acked(consumer, tp, committed=5, handed=[6, 7], acked=[6, 7])
    assert commit_head._new_offset_not_past_the_head(consumer, tp) == 8


def test_before_any_commit_an_earlier_record_not_done_holds_the_commit(
    monkeypatch, tmp_path
) -> None:
    consumer = worker_app(monkeypatch, tmp_path).app.consumer
    tp = TP("t.purchases", 0)
    handed_and_acked(consumer, tp, committed=None, handed=[0, 1, 2], acked=[1, 2])
    assert commit_head._new_offset_not_past_the_head(consumer, tp) is None


def test_a_seek_forgets_what_was_handed_out(monkeypatch, tmp_path) -> None:
    """Everything is read again from the committed offsets after a seek."""
    consumer = worker_app(monkeypatch, tmp_path).app.consumer
    tp = TP("t.purchases", 3)
    handed_and_acked(consumer, tp, committed=5, handed=[5, 6], acked=[6])
    commit_head.forget(consumer)
    assert commit_head._new_offset_not_past_the_head(consumer, tp) == 7
