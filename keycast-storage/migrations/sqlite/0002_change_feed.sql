-- The change feed (KeyStore::changes_since): one row per write that can make a cached
-- authorization or policy stale, appended by triggers inside the writing transaction, so
-- no write path can forget it. Use counters do not touch `version` and add nothing.

CREATE TABLE changes (
    seq       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    entity    TEXT    NOT NULL CHECK (entity IN ('authorization', 'policy')),
    entity_id BLOB    NOT NULL CHECK (length(entity_id) = 16)
) STRICT;

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
