-- Teams: accounts of one tenant sharing keys and policies, with admin and member roles.
-- A team's key or policy has the team in team_id and no owner_id.
--
-- Replacing a key's secret (a new pubkey under the same id) enters the change feed, so
-- every process drops the old secret from memory at once. Key replacement gets its own
-- confirmation-code purpose.

CREATE TABLE teams (
    id         UUID   NOT NULL PRIMARY KEY,
    tenant_id  UUID   NOT NULL REFERENCES tenants (id),
    name       TEXT   NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE team_members (
    team_id  UUID   NOT NULL REFERENCES teams (id),
    user_id  UUID   NOT NULL REFERENCES users (id),
    role     TEXT   NOT NULL CHECK (role IN ('admin', 'member')),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_user ON team_members (user_id);

ALTER TABLE keys ADD COLUMN team_id UUID REFERENCES teams (id);
CREATE INDEX keys_by_team ON keys (team_id);
ALTER TABLE policies ADD COLUMN team_id UUID REFERENCES teams (id);
CREATE INDEX policies_by_team ON policies (team_id);

CREATE TRIGGER keys_replaced AFTER UPDATE OF pubkey ON keys
    FOR EACH ROW EXECUTE FUNCTION keycast_record_change('key');

ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE email_tokens ADD CONSTRAINT email_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password', 'confirm_export', 'confirm_replace_key'));
