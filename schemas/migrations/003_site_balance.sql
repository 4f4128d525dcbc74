-- wattstream 003: how far a site's sub-items may fall short of its main meters before the
-- unmetered remainder is flagged (a share of the main meters' energy).
ALTER TABLE sites ADD COLUMN balance_tolerance double precision NOT NULL DEFAULT 0.05
    CHECK (balance_tolerance >= 0 AND balance_tolerance <= 1);

-- The meters whose sum is a site's total: its main meters; a data centre metered only at the
-- facility level counts those. Sub-item meters never add to the total.
CREATE FUNCTION wattstream_total_role(site text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM meters WHERE site_id = site AND role = 'main')
                THEN 'main' ELSE 'facility' END
$$;
