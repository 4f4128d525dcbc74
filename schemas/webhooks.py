"""The webhook contract: an Alertmanager-compatible payload (version 4), signed.

Each delivery is one alert event (`alerts` holds one alert) in the shape Alertmanager's
webhook receiver sends, so tools that take Alertmanager webhooks take wattstream's. Every
request carries

    X-Wattstream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    X-Wattstream-Event-Id: <event id>      (the same on every retry; de-duplicate on it)

A receiver recomputes the HMAC over the raw body with the subscription's secret, compares in
constant time, and refuses a timestamp further than the replay window (5 minutes) from its
clock, so a captured request cannot be replayed later. `verify` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

import msgspec

__all__ = [
    "EVENT_ID_HEADER",
    "REPLAY_WINDOW_S",
    "SEVERITIES",
    "SIGNATURE_HEADER",
    "alertmanager_payload",
    "sign",
    "verify",
]

SIGNATURE_HEADER: Final = "X-Wattstream-Signature"
EVENT_ID_HEADER: Final = "X-Wattstream-Event-Id"
REPLAY_WINDOW_S: Final = 300
SEVERITIES: Final = ("info", "warning", "critical")
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing
_encoder = msgspec.json.Encoder()


def alertmanager_payload(event: dict[str, Any], receiver: str, external_url: str) -> bytes:
    """The webhook body for one alert event (as published on the alerts topic)."""
    labels: dict[str, str] = event["labels"]
    alert = {
        "status": event["status"],
        "labels": labels,
        "annotations": event["annotations"],
        "startsAt": event["starts_at"],
        "endsAt": event["ends_at"] or _ZERO_TIME,
        "generatorURL": f"{external_url.rstrip('/')}/v1/alerts/{event['fingerprint']}",
        "fingerprint": event["fingerprint"],
    }
    return _encoder.encode(
        {
            "version": "4",
            "groupKey": f'{{}}:{{fingerprint="{event["fingerprint"]}"}}',
            "truncatedAlerts": 0,
            "status": event["status"],
            "receiver": receiver,
            "groupLabels": {"alertname": labels.get("alertname", "")},
            "commonLabels": labels,
            "commonAnnotations": event["annotations"],
            "externalURL": external_url,
            "alerts": [alert],
        }
    )


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The signature header's value for `body` sent at unix time `t`."""
    return f"t={t},v1={_mac(secret, body, t)}"


def verify(secret: str, body: bytes, header: str, now: float, window_s: float = REPLAY_WINDOW_S) -> bool:
    """True if `header` signs `body` with `secret` and its time is within the replay window."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > window_s:
        return False
    # bytes, so a non-ASCII header is a mismatch, not an exception
    return hmac.compare_digest(_mac(secret, body, t).encode(), parts.get("v1", "").encode())
