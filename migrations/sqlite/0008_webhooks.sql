-- Webhook endpoints (issue 18): where the events of the feed are posted, one
-- endpoint at a time per deliverer, in event order.
--
-- `cursor` is the last event id delivered (or skipped): the next request carries the
-- first event of the endpoint's types after it. `types` is a comma-separated list of
-- event type names, '' for every type. `secret` signs each request; it is read only
-- by the deliverer's claim and never listed. A deliverer holds an endpoint while
-- `leased_until` is in the future; every write of a deliverer names itself
-- (`leased_by`) and changes nothing once the lease is another's or has lapsed.
-- AUTOINCREMENT: an id is never reused, so a removed endpoint's id cannot be
-- mistaken for a new one.
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    types           TEXT NOT NULL DEFAULT '',
    secret          TEXT NOT NULL CHECK (length(secret) BETWEEN 16 AND 200),
    cursor          INTEGER NOT NULL CHECK (cursor >= 0),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failed')),
    last_error      TEXT,
    leased_until    INTEGER,
    leased_by       TEXT,
    created_at      INTEGER NOT NULL,
    CHECK ((leased_until IS NULL) = (leased_by IS NULL))
);

-- The claim's order: active endpoints by when they are due.
CREATE INDEX webhooks_due ON webhooks (next_attempt_at, id) WHERE status = 'active';
