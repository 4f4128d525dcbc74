-- wattstream 005: API keys, and tenant isolation in the database as a second wall.
--
-- Keys are stored hashed: `key_id` is the public half of the token, `secret_sha256` the
-- SHA-256 of the secret half (a 256-bit random value, so a fast hash is enough; the secret
-- itself is shown once, at creation, and never stored).
CREATE TABLE api_keys (
    key_id         text PRIMARY KEY,
    secret_sha256  bytea NOT NULL,
    name           text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'manager', 'alerts')),
    tenant         text,                        -- manager: every site of this tenant ...
    sites          text[] NOT NULL DEFAULT '{}',  -- ... and/or these sites
    rate_per_s     double precision CHECK (rate_per_s > 0),  -- null: the API's default
    burst          integer CHECK (burst > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    CHECK (role <> 'manager' OR tenant IS NOT NULL OR cardinality(sites) > 0)
);

-- Which sites the current API request may see. The API sets these per transaction
-- (set_config(..., true)) from the key; a connection that set nothing sees nothing.
CREATE FUNCTION wattstream_visible(site text, site_tenant text) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('wattstream.scope_all', true), '') = 'on'
        OR site_tenant = nullif(current_setting('wattstream.scope_tenant', true), '')
        OR site = ANY (string_to_array(nullif(current_setting('wattstream.scope_sites', true), ''), ','))
$$;

-- Row-level security on the tables that say which tenant a site belongs to. Every API query
-- reaches measurements through a site or meter looked up here, so another tenant's site is
-- simply not found. The measurement hypertables are left without policies (a policy there
-- is a per-row check on the largest tables, and TimescaleDB chunks do not carry it).
ALTER TABLE sites ENABLE ROW LEVEL SECURITY;
ALTER TABLE meters ENABLE ROW LEVEL SECURITY;
ALTER TABLE green_certificates ENABLE ROW LEVEL SECURITY;

-- Called by `wattstream migrate` after every run: the API role's privileges and policies,
-- and the ingest role's unrestricted policies (with RLS on, a role without a policy sees no rows).
CREATE FUNCTION wattstream_grant_api(api_role text, app_role text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), api_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', api_role);
    EXECUTE format('GRANT SELECT ON sites, meters, readings, meter_state, energy_interval, grid_mix,
                    grid_intensity, site_emissions TO %I', api_role);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON green_certificates TO %I', api_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON api_keys TO %I', api_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON api_keys TO %I', app_role);
    DROP POLICY IF EXISTS api_scope ON sites;
    DROP POLICY IF EXISTS api_scope ON meters;
    DROP POLICY IF EXISTS api_scope ON green_certificates;
    DROP POLICY IF EXISTS ingest_all ON sites;
    DROP POLICY IF EXISTS ingest_all ON meters;
    DROP POLICY IF EXISTS ingest_all ON green_certificates;
    EXECUTE format('CREATE POLICY api_scope ON sites TO %I USING (wattstream_visible(site_id, tenant))', api_role);
    -- meters and certificates follow their site: the subquery itself only sees visible sites
    EXECUTE format('CREATE POLICY api_scope ON meters TO %I
                    USING (EXISTS (SELECT FROM sites s WHERE s.site_id = meters.site_id))', api_role);
    EXECUTE format('CREATE POLICY api_scope ON green_certificates TO %I
                    USING (EXISTS (SELECT FROM sites s WHERE s.site_id = green_certificates.site_id))
                    WITH CHECK (EXISTS (SELECT FROM sites s WHERE s.site_id = green_certificates.site_id))',
                   api_role);
    EXECUTE format('CREATE POLICY ingest_all ON sites TO %I USING (true) WITH CHECK (true)', app_role);
    EXECUTE format('CREATE POLICY ingest_all ON meters TO %I USING (true) WITH CHECK (true)', app_role);
    EXECUTE format('CREATE POLICY ingest_all ON green_certificates TO %I USING (true) WITH CHECK (true)',
                   app_role);
END
$$;
