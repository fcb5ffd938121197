"""Topic administration with kafka-python: create every topic nudge uses,
co-partitioned, and refuse to start on a partition mismatch (which would
silently split a customer's state across workers).

With SASL the credentials are checked first, so wrong ones stop a worker (or
`nudge topics`) at once with a clear error: kafka-python would retry them for
its whole bootstrap timeout and then report only "Unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from nudge.errors import UserError
from nudge.policy.stored import PARTS, STATE_TABLE
from nudge.streams.settings import Settings
from nudge.streams.topics import INPUT_KINDS, INTERNAL_KINDS, all_kinds, topic_name

log = logging.getLogger(__name__)


class TopicMismatch(UserError):
    """An existing input topic has a partition count other than configured."""


class KafkaAuthenticationFailed(UserError):
    """The broker refused the configured SASL credentials: retrying cannot help."""


def check_credentials(settings: Settings, timeout_s: float = 10.0) -> None:
    """Authenticate once to the first reachable broker (SASL protocols only).

    Raises KafkaAuthenticationFailed when a broker refuses the credentials; an
    unreachable broker is left to the admin client, which waits for it. The
    message names the user and the variables to check, never the password.
    """
    if not settings.security_protocol.startswith("SASL"):
        return
    from aiokafka.conn import create_conn  # the client library the worker itself uses
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.errors import KafkaError as AIOKafkaError

    context = None
    if settings.security_protocol == "SASL_SSL":
        context = ssl.create_default_context(cafile=settings.ssl_cafile)

    async def attempt(server: str) -> bool:
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    client_id=f"{settings.app_id}-auth-check",
                    request_timeout_ms=int(timeout_s * 1000),
                    ssl_context=context,
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=settings.sasl_mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password,
                ),
                timeout_s,
            )
        except (OSError, TimeoutError, KafkaConnectionError):
            return False  # not reachable (yet)
        except AIOKafkaError as exc:  # the broker answered: credentials or mechanism refused
            raise KafkaAuthenticationFailed(
                f"Kafka at {server.strip()} refused the {settings.sasl_mechanism} credentials "
                f"of user {settings.sasl_username!r} ({exc}); check KAFKA_SASL_USERNAME, "
                "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
            ) from None
        conn.close()
        return True

    async def first_reachable() -> None:
        for server in settings.bootstrap_servers.split(","):
            if await attempt(server):
                return

    # A private loop: asyncio.run would leave the main thread without a current
    # loop, which Faust (started next) expects to find.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first_reachable())
    finally:
        loop.close()


#: Topic settings that differ from the broker's defaults, by topic kind.
#: The consent log is the audit trail of every consent change: kept until the
#: operator decides otherwise (docs/operators.md), never the broker's 7 days.
#: Deadletter records hold the raw bytes of rejected input, personal data
#: included, so they go after 14 days, also for people erased since.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "consent-log": {"retention.ms": "-1", "cleanup.policy": "delete"},
    "deadletter": {"retention.ms": str(14 * 86_400_000)},
}


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


class UnmigratedState(UserError):
    """State from before one record per customer that was not migrated."""


def legacy_changelogs(settings: Settings, existing: set[str]) -> list[str]:
    """The changelog topics of the table-per-part layout (before 2026-12) that exist."""
    names = (changelog_topic(settings, part) for part in PARTS)
    return [name for name in names if name in existing]


def refuse_unmigrated_state(settings: Settings, existing: set[str]) -> None:
    """A worker must not start on an empty state table while the old layout's
    changelogs hold consent: it would contact people who opted out."""
    if changelog_topic(settings, STATE_TABLE) in existing:
        return
    legacy = legacy_changelogs(settings, existing)
    if legacy:
        raise UnmigratedState(
            f"found {len(legacy)} changelog topics of the table-per-part state layout "
            f"({', '.join(sorted(legacy))}) and no {changelog_topic(settings, STATE_TABLE)}: "
            "run `nudge state migrate` first (docs/operators.md, 'Upgrading state')"
        )


def ensure_topics(
    settings: Settings, timeout_s: float = 30.0, *, allow_unmigrated: bool = False
) -> list[str]:
    """Create missing topics; return the names created. Refuses, unless
    `allow_unmigrated` (the migration itself), state of the old layout."""
    check_credentials(settings)
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
        changelogs = {changelog_topic(settings, STATE_TABLE): "changelog"}
        existing = set(admin.list_topics())
        if not allow_unmigrated:
            refuse_unmigrated_state(settings, existing)
        missing = [name for name in {**wanted, **changelogs} if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs=(
                        {"cleanup.policy": "compact"}
                        if name in changelogs
                        else TOPIC_CONFIGS.get(wanted[name], {})
                    ),
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
