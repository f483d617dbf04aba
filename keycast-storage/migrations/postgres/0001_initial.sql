-- keycast schema, Postgres dialect. Times are unix seconds. Ids are UUIDs.
-- Secrets appear only as envelope columns (wrapped DEK, nonce, ciphertext) and digests.

CREATE TABLE tenants (
    id          UUID   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 63),
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id            UUID   NOT NULL PRIMARY KEY,
    tenant_id     UUID   NOT NULL REFERENCES tenants (id),
    username      TEXT   NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    password_hash TEXT   CHECK (length(password_hash) <= 512),
    created_at    BIGINT NOT NULL,
    UNIQUE (tenant_id, username)
);

CREATE TABLE keys (
    id             UUID   NOT NULL PRIMARY KEY,
    tenant_id      UUID   NOT NULL REFERENCES tenants (id),
    owner_id       UUID   REFERENCES users (id),
    kind           TEXT   NOT NULL CHECK (kind IN ('user', 'bunker')),
    pubkey         BYTEA  NOT NULL CHECK (octet_length(pubkey) = 32),
    name           TEXT   NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    format_version BIGINT NOT NULL,
    kek_provider   TEXT   NOT NULL,
    kek_key_id     TEXT   NOT NULL,
    kek_version    BIGINT NOT NULL,
    wrapped_dek    BYTEA  NOT NULL,
    nonce          BYTEA  NOT NULL CHECK (octet_length(nonce) = 24),
    ciphertext     BYTEA  NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, pubkey)
);
CREATE INDEX keys_by_owner ON keys (tenant_id, owner_id);
CREATE INDEX keys_by_kek ON keys (kek_provider, kek_key_id, kek_version);

CREATE TABLE policies (
    id          UUID   NOT NULL PRIMARY KEY,
    tenant_id   UUID   NOT NULL REFERENCES tenants (id),
    name        TEXT   NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    permissions TEXT   NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE authorizations (
    id             UUID   NOT NULL PRIMARY KEY,
    tenant_id      UUID   NOT NULL REFERENCES tenants (id),
    user_id        UUID   NOT NULL REFERENCES users (id),
    key_id         UUID   NOT NULL REFERENCES keys (id),
    bunker_key_id  UUID   NOT NULL UNIQUE REFERENCES keys (id),
    bunker_pubkey  BYTEA  NOT NULL UNIQUE CHECK (octet_length(bunker_pubkey) = 32),
    connect_secret BYTEA  CHECK (octet_length(connect_secret) = 32),
    relays         TEXT   NOT NULL,
    policy_id      UUID   NOT NULL REFERENCES policies (id),
    label          TEXT   NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    expires_at     BIGINT,
    revoked_at     BIGINT,
    uses           BIGINT NOT NULL DEFAULT 0,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX authorizations_by_user ON authorizations (tenant_id, user_id);
CREATE INDEX authorizations_active ON authorizations (revoked_at, expires_at);

CREATE TABLE authorization_clients (
    seq              BIGSERIAL NOT NULL PRIMARY KEY,
    authorization_id UUID      NOT NULL REFERENCES authorizations (id) ON DELETE CASCADE,
    client_pubkey    BYTEA     NOT NULL CHECK (octet_length(client_pubkey) = 32),
    connected_at     BIGINT    NOT NULL,
    UNIQUE (authorization_id, client_pubkey)
);

CREATE TABLE api_tokens (
    digest           BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(digest) = 32),
    tenant_id        UUID   NOT NULL REFERENCES tenants (id),
    authorization_id UUID   NOT NULL REFERENCES authorizations (id),
    expires_at       BIGINT,
    created_at       BIGINT NOT NULL
);

CREATE TABLE oauth_codes (
    digest           BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(digest) = 32),
    tenant_id        UUID   NOT NULL REFERENCES tenants (id),
    user_id          UUID   NOT NULL REFERENCES users (id),
    authorization_id UUID   NOT NULL REFERENCES authorizations (id),
    client_id        TEXT   NOT NULL CHECK (length(client_id) BETWEEN 1 AND 256),
    redirect_uri     TEXT   NOT NULL CHECK (length(redirect_uri) BETWEEN 1 AND 2048),
    code_challenge   TEXT   NOT NULL CHECK (length(code_challenge) BETWEEN 43 AND 128),
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);

-- Append-only: no foreign keys, so a record outlives what it mentions.
CREATE TABLE audit_log (
    seq              BIGSERIAL NOT NULL PRIMARY KEY,
    at               BIGINT    NOT NULL,
    tenant_id        UUID      NOT NULL,
    user_id          UUID,
    key_id           UUID      NOT NULL,
    authorization_id UUID,
    method           TEXT      NOT NULL,
    event_kind       BIGINT,
    event_id         BYTEA,
    outcome          TEXT      NOT NULL,
    detail           TEXT
);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, seq);
CREATE INDEX audit_by_key ON audit_log (key_id, seq);
CREATE INDEX audit_by_authorization ON audit_log (authorization_id, seq);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
