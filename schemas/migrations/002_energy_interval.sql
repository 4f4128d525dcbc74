-- wattstream 002: exact interval energy per meter, maintained in-stream by the ingest worker
-- in the same transaction as the raw readings and offsets it comes from.

CREATE TABLE energy_interval (
    meter_id      bigint NOT NULL,
    bucket_start  timestamptz NOT NULL,              -- aligned to the UTC epoch, WATTSTREAM_ENERGY_BUCKET_S long
    kwh           double precision NOT NULL,         -- energy in the bucket (register deltas prorated exactly)
    coverage_s    double precision NOT NULL CHECK (coverage_s >= 0),  -- seconds covered by measured intervals
    n             integer NOT NULL CHECK (n >= 0),   -- readings inside the bucket
    quality       smallint NOT NULL,                 -- 0 measured, 1 partial, 2 estimated
    computed_at   timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('energy_interval', by_range('bucket_start', INTERVAL '30 days'));
CREATE UNIQUE INDEX energy_interval_meter_bucket_key ON energy_interval (meter_id, bucket_start DESC);

CREATE OR REPLACE FUNCTION wattstream_grant_app(app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON sites, meters, readings, meter_state, ingest_offsets,
                    energy_interval TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON quarantine TO %I', app_role);
END
$$;
