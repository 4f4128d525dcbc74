"""Creates wattstream's topics with explicit partition counts and retention."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from schemas.settings import TopicSpec

__all__ = ["delete_topics", "ensure_topics", "max_message_bytes"]

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, specs: Sequence[TopicSpec]) -> dict[str, str]:
    """Create missing topics, grow partition counts that are too small, and set retention.

    Partitions are never shrunk (Kafka cannot); returns what was done per topic.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="wattstream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        done: dict[str, str] = {}
        create = [
            NewTopic(s.name, s.partitions, 1, topic_configs={"retention.ms": str(s.retention_ms)})
            for s in specs
            if s.name not in existing
        ]
        if create:
            await admin.create_topics(create)
            done.update({t.name: f"created with {t.num_partitions} partitions" for t in create})
        present = [s for s in specs if s.name in existing]
        if present:
            described = {d["topic"]: d for d in await admin.describe_topics([s.name for s in present])}
            grow = {}
            for s in present:
                have = len(described[s.name]["partitions"])
                if have < s.partitions:
                    grow[s.name] = NewPartitions(total_count=s.partitions)
                    done[s.name] = f"grown from {have} to {s.partitions} partitions"
                else:
                    done[s.name] = f"exists with {have} partitions"
            if grow:
                await admin.create_partitions(grow)
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, s.name, configs={"retention.ms": str(s.retention_ms)}
                    )
                    for s in present
                ]
            )
        for name, what in done.items():
            log.info("topic %s: %s", name, what)
        return done
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> list[str]:
    """Delete those of `names` that exist (a scratch run's topics, at its end); returns them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="wattstream-admin")
    await admin.start()
    try:
        present = sorted(set(names) & set(await admin.list_topics()))
        if present:
            await admin.delete_topics(present)
        return present
    finally:
        await admin.close()


async def max_message_bytes(bootstrap: str, names: Sequence[str]) -> dict[str, int]:
    """Each topic's `max.message.bytes` as the broker applies it (the topic's own, else the
    broker's `message.max.bytes`): the largest record batch it accepts, and so the largest
    record a consumer of it can meet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="wattstream-admin")
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, configs={"max.message.bytes": None})
                for name in names
            ]
        )
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for error_code, error_message, _type, name, entries, *_ in response.resources:
            if error_code:
                raise KafkaError(f"cannot describe topic {name}: {error_message} (error {error_code})")
            for entry in entries:
                if entry[0] == "max.message.bytes":
                    found[name] = int(entry[1])
    missing = sorted(set(names) - set(found))
    if missing:
        raise KafkaError(f"the broker gave no max.message.bytes for {missing}")
    return found
