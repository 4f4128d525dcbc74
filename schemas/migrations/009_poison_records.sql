-- wattstream 009: what ingest keeps of records it could not handle the normal way.
--
-- A dead letter too large for the dead-letter topic goes out truncated; its whole key, value
-- and headers are kept here first, so nothing is lost. A record whose processing failed (not
-- its decoding: that is an ordinary dead letter) is counted per (group, topic, partition,
-- offset) across restarts; after `WATTSTREAM_INGEST_MAX_FAILURES` failures its bytes are kept
-- here, it is dead-lettered as `processing_failed` and the partition moves on.

CREATE TABLE dead_letter_records (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    reason          text NOT NULL,
    error           text NOT NULL,
    record_key      bytea,
    record_value    bytea,
    record_headers  jsonb NOT NULL DEFAULT '[]',  -- [[name, base64 value], ...] in their order
    value_length    integer NOT NULL,
    value_sha256    text,
    truncated       boolean NOT NULL,            -- the dead letter on Kafka carries a prefix only
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, kafka_offset)
);

CREATE TABLE ingest_failures (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    partition        integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    failures         integer NOT NULL CHECK (failures > 0),
    error            text NOT NULL,              -- the latest failure's exception
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, kafka_offset)
);

CREATE OR REPLACE FUNCTION wattstream_grant_app(app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON sites, meters, readings, meter_state, ingest_offsets,
                    energy_interval, grid_mix, grid_intensity, site_emissions, alert_state, alerts,
                    webhook_deliveries, dead_letter_records, ingest_failures TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON green_certificates TO %I', app_role);
    EXECUTE format('GRANT SELECT ON alert_rules, silences, webhook_subscriptions, alert_acks TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON quarantine, webhook_attempts TO %I', app_role);
END
$$;
