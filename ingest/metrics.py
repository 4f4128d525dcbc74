"""The ingest worker's Prometheus metrics, defined once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ALERTS_FIRING",
    "ALERT_EVALUATION_SECONDS",
    "ALERT_PUBLISH_LAG",
    "ALERT_TRANSITIONS",
    "BATCH_SECONDS",
    "CONSUMER_LAG",
    "DB_RETRIES",
    "DEADLETTERED",
    "EMISSIONS_WRITTEN",
    "GRID_RECORDS",
    "INTENSITY_SECONDS",
    "INTENSITY_WRITTEN",
    "KAFKA_RETRIES",
    "MESSAGES_CONSUMED",
    "POISON_PASSED",
    "PROCESSING_FAILURES",
    "QUARANTINED",
    "READINGS_VALID",
    "ROWS_WRITTEN",
    "SPIKES_REFUSED",
    "TRUNCATED_DEAD_LETTERS",
    "WEBHOOK_DELIVERIES",
]

MESSAGES_CONSUMED = Counter(
    "wattstream_ingest_messages_consumed_total", "Kafka records consumed and committed", ["topic"]
)
READINGS_VALID = Counter("wattstream_ingest_readings_total", "Valid readings decoded", ["topic"])
ROWS_WRITTEN = Counter(
    "wattstream_ingest_rows_written_total",
    "Reading rows written, by path: copy (in order), upsert (late/duplicate that changed), unchanged",
    ["path"],
)
DEADLETTERED = Counter(
    "wattstream_ingest_deadlettered_total", "Readings or records sent to the dead-letter topic", ["reason"]
)
BATCH_SECONDS = Histogram(
    "wattstream_ingest_batch_seconds",
    "Time from a batch's arrival to its commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "wattstream_ingest_consumer_lag_messages",
    "High watermark minus committed position",
    ["topic", "partition"],
)
QUARANTINED = Counter(
    "wattstream_ingest_quarantined_total", "Valid readings kept in quarantine instead of applied", ["reason"]
)
SPIKES_REFUSED = Counter(
    "wattstream_ingest_spikes_refused_total",
    "Register jumps beyond a meter's max power over the elapsed time: flagged suspect, not added",
)
DB_RETRIES = Counter("wattstream_ingest_db_retries_total", "Batch writes retried after a database error")
KAFKA_RETRIES = Counter(
    "wattstream_ingest_kafka_retries_total",
    "Batches held and read again after Kafka could not take their output",
)
PROCESSING_FAILURES = Counter(
    "wattstream_ingest_processing_failures_total",
    "Records whose processing raised (not bad input: that is dead-lettered), each failure counted",
    ["topic"],
)
POISON_PASSED = Counter(
    "wattstream_ingest_poison_records_total",
    "Records passed after failing WATTSTREAM_INGEST_MAX_FAILURES times: kept in dead_letter_records and "
    "dead-lettered as processing_failed. Anything above zero needs a person",
    ["topic"],
)
TRUNCATED_DEAD_LETTERS = Counter(
    "wattstream_ingest_truncated_dead_letters_total",
    "Dead letters too large for the dead-letter topic, sent truncated (the whole record kept in the "
    "database)",
)
GRID_RECORDS = Counter("wattstream_grid_records_total", "Valid grid records applied, by kind", ["kind"])
INTENSITY_WRITTEN = Counter(
    "wattstream_grid_intensity_rows_total",
    "Grid intensity rows new or restated (unchanged recomputations are not counted), by basis",
    ["basis"],
)
EMISSIONS_WRITTEN = Counter(
    "wattstream_site_emission_rows_total",
    "Site emission rows new or restated, by the consumer that wrote them",
    ["by"],
)
INTENSITY_SECONDS = Histogram(
    "wattstream_grid_intensity_seconds",
    "Time to compute the intensity of one batch's timestamps (factor lookup, kernels, flow tracing)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ALERT_TRANSITIONS = Counter(
    "wattstream_alert_transitions_total", "Alerts that fired or resolved, by rule kind", ["kind", "status"]
)
ALERTS_FIRING = Gauge(
    "wattstream_alerts_firing",
    "Alerts firing now, by rule kind (every worker reports the database's count)",
    ["kind"],
    multiprocess_mode="max",
)
ALERT_EVALUATION_SECONDS = Histogram(
    "wattstream_alert_evaluation_seconds",
    "Time to evaluate the alert rules of one batch or timer tick, inside its transaction",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
ALERT_PUBLISH_LAG = Histogram(
    "wattstream_alert_publish_lag_seconds",
    "From the transaction that recorded an alert transition to its event acknowledged on the alerts topic",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_DELIVERIES = Counter(
    "wattstream_webhook_deliveries_total",
    "Webhook attempts and outcomes: delivered, failed (will retry), dead (budget spent), silenced",
    ["outcome"],
)
