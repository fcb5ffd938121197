"""Exactly-once: outputs go into the transaction of the partition they came from.

faust-streaming 0.15.3 picks the transactional producer of a send by the
*destination* topic's partition group (faust/transport/consumer.py,
`TransactionManager.send`): a topic the app does not consume has no group
(KeyError in `PartitionAssignor.group_for_topic`) or no consumer metadata,
and Faust then falls back to its plain, non-transactional producer, whose
outputs are not committed with the offset that caused them. Seen in
tests/reliability/test_crash.py.

The fix: the Outbox (streams/delivery.py) names the producer itself, by
Faust's transactional id for the *source* partition, whose commit carries
that partition's offset. The id is built here the way Faust builds it in
`TransactionManager.commit`.

Upstream: faust-streaming#177 (https://github.com/faust-streaming/faust/issues/177,
open: messages sent outside a transaction) and #440 (the KeyError).
Entry: docs/reliability.md#source_transaction.
"""

from __future__ import annotations

import faust
from faust.types import TP

#: The version whose transactional ids the module docstring describes.
TESTED = {"faust-streaming": ("0.15.3",)}


def transactional_id(app: faust.App, source: TP) -> str:
    """Faust's id for the producer of the source partition's transaction."""
    group = app.assignor.group_for_topic(source.topic)
    return f"{app.conf.id}-{group}-{source.partition}"
