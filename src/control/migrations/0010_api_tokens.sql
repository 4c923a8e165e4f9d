-- pglab control database, version 10: personal API tokens of lab masters
-- (stored as their SHA-256 only; shown once when made).

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    -- The lab master (or `cli:<user>`) it acts for.
    owner        text NOT NULL,
    scope        text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    -- SHA-256 (hex) of the whole token; the first characters for people.
    hash         text NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_by_owner ON api_tokens (owner, id);
