-- booking schema, PostgreSQL dialect: the SQLite schema in PostgreSQL types. Times are
-- BIGINT milliseconds since the Unix epoch, ids of users, tokens, reservations and
-- payments are UUIDs, money is a BIGINT in minor units. Constraints back up every rule
-- the code keeps. No extension is needed.
--
-- Every integer column is BIGINT, so the adapter reads all of them as i64.

CREATE TABLE concerts (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 800)
);

CREATE TABLE schedules (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    concert_id BIGINT NOT NULL REFERENCES concerts (id),
    starts_at  BIGINT NOT NULL,
    -- The UTC date of starts_at: one date per concert per day.
    date       DATE NOT NULL,
    seat_count BIGINT NOT NULL CHECK (seat_count BETWEEN 1 AND 1000),
    UNIQUE (concert_id, date)
);

-- The current claim on each seat: sold, or held by one reservation until hold_until.
-- A 'held' reservation is always the one its seat's hold_id names; every write that
-- changes a held reservation locks its seat row first.
CREATE TABLE seats (
    schedule_id BIGINT NOT NULL REFERENCES schedules (id),
    seat_no     BIGINT NOT NULL CHECK (seat_no BETWEEN 1 AND 1000),
    price       BIGINT NOT NULL CHECK (price > 0),
    sold        BOOLEAN NOT NULL DEFAULT FALSE,
    hold_id     UUID,
    hold_until  BIGINT,
    PRIMARY KEY (schedule_id, seat_no),
    CHECK ((hold_id IS NULL) = (hold_until IS NULL)),
    CHECK (NOT (sold AND hold_id IS NOT NULL))
);

CREATE TABLE reservations (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    schedule_id BIGINT NOT NULL,
    seat_no     BIGINT NOT NULL,
    price       BIGINT NOT NULL CHECK (price > 0),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('held', 'paid', 'cancelled', 'expired')),
    -- Insertion order (SQLite's rowid): breaks ties of created_at, newest first.
    row_no      BIGINT GENERATED ALWAYS AS IDENTITY,
    FOREIGN KEY (schedule_id, seat_no) REFERENCES seats (schedule_id, seat_no)
);
-- I1 in the schema: at most one held and at most one paid reservation per seat.
CREATE UNIQUE INDEX reservations_one_held_per_seat
    ON reservations (schedule_id, seat_no) WHERE state = 'held';
CREATE UNIQUE INDEX reservations_one_paid_per_seat
    ON reservations (schedule_id, seat_no) WHERE state = 'paid';
CREATE INDEX reservations_by_user ON reservations (user_id, created_at);
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE state = 'held';
-- A hold counts the user's live holds: this index answers that from a few entries,
-- whatever the number of holds of other users.
CREATE INDEX reservations_held_by_user ON reservations (user_id, expires_at) WHERE state = 'held';

CREATE TABLE queue_entries (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    user_id     UUID NOT NULL,
    token_id    UUID NOT NULL UNIQUE,
    issued_at   BIGINT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('live', 'done', 'expired')),
    admitted_at BIGINT,
    seen_at     BIGINT,
    expires_at  BIGINT,
    -- Bumped by every hold taken in this session: a hold compares it with the value
    -- its snapshot saw, to know that its count of the user's live holds is current.
    hold_gen    BIGINT NOT NULL DEFAULT 0,
    CHECK ((admitted_at IS NULL) = (expires_at IS NULL))
);
-- A user has at most one live place.
CREATE UNIQUE INDEX queue_one_live_entry_per_user ON queue_entries (user_id) WHERE state = 'live';
CREATE INDEX queue_admitted_live ON queue_entries (expires_at)
    WHERE state = 'live' AND admitted_at IS NOT NULL;

-- One row: the serving counter and everything the ticker shares.
CREATE TABLE queue_counters (
    id               BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq         BIGINT NOT NULL CHECK (last_seq >= 0),
    serving          BIGINT NOT NULL CHECK (serving >= 0 AND serving <= last_seq),
    version          BIGINT NOT NULL,
    last_tick_at     BIGINT,
    paused           BOOLEAN NOT NULL,
    interval_ms      BIGINT NOT NULL CHECK (interval_ms BETWEEN 10 AND 3600000),
    batch            BIGINT CHECK (batch BETWEEN 1 AND 100000),
    max_active       BIGINT CHECK (max_active BETWEEN 1 AND 1000000),
    admit_rate_milli BIGINT NOT NULL CHECK (admit_rate_milli >= 0),
    CHECK (batch IS NOT NULL OR max_active IS NOT NULL)
);
-- The default policy of booking-core: 50 users a second, at most 500 active.
INSERT INTO queue_counters
    (id, last_seq, serving, version, last_tick_at, paused, interval_ms, batch, max_active,
     admit_rate_milli)
VALUES (1, 0, 0, 0, NULL, FALSE, 1000, 50, 500, 0);

CREATE TABLE wallets (
    user_id UUID PRIMARY KEY,
    balance BIGINT NOT NULL CHECK (balance >= 0)
);

CREATE TABLE ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       UUID NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('charge', 'payment')),
    payment_id    UUID,
    amount        BIGINT NOT NULL CHECK (amount > 0),
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    at            BIGINT NOT NULL,
    idem_key      TEXT,
    CHECK ((kind = 'payment') = (payment_id IS NOT NULL))
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE UNIQUE INDEX ledger_charge_key ON ledger (user_id, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE payments (
    id             UUID PRIMARY KEY,
    reservation_id UUID NOT NULL UNIQUE REFERENCES reservations (id),
    user_id        UUID NOT NULL,
    schedule_id    BIGINT NOT NULL,
    seat_no        BIGINT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    paid_at        BIGINT NOT NULL,
    idem_key       TEXT,
    -- Insertion order (SQLite's rowid): breaks ties of paid_at, newest first.
    row_no         BIGINT GENERATED ALWAYS AS IDENTITY,
    -- I1 in the schema: a seat is sold once.
    UNIQUE (schedule_id, seat_no)
);
CREATE INDEX payments_by_user ON payments (user_id, paid_at);
CREATE UNIQUE INDEX payments_key ON payments (user_id, idem_key) WHERE idem_key IS NOT NULL;
