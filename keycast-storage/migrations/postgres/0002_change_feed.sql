-- The change feed (KeyStore::changes_since): one row per write that can make a cached
-- authorization or policy stale, appended by triggers inside the writing transaction, so
-- no write path can forget it. Use counters do not touch `version` and add nothing.

CREATE TABLE changes (
    seq       BIGSERIAL NOT NULL PRIMARY KEY,
    entity    TEXT      NOT NULL CHECK (entity IN ('authorization', 'policy')),
    entity_id UUID      NOT NULL
);

CREATE FUNCTION keycast_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES (TG_ARGV[0], NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER authorizations_inserted AFTER INSERT ON authorizations
    FOR EACH ROW EXECUTE FUNCTION keycast_record_change('authorization');
CREATE TRIGGER authorizations_changed AFTER UPDATE OF version ON authorizations
    FOR EACH ROW EXECUTE FUNCTION keycast_record_change('authorization');
CREATE TRIGGER policies_changed AFTER UPDATE OF version ON policies
    FOR EACH ROW EXECUTE FUNCTION keycast_record_change('policy');
