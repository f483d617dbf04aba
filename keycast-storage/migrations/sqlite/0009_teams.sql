-- Teams: accounts of one tenant sharing keys and policies, with admin and member roles.
-- A team's key or policy has the team in team_id and no owner_id.
--
-- Replacing a key's secret (a new pubkey under the same id) enters the change feed, so
-- every process drops the old secret from memory at once.
--
-- Key replacement gets its own confirmation-code purpose. SQLite cannot alter a CHECK
-- constraint, so email_tokens (no triggers, no dependents) is rebuilt with its rows.

CREATE TABLE teams (
    id         BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    tenant_id  BLOB    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE team_members (
    team_id  BLOB    NOT NULL REFERENCES teams (id),
    user_id  BLOB    NOT NULL REFERENCES users (id),
    role     TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) STRICT;
CREATE INDEX team_members_by_user ON team_members (user_id);

ALTER TABLE keys ADD COLUMN team_id BLOB REFERENCES teams (id);
CREATE INDEX keys_by_team ON keys (team_id);
ALTER TABLE policies ADD COLUMN team_id BLOB REFERENCES teams (id);
CREATE INDEX policies_by_team ON policies (team_id);

CREATE TRIGGER keys_replaced AFTER UPDATE OF pubkey ON keys
BEGIN
    INSERT INTO changes (entity, entity_id) VALUES ('key', NEW.id);
END;

CREATE TABLE email_tokens_v2 (
    digest     BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    tenant_id  BLOB    NOT NULL REFERENCES tenants (id),
    user_id    BLOB    NOT NULL REFERENCES users (id),
    purpose    TEXT    NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'confirm_export', 'confirm_replace_key')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO email_tokens_v2 SELECT digest, tenant_id, user_id, purpose, expires_at, created_at FROM email_tokens;
DROP TABLE email_tokens;
ALTER TABLE email_tokens_v2 RENAME TO email_tokens;
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);
