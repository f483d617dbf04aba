-- E-mail flows: when an account proved its address, and the single-use tokens mailed to it
-- (stored by SHA-256 digest, like every other bearer secret).

ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

CREATE TABLE email_tokens (
    digest     BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    tenant_id  BLOB    NOT NULL REFERENCES tenants (id),
    user_id    BLOB    NOT NULL REFERENCES users (id),
    purpose    TEXT    NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'confirm_export')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);
