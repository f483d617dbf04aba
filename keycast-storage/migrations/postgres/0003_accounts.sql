-- Accounts that register over HTTP log in with an e-mail (lower-cased by the application);
-- sessions are found by the SHA-256 digest of their bearer token.

ALTER TABLE users ADD COLUMN email TEXT CHECK (email IS NULL OR length(email) BETWEEN 3 AND 254);
CREATE UNIQUE INDEX users_by_email ON users (tenant_id, email) WHERE email IS NOT NULL;

CREATE TABLE sessions (
    digest     BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(digest) = 32),
    tenant_id  UUID   NOT NULL REFERENCES tenants (id),
    user_id    UUID   NOT NULL REFERENCES users (id),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
