-- keycast schema, SQLite dialect. Times are unix seconds. Ids are 16-byte UUIDs.
-- Secrets appear only as envelope columns (wrapped DEK, nonce, ciphertext) and digests.

CREATE TABLE tenants (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    name        TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 63),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    tenant_id     BLOB    NOT NULL REFERENCES tenants (id),
    username      TEXT    NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    password_hash TEXT    CHECK (length(password_hash) <= 512),
    created_at    INTEGER NOT NULL,
    UNIQUE (tenant_id, username)
) STRICT;

CREATE TABLE keys (
    id             BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    tenant_id      BLOB    NOT NULL REFERENCES tenants (id),
    owner_id       BLOB    REFERENCES users (id),
    kind           TEXT    NOT NULL CHECK (kind IN ('user', 'bunker')),
    pubkey         BLOB    NOT NULL CHECK (length(pubkey) = 32),
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    format_version INTEGER NOT NULL,
    kek_provider   TEXT    NOT NULL,
    kek_key_id     TEXT    NOT NULL,
    kek_version    INTEGER NOT NULL,
    wrapped_dek    BLOB    NOT NULL,
    nonce          BLOB    NOT NULL CHECK (length(nonce) = 24),
    ciphertext     BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, pubkey)
) STRICT;
CREATE INDEX keys_by_owner ON keys (tenant_id, owner_id);
CREATE INDEX keys_by_kek ON keys (kek_provider, kek_key_id, kek_version);

CREATE TABLE policies (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    tenant_id   BLOB    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    permissions TEXT    NOT NULL,
    version     INTEGER NOT NULL
) STRICT;

CREATE TABLE authorizations (
    id             BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    tenant_id      BLOB    NOT NULL REFERENCES tenants (id),
    user_id        BLOB    NOT NULL REFERENCES users (id),
    key_id         BLOB    NOT NULL REFERENCES keys (id),
    bunker_key_id  BLOB    NOT NULL UNIQUE REFERENCES keys (id),
    bunker_pubkey  BLOB    NOT NULL UNIQUE CHECK (length(bunker_pubkey) = 32),
    connect_secret BLOB    CHECK (length(connect_secret) = 32),
    relays         TEXT    NOT NULL,
    policy_id      BLOB    NOT NULL REFERENCES policies (id),
    label          TEXT    NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    expires_at     INTEGER,
    revoked_at     INTEGER,
    uses           INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX authorizations_by_user ON authorizations (tenant_id, user_id);
CREATE INDEX authorizations_active ON authorizations (revoked_at, expires_at);

CREATE TABLE authorization_clients (
    seq              INTEGER NOT NULL PRIMARY KEY,
    authorization_id BLOB    NOT NULL REFERENCES authorizations (id) ON DELETE CASCADE,
    client_pubkey    BLOB    NOT NULL CHECK (length(client_pubkey) = 32),
    connected_at     INTEGER NOT NULL,
    UNIQUE (authorization_id, client_pubkey)
) STRICT;

CREATE TABLE api_tokens (
    digest           BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    tenant_id        BLOB    NOT NULL REFERENCES tenants (id),
    authorization_id BLOB    NOT NULL REFERENCES authorizations (id),
    expires_at       INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_codes (
    digest           BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    tenant_id        BLOB    NOT NULL REFERENCES tenants (id),
    user_id          BLOB    NOT NULL REFERENCES users (id),
    authorization_id BLOB    NOT NULL REFERENCES authorizations (id),
    client_id        TEXT    NOT NULL CHECK (length(client_id) BETWEEN 1 AND 256),
    redirect_uri     TEXT    NOT NULL CHECK (length(redirect_uri) BETWEEN 1 AND 2048),
    code_challenge   TEXT    NOT NULL CHECK (length(code_challenge) BETWEEN 43 AND 128),
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT;

-- Append-only: no foreign keys, so a record outlives what it mentions.
CREATE TABLE audit_log (
    seq              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at               INTEGER NOT NULL,
    tenant_id        BLOB    NOT NULL,
    user_id          BLOB,
    key_id           BLOB    NOT NULL,
    authorization_id BLOB,
    method           TEXT    NOT NULL,
    event_kind       INTEGER,
    event_id         BLOB,
    outcome          TEXT    NOT NULL,
    detail           TEXT
) STRICT;
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, seq);
CREATE INDEX audit_by_key ON audit_log (key_id, seq);
CREATE INDEX audit_by_authorization ON audit_log (authorization_id, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
