-- Accounts that register over HTTP log in with an e-mail (lower-cased by the application);
-- sessions are found by the SHA-256 digest of their bearer token.

ALTER TABLE users ADD COLUMN email TEXT CHECK (email IS NULL OR length(email) BETWEEN 3 AND 254);
CREATE UNIQUE INDEX users_by_email ON users (tenant_id, email) WHERE email IS NOT NULL;

CREATE TABLE sessions (
    digest     BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    tenant_id  BLOB    NOT NULL REFERENCES tenants (id),
    user_id    BLOB    NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
