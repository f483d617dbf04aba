-- Deleting a key enters the change feed, so every process drops the key's secret from
-- memory at once rather than when its cache entry idles out.
--
-- SQLite cannot alter a CHECK constraint, so the feed table is rebuilt. Rows and the
-- AUTOINCREMENT high-water mark are kept: readers' cursors stay valid and seq never reuses
-- a value, even when every old row had been removed. The triggers that write to the feed
-- are dropped first (SQLite re-checks triggers when a table is renamed) and recreated
-- unchanged.

DROP TRIGGER authorizations_inserted;
DROP TRIGGER authorizations_changed;
DROP TRIGGER policies_changed;

CREATE TABLE changes_v2 (
    seq       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    entity    TEXT    NOT NULL CHECK (entity IN ('authorization', 'policy', 'key')),
    entity_id BLOB    NOT NULL CHECK (length(entity_id) = 16)
) STRICT;

INSERT INTO changes_v2 (seq, entity, entity_id) SELECT seq, entity, entity_id FROM changes;

INSERT INTO sqlite_sequence (name, seq)
    SELECT 'changes_v2', seq FROM sqlite_sequence
    WHERE name = 'changes' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes_v2');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0))
    WHERE name = 'changes_v2';

DROP TABLE changes;
ALTER TABLE changes_v2 RENAME TO changes;

CREATE TRIGGER authorizations_inserted AFTER INSERT ON authorizations
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES ('authorization', NEW.id);
END;

CREATE TRIGGER authorizations_changed AFTER UPDATE OF version ON authorizations
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES ('authorization', NEW.id);
END;

CREATE TRIGGER policies_changed AFTER UPDATE OF version ON policies
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES ('policy', NEW.id);
END;

CREATE TRIGGER keys_deleted AFTER DELETE ON keys
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES ('key', OLD.id);
END;
