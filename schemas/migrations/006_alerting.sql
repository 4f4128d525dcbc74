-- wattstream 006: quotas, alert rules evaluated in-stream, alert transitions (the outbox of the
-- alerts topic), acknowledgements, silences, webhook subscriptions and their delivery log.

-- Energy and carbon quotas (能耗限额 / 碳排放限额) of a site, per local calendar month and year.
ALTER TABLE sites
    ADD COLUMN energy_quota_month_kwh double precision CHECK (energy_quota_month_kwh > 0),
    ADD COLUMN energy_quota_year_kwh  double precision CHECK (energy_quota_year_kwh > 0),
    ADD COLUMN carbon_quota_month_t   double precision CHECK (carbon_quota_month_t > 0),
    ADD COLUMN carbon_quota_year_t    double precision CHECK (carbon_quota_year_t > 0);

-- A rule is one value compared with a threshold: the kind says what the value is (a metric, the
-- seconds since a meter's last reading, a quota projection's share of its limit, a sub-meter
-- imbalance, an anomaly score). It fires once the value has breached `threshold` for `for_s`
-- seconds of event time, and resolves once it is back past `resolve_threshold` (hysteresis).
-- Scope: one site, every site of a tenant, or a region (its sites, or the grid itself).
CREATE TABLE alert_rules (
    rule_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('threshold', 'staleness', 'quota_burn', 'imbalance', 'anomaly')),
    metric             text NOT NULL,
    comparator         text NOT NULL CHECK (comparator IN ('>', '>=', '<', '<=')),
    threshold          double precision NOT NULL,
    resolve_threshold  double precision NOT NULL,
    for_s              double precision NOT NULL DEFAULT 0 CHECK (for_s >= 0),
    params             jsonb NOT NULL DEFAULT '{}',
    site_id            text REFERENCES sites ON DELETE CASCADE,
    tenant             text,
    region             text,
    severity           text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    labels             jsonb NOT NULL DEFAULT '{}',
    annotations        jsonb NOT NULL DEFAULT '{}',
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (site_id IS NOT NULL OR tenant IS NOT NULL OR region IS NOT NULL)
);
CREATE INDEX alert_rules_site_idx ON alert_rules (site_id) WHERE site_id IS NOT NULL;
CREATE INDEX alert_rules_tenant_idx ON alert_rules (tenant) WHERE tenant IS NOT NULL;
CREATE INDEX alert_rules_region_idx ON alert_rules (region) WHERE region IS NOT NULL;

-- The state machine of each alert (a rule on one subject: a site, a meter or a region), written
-- by the worker that owns the subject's partition in the transaction that commits its offsets.
CREATE TABLE alert_state (
    fingerprint   text PRIMARY KEY,
    rule_id       bigint NOT NULL REFERENCES alert_rules ON DELETE CASCADE,
    subject       text NOT NULL,
    site_id       text,                       -- what the alert is about, for scoping reads
    region        text,
    tenant        text,
    labels        jsonb NOT NULL DEFAULT '{}',
    state         text NOT NULL CHECK (state IN ('inactive', 'pending', 'firing')),
    since         timestamptz,                -- pending since / firing since (event time)
    last_ts       timestamptz NOT NULL,       -- the newest observation evaluated (event time)
    last_value    double precision,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_state_rule_idx ON alert_state (rule_id);

-- Every transition to firing or resolved. Rows are written with the state, in the same
-- transaction, and published to the alerts topic after it commits (`published_at`): an outbox,
-- so a crash never loses an event; `event_id` is deterministic, so a repeat is recognisable.
CREATE TABLE alerts (
    event_id          text NOT NULL,
    fingerprint       text NOT NULL,
    rule_id           bigint NOT NULL,
    status            text NOT NULL CHECK (status IN ('firing', 'resolved')),
    at                timestamptz NOT NULL,       -- event time of the transition
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    value             double precision,
    site_id           text,
    region            text,
    tenant            text,
    labels            jsonb NOT NULL,
    annotations       jsonb NOT NULL,
    source_topic      text NOT NULL,
    source_partition  integer NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    published_at      timestamptz
);
SELECT create_hypertable('alerts', by_range('at', INTERVAL '30 days'));
CREATE UNIQUE INDEX alerts_event_key ON alerts (event_id, at);
CREATE INDEX alerts_fingerprint_idx ON alerts (fingerprint, at DESC);
CREATE INDEX alerts_unpublished_idx ON alerts (source_topic, source_partition) WHERE published_at IS NULL;

CREATE TABLE alert_acks (
    fingerprint  text NOT NULL,
    starts_at    timestamptz NOT NULL,     -- the episode acknowledged
    acked_at     timestamptz NOT NULL DEFAULT now(),
    acked_by     text NOT NULL,            -- the key's name
    tenant       text,
    comment      text,
    PRIMARY KEY (fingerprint, starts_at)
);

-- Silences, Alertmanager-style: an alert whose labels match every matcher during
-- [starts_at, ends_at) is not sent to webhooks (it is still on the topic and in the API).
CREATE TABLE silences (
    silence_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers     jsonb NOT NULL,           -- [{"name": "site", "value": "hz-b001", "is_regex": false, "is_equal": true}]
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    tenant       text,                     -- a manager's silence applies to its tenant's alerts only
    created_by   text NOT NULL,
    comment      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE TABLE webhook_subscriptions (
    subscription_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL,
    url              text NOT NULL,
    secret           text NOT NULL,        -- the HMAC key; the receiver holds it too
    tenant           text,                 -- alerts of this tenant ...
    site_id          text,                 -- ... or of this site; neither: every alert (admin only)
    min_severity     text NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info', 'warning', 'critical')),
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- One delivery per subscription and alert event; its attempts below. `status`: pending (due at
-- next_attempt_at), delivered, dead (retry budget spent), silenced (matched a silence).
CREATE TABLE webhook_deliveries (
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions ON DELETE CASCADE,
    event_id         text NOT NULL,
    fingerprint      text NOT NULL,
    tenant           text,
    site_id          text,
    payload          bytea NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'silenced')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    http_status  integer,
    error        text,
    duration_ms  double precision NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Tenant-owned configuration is behind row-level security for the API role, like sites.
ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE silences ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_subscriptions ENABLE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION wattstream_grant_app(app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON sites, meters, readings, meter_state, ingest_offsets,
                    energy_interval, grid_mix, grid_intensity, site_emissions, alert_state, alerts,
                    webhook_deliveries TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON green_certificates TO %I', app_role);
    EXECUTE format('GRANT SELECT ON alert_rules, silences, webhook_subscriptions, alert_acks TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON quarantine, webhook_attempts TO %I', app_role);
END
$$;

CREATE OR REPLACE FUNCTION wattstream_grant_alerting(api_role text, app_role text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT UPDATE (energy_quota_month_kwh, energy_quota_year_kwh, carbon_quota_month_t,
                    carbon_quota_year_t) ON sites TO %I', api_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON alert_rules, silences, webhook_subscriptions
                    TO %I', api_role);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON alert_acks TO %I', api_role);
    EXECUTE format('GRANT SELECT ON alert_state, alerts, webhook_deliveries, webhook_attempts TO %I', api_role);
    DROP POLICY IF EXISTS api_scope ON alert_rules;
    DROP POLICY IF EXISTS api_scope ON silences;
    DROP POLICY IF EXISTS api_scope ON webhook_subscriptions;
    DROP POLICY IF EXISTS ingest_all ON alert_rules;
    DROP POLICY IF EXISTS ingest_all ON silences;
    DROP POLICY IF EXISTS ingest_all ON webhook_subscriptions;
    -- a tenant's rule, silence or subscription is its own; one without a tenant or site belongs
    -- to the operators (scope_all)
    EXECUTE format('CREATE POLICY api_scope ON alert_rules TO %I
                    USING (wattstream_visible(site_id, tenant) AND (site_id IS NULL OR
                           EXISTS (SELECT FROM sites s WHERE s.site_id = alert_rules.site_id)))', api_role);
    EXECUTE format('CREATE POLICY api_scope ON silences TO %I USING (wattstream_visible(NULL, tenant))',
                   api_role);
    EXECUTE format('CREATE POLICY api_scope ON webhook_subscriptions TO %I
                    USING (wattstream_visible(site_id, tenant))', api_role);
    EXECUTE format('CREATE POLICY ingest_all ON alert_rules TO %I USING (true)', app_role);
    EXECUTE format('CREATE POLICY ingest_all ON silences TO %I USING (true)', app_role);
    EXECUTE format('CREATE POLICY ingest_all ON webhook_subscriptions TO %I USING (true)', app_role);
END
$$;
