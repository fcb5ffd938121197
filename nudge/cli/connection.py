"""How the commands that talk to Kafka find it: the worker's own settings.

`--bootstrap` and `--prefix` default to KAFKA_BOOTSTRAP_SERVERS and
NUDGE_TOPIC_PREFIX, and broker security (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
KAFKA_SSL_CAFILE) comes from the environment exactly as the worker reads it,
so a shell configured for a worker is configured for every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from nudge.errors import UserError
from nudge.streams.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="SERVERS",
        help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--prefix", help="topic name prefix (default: $NUDGE_TOPIC_PREFIX, else nudge.)"
    )


def resolve(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(bootstrap servers, topic prefix, kafka-python security options)."""
    settings = Settings()
    bootstrap = args.bootstrap or settings.bootstrap_servers
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    return bootstrap, prefix, settings.kafka_security()


def require_topics(bootstrap: str, topics: Iterable[str], security: dict[str, Any]) -> None:
    """Fail fast when nobody created the topics, rather than after a client's
    metadata timeout, or by letting the broker auto-create them with the
    wrong partition count."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **security)
    try:
        existing = consumer.topics()
    finally:
        consumer.close()
    missing = [topic for topic in topics if topic not in existing]
    if missing:
        raise UserError(
            f"topics missing on {bootstrap}: {', '.join(missing)}; a nudge worker "
            "with the same NUDGE_TOPIC_PREFIX creates them when it starts"
        )
