-- wattstream 004: grid mixes, grid carbon intensity, site emissions and green certificates.
--
-- Restatements are kept, never overwritten: a derived row (intensity, emissions) is current
-- while `superseded_at` is NULL; a recomputation that changes it closes the old row
-- (`superseded_at` = the transaction time) and inserts the new one (`recorded_at` = the same
-- time). The value known at any time T is the row with recorded_at <= T < superseded_at.

-- Generation mixes as published, every revision kept; the current one is the highest revision.
CREATE TABLE grid_mix (
    region             text NOT NULL,
    ts                 timestamptz NOT NULL,        -- start of the interval the MW average over
    interval_s         integer NOT NULL CHECK (interval_s > 0),
    revision           integer NOT NULL CHECK (revision >= 0),
    generation_mw      jsonb NOT NULL,              -- {"coal": 31000, "gas.ccgt": 2100, "battery": -40}
    imports_mw         jsonb NOT NULL DEFAULT '{}', -- {"CN-SH": 1200}
    exports_mw         jsonb NOT NULL DEFAULT '{}',
    emissions_t_per_h  double precision CHECK (emissions_t_per_h >= 0),  -- the publisher's own
    kafka_partition    integer,
    kafka_offset       bigint,
    received_at        timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('grid_mix', by_range('ts', INTERVAL '30 days'));
CREATE UNIQUE INDEX grid_mix_key ON grid_mix (region, ts DESC, revision DESC);
CREATE INDEX grid_mix_imports_idx ON grid_mix USING gin (imports_mw jsonb_path_ops);

-- Carbon intensity per region and interval: computed from mixes (basis production or
-- consumption, per factor set; `publisher` from the operator's own emissions) or published by
-- the operator (basis published, actual or forecast).
CREATE TABLE grid_intensity (
    region               text NOT NULL,
    ts                   timestamptz NOT NULL,
    interval_s           integer NOT NULL CHECK (interval_s > 0),
    factor_set           text NOT NULL,          -- ipcc2014-lifecycle, em-AU-SA-direct, publisher, published
    scope                text NOT NULL CHECK (scope IN ('lifecycle', 'direct', 'published')),
    basis                text NOT NULL CHECK (basis IN ('production', 'consumption', 'published')),
    kind                 text NOT NULL DEFAULT 'actual' CHECK (kind IN ('actual', 'forecast')),
    intensity_g_per_kwh  double precision CHECK (intensity_g_per_kwh >= 0),
    generation_mw        double precision,
    fossil_share         double precision,
    renewable_share      double precision,
    nonfossil_share      double precision,
    flags                text[] NOT NULL DEFAULT '{}',  -- e.g. neighbour_fallback:AU-VIC
    mix_revision         integer,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    superseded_at        timestamptz
);
SELECT create_hypertable('grid_intensity', by_range('ts', INTERVAL '30 days'));
CREATE UNIQUE INDEX grid_intensity_current_key ON grid_intensity (region, factor_set, basis, kind, ts DESC)
    WHERE superseded_at IS NULL;
CREATE INDEX grid_intensity_history_idx ON grid_intensity (region, ts DESC, recorded_at DESC);

-- Green-power contracts (绿电) and green certificates (绿证) a site holds for a period: they
-- cover that much of its energy in market-based emissions.
CREATE TABLE green_certificates (
    certificate_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id            text NOT NULL REFERENCES sites ON DELETE CASCADE,
    kind               text NOT NULL CHECK (kind IN ('green_power', 'certificate')),
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    mwh                double precision NOT NULL CHECK (mwh > 0),
    factor_g_per_kwh   double precision NOT NULL DEFAULT 0 CHECK (factor_g_per_kwh >= 0),
    reference          text,                     -- certificate or contract number
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end > period_start)
);
CREATE INDEX green_certificates_site_idx ON green_certificates (site_id, period_start);

-- Location-based emissions of a site per energy bucket: its total energy times the
-- time-matched intensity of its region, with the factor set, the source of the intensity
-- and a quality: measured (intensity covers the bucket), estimated (partly covered, or the
-- nearest interval within the tolerance), fallback (annual grid factor), missing (none yet).
-- `residual_g_per_kwh` is the factor for energy green certificates do not cover.
CREATE TABLE site_emissions (
    site_id              text NOT NULL,
    bucket_start         timestamptz NOT NULL,
    bucket_s             integer NOT NULL,
    kwh                  double precision NOT NULL,
    intensity_g_per_kwh  double precision,
    co2e_kg              double precision,
    residual_g_per_kwh   double precision,
    factor_set           text,
    intensity_source     text,
    quality              text NOT NULL CHECK (quality IN ('measured', 'estimated', 'fallback', 'missing')),
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    superseded_at        timestamptz
);
SELECT create_hypertable('site_emissions', by_range('bucket_start', INTERVAL '30 days'));
CREATE UNIQUE INDEX site_emissions_current_key ON site_emissions (site_id, bucket_start DESC)
    WHERE superseded_at IS NULL;
CREATE INDEX site_emissions_history_idx ON site_emissions (site_id, bucket_start DESC, recorded_at DESC);

CREATE OR REPLACE FUNCTION wattstream_grant_app(app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON sites, meters, readings, meter_state, ingest_offsets,
                    energy_interval, grid_mix, grid_intensity, site_emissions TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON green_certificates TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON quarantine TO %I', app_role);
END
$$;
