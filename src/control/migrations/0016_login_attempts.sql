-- pglab control database, version 16: failed password attempts, counted
-- here so that every pglab replica applies the same limit (a guesser whose
-- requests a load balancer spreads gets no more tries).

CREATE TABLE login_attempts (
    id  bigserial PRIMARY KEY,
    -- Who attempts (web::limiter::Attempt::key).
    key text NOT NULL,
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_by_key ON login_attempts (key, at);
CREATE INDEX login_attempts_by_time ON login_attempts (at);
