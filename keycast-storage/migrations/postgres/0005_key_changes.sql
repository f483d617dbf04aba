-- Deleting a key enters the change feed, so every process drops the key's secret from
-- memory at once rather than when its cache entry idles out.

ALTER TABLE changes DROP CONSTRAINT changes_entity_check;
ALTER TABLE changes ADD CONSTRAINT changes_entity_check
    CHECK (entity IN ('authorization', 'policy', 'key'));

CREATE FUNCTION keycast_record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES (TG_ARGV[0], OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER keys_deleted AFTER DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION keycast_record_deletion('key');
