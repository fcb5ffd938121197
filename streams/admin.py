"""Topic administration with kafka-python: create every topic nudge uses,
co-partitioned, and refuse to start on a partition mismatch (which would
silently split a customer's state across workers)."""

from __future__ import annotations

import contextlib
import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from policy.state import TABLES
from streams.settings import Settings
from streams.topics import INPUT_KINDS, INTERNAL_KINDS, all_kinds, topic_name

log = logging.getLogger(__name__)


class TopicMismatch(RuntimeError):
    """An existing input topic has a partition count other than configured."""


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names created."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout_s * 1000),
        **settings.kafka_security(),
    )
    try:
        wanted = {topic_name(settings.topic_prefix, kind): kind for kind in all_kinds()}
        # Changelogs too, before Faust would: a worker must never take events
        # while the topics its tables write to are still being created.
        changelogs = {changelog_topic(settings, table): "changelog" for table in TABLES}
        existing = set(admin.list_topics())
        missing = [name for name in {**wanted, **changelogs} if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs={"cleanup.policy": "compact"} if name in changelogs else {},
                )
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        co_partitioned = [
            name for name, kind in wanted.items() if kind in INPUT_KINDS + INTERNAL_KINDS
        ] + list(changelogs)
        for meta in admin.describe_topics(co_partitioned):
            count = len(meta["partitions"])
            if count != settings.partitions:
                name = meta.get("name") or meta.get("topic")  # kafka-python 3 says "name"
                raise TopicMismatch(
                    f"topic {name} has {count} partitions, NUDGE_PARTITIONS is "
                    f"{settings.partitions}: input topics must be co-partitioned"
                )
        if missing:
            log.info("created %d topics", len(missing))
        return missing
    finally:
        admin.close()
