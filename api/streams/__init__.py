"""Live streams: one Kafka consumer per API process, fanned out in-process to SSE clients.

Three parts, each importing only the one below it:
- `reader`: the consumer of the derived topics (intensity, site energy, alerts) that turns
  their records into events on channels and publishes them into the hub;
- `hub`: the channels, each with its replay buffer and its subscribers, and the fan-out of an
  event to every client of its channel, with backpressure and heartbeats;
- `wire`: the server under a started stream; the hub writes body frames straight to the
  connection's transport under uvicorn's httptools server, the one place that knows its
  internals.

The names the app, the routers and the tests use are re-exported here.
"""

from __future__ import annotations

from api.streams.hub import (
    HEARTBEAT,
    SSE_CLIENTS,
    SSE_EVENTS,
    Event,
    StreamHub,
    Subscription,
    parse_event_id,
    sse,
)
from api.streams.reader import ALERTS_CHANNEL, DerivedTopics, derived_consumer, run_derived_consumer
from api.streams.wire import RAW_SEND, ServerWire, chunked

__all__ = [
    "ALERTS_CHANNEL",
    "HEARTBEAT",
    "RAW_SEND",
    "SSE_CLIENTS",
    "SSE_EVENTS",
    "DerivedTopics",
    "Event",
    "ServerWire",
    "StreamHub",
    "Subscription",
    "chunked",
    "derived_consumer",
    "parse_event_id",
    "run_derived_consumer",
    "sse",
]
