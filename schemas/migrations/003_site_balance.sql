-- wattstream 003: how far a site's sub-items may fall short of its main meters before the
-- unmetered remainder is flagged (a share of the main meters' energy).
ALTER TABLE sites ADD COLUMN balance_tolerance double precision NOT NULL DEFAULT 0.05
    CHECK (balance_tolerance >= 0 AND balance_tolerance <= 1);
