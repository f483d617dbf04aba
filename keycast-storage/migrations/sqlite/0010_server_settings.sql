-- Settings a running server records for the processes beside it (the CLI, other
-- instances): for now the relays its NIP-46 service listens on, so a bunker URI made by
-- the CLI names the relays the server watches.

CREATE TABLE server_settings (
    name       TEXT    NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    value      TEXT    NOT NULL CHECK (length(value) <= 65536),
    updated_at INTEGER NOT NULL
) STRICT;
