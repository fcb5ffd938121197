"""Start a worker: validate configuration, create topics, run Faust."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
from faust import Worker

from nudge.models.serving import ScorerHolder
from nudge.policy.config import load_catalog, load_policy
from nudge.policy.engine import Engine
from nudge.policy.experiments import load_experiments
from nudge.streams.admin import ensure_topics
from nudge.streams.app import create_app
from nudge.streams.crash_journal import CrashJournal, mark_clean_stop, recover_local_tables
from nudge.streams.http_log import install as sanitize_request_logs
from nudge.streams.lag import start_lag_monitor
from nudge.streams.log_limits import RepeatLimiter
from nudge.streams.metrics import register_table_collector
from nudge.streams.model_reload import schedule_reloads
from nudge.streams.onsite import register_onsite
from nudge.streams.settings import Settings
from nudge.streams.views import register_api, register_probes

log = logging.getLogger("nudge.worker")


def build_engine(settings: Settings) -> tuple[Engine, ScorerHolder]:
    """Load and validate the catalog, policy and experiments (raises ConfigError); the
    engine scores with the served model, or the heuristic until one loads."""
    policy = load_policy(settings.policy_path)
    catalog = load_catalog(settings.catalog_path)
    experiments = load_experiments(settings.experiments_path, catalog, policy)
    scorer = ScorerHolder(settings.model_dir, policy)
    return Engine(catalog, policy, scorer, experiments), scorer


def run(settings: Settings) -> int:
    engine, scorer = build_engine(settings)
    ensure_topics(settings)
    nudge = create_app(settings, engine)
    tabledir = Path(nudge.app.conf.tabledir)
    journal_path = Path(nudge.app.conf.datadir) / "crash-journal"
    exactly_once = settings.processing_guarantee == "exactly_once"
    recover_local_tables(tabledir, journal_path, exactly_once=exactly_once)
    if not exactly_once:
        nudge.journal = CrashJournal(journal_path)
    register_probes(nudge)
    register_api(nudge)
    register_onsite(nudge)
    register_table_collector(nudge.tables)
    start_lag_monitor(settings)
    schedule_reloads(nudge.app, scorer, settings.model_reload_seconds)
    sanitize_request_logs([settings.api_token, settings.sasl_password])
    limiter = RepeatLimiter()
    _report_repeats(nudge.app, limiter)
    worker = _QuietWorker(
        limiter,
        nudge.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        logging_config=_logging_config(settings.log_level),
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if not stop.code:  # stopped cleanly: tables, changelogs and offsets agree
            mark_clean_stop(tabledir)
        raise
    return 0


class _QuietWorker(Worker):
    """A Faust worker whose log handlers drop the Kafka clients' repeats."""

    def __init__(self, limiter: RepeatLimiter, *args: Any, **kwargs: Any) -> None:
        self.limiter = limiter
        super().__init__(*args, **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:  # on the handlers: child loggers' records reach them
            handler.addFilter(self.limiter)


def _report_repeats(app: faust.App, limiter: RepeatLimiter) -> None:
    """Count the repeats of an error that has stopped, not only of one that goes on."""

    @app.timer(interval=limiter.interval)
    async def flush_log_repeats() -> None:
        limiter.emit_flushed()


def _logging_config(level: str) -> dict:
    """Keep Faust's own chatter at warning so decision logs stay readable."""
    return {
        "version": 1,
        "merge": True,
        "loggers": {
            "faust": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
            "kafka": {"level": "WARNING"},
            "mode": {"level": "WARNING"},
            "nudge": {"level": level.upper()},
        },
    }
