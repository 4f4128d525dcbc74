-- wattstream 001: sites, meters, the readings hypertable, ingest offsets, quarantine.
-- Applied by `wattstream migrate` as the owner role; the app role gets row access only.

CREATE TABLE sites (
    site_id          text PRIMARY KEY,
    name             text,
    kind             text NOT NULL DEFAULT 'building' CHECK (kind IN ('building', 'datacentre')),
    region           text,                                   -- grid region, e.g. CN-ZJ
    timezone         text NOT NULL DEFAULT 'Asia/Shanghai',  -- local days and months are in this zone
    floor_area_m2    double precision CHECK (floor_area_m2 > 0),
    tenant           text NOT NULL DEFAULT 'default',
    auto_registered  boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_tenant_idx ON sites (tenant);

CREATE TABLE meters (
    meter_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites ON DELETE RESTRICT,
    meter            text NOT NULL,            -- the name readings use within the site
    role             text NOT NULL DEFAULT 'main'
                     CHECK (role IN ('main', 'sub_item', 'facility', 'it_load', 'generation')),
    sub_item         text CHECK (sub_item IN ('照明插座', '空调', '动力', '特殊')),
    multiplier       double precision NOT NULL DEFAULT 1 CHECK (multiplier > 0),
    rollover_kwh     double precision CHECK (rollover_kwh > 0),
    max_power_kw     double precision CHECK (max_power_kw > 0),
    auto_registered  boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, meter),
    CHECK (sub_item IS NULL OR role = 'sub_item')
);

-- Raw readings, idempotent on (meter_id, ts). No foreign key to meters: it would cost an
-- index probe per row on the COPY hot path, and meters are never deleted (RESTRICT above
-- keeps sites; meters have no delete path).
CREATE TABLE readings (
    meter_id    bigint NOT NULL,
    ts          timestamptz NOT NULL,
    energy_kwh  double precision,   -- cumulative register, kWh
    power_kw    double precision,   -- instantaneous power, kW
    quality     smallint NOT NULL DEFAULT 0,  -- 0 ok, 1 estimated, 2 suspect
    CHECK (energy_kwh IS NOT NULL OR power_kw IS NOT NULL)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '7 days'));
CREATE UNIQUE INDEX readings_meter_ts_key ON readings (meter_id, ts DESC);

-- The last reading per meter: splits each batch into in-order readings (straight COPY) and
-- duplicates or late ones (upsert), and is the state energy computation resumes from.
CREATE TABLE meter_state (
    meter_id         bigint PRIMARY KEY REFERENCES meters,
    last_ts          timestamptz NOT NULL,
    last_energy_kwh  double precision,
    last_power_kw    double precision,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Kafka offsets, written in the same transaction as the rows they produced. The source of
-- truth for where a consumer resumes; Kafka's own committed offsets are only a hint.
CREATE TABLE ingest_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL CHECK (partition >= 0),
    next_offset     bigint NOT NULL CHECK (next_offset >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Valid messages that the domain refused to apply (too late, a physically impossible jump,
-- ...): kept with the reason, never lost, and counted in metrics.
CREATE TABLE quarantine (
    quarantine_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    topic           text NOT NULL,
    partition       integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    site_id         text NOT NULL,
    meter           text NOT NULL,
    ts              timestamptz NOT NULL,
    energy_kwh      double precision,
    power_kw        double precision,
    reason          text NOT NULL,
    detail          text
);
CREATE INDEX quarantine_site_idx ON quarantine (site_id, received_at);

-- Row access for the application role; called by `wattstream migrate` after every run.
CREATE FUNCTION wattstream_grant_app(app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON sites, meters, readings, meter_state, ingest_offsets TO %I',
                   app_role);
    EXECUTE format('GRANT SELECT, INSERT ON quarantine TO %I', app_role);
END
$$;
