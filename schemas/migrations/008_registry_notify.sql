-- wattstream 008: a change to a site or a meter is announced to whoever listens.
--
-- Each API process keeps every site's tenant, region and zone in memory (its site directory)
-- and keeps energy series answers between live events. A site moved to another tenant, or a
-- meter whose role changed, must reach them at once, not at their next periodic reload: the
-- payload names the site, once the change commits (NOTIFY is transactional).

CREATE OR REPLACE FUNCTION wattstream_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('wattstream_registry', OLD.site_id);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.site_id IS DISTINCT FROM OLD.site_id) THEN
        PERFORM pg_notify('wattstream_registry', NEW.site_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sites_announce AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION wattstream_registry_changed();
CREATE TRIGGER meters_announce AFTER INSERT OR UPDATE OR DELETE ON meters
    FOR EACH ROW EXECUTE FUNCTION wattstream_registry_changed();
