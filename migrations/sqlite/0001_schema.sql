-- booking schema, SQLite dialect. Times are integer milliseconds since the Unix epoch,
-- ids of users, tokens, reservations and payments are 16-byte UUID blobs, money is an
-- integer in minor units. Constraints back up every rule the code keeps.

CREATE TABLE concerts (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 800)
);

CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY,
    concert_id INTEGER NOT NULL REFERENCES concerts (id),
    starts_at  INTEGER NOT NULL,
    -- The UTC date of starts_at (YYYY-MM-DD): one date per concert per day.
    date       TEXT NOT NULL,
    seat_count INTEGER NOT NULL CHECK (seat_count BETWEEN 1 AND 1000),
    UNIQUE (concert_id, date)
);

-- The current claim on each seat: sold, or held by one reservation until hold_until.
CREATE TABLE seats (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id),
    seat_no     INTEGER NOT NULL CHECK (seat_no BETWEEN 1 AND 1000),
    price       INTEGER NOT NULL CHECK (price > 0),
    sold        INTEGER NOT NULL DEFAULT 0 CHECK (sold IN (0, 1)),
    hold_id     BLOB,
    hold_until  INTEGER,
    PRIMARY KEY (schedule_id, seat_no),
    CHECK ((hold_id IS NULL) = (hold_until IS NULL)),
    CHECK (NOT (sold = 1 AND hold_id IS NOT NULL))
) WITHOUT ROWID;

CREATE TABLE reservations (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL,
    schedule_id INTEGER NOT NULL,
    seat_no     INTEGER NOT NULL,
    price       INTEGER NOT NULL CHECK (price > 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('held', 'paid', 'cancelled', 'expired')),
    FOREIGN KEY (schedule_id, seat_no) REFERENCES seats (schedule_id, seat_no)
);
-- I1 in the schema: at most one held and at most one paid reservation per seat.
CREATE UNIQUE INDEX reservations_one_held_per_seat
    ON reservations (schedule_id, seat_no) WHERE state = 'held';
CREATE UNIQUE INDEX reservations_one_paid_per_seat
    ON reservations (schedule_id, seat_no) WHERE state = 'paid';
CREATE INDEX reservations_by_user ON reservations (user_id, created_at);
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE state = 'held';

CREATE TABLE queue_entries (
    seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
    user_id     BLOB NOT NULL,
    token_id    BLOB NOT NULL UNIQUE,
    issued_at   INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('live', 'done', 'expired')),
    admitted_at INTEGER,
    seen_at     INTEGER,
    expires_at  INTEGER,
    CHECK ((admitted_at IS NULL) = (expires_at IS NULL))
);
-- A user has at most one live place.
CREATE UNIQUE INDEX queue_one_live_entry_per_user ON queue_entries (user_id) WHERE state = 'live';
CREATE INDEX queue_admitted_live ON queue_entries (expires_at)
    WHERE state = 'live' AND admitted_at IS NOT NULL;

-- One row: the serving counter and everything the ticker shares.
CREATE TABLE queue_counters (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq         INTEGER NOT NULL CHECK (last_seq >= 0),
    serving          INTEGER NOT NULL CHECK (serving >= 0 AND serving <= last_seq),
    version          INTEGER NOT NULL,
    last_tick_at     INTEGER,
    paused           INTEGER NOT NULL CHECK (paused IN (0, 1)),
    interval_ms      INTEGER NOT NULL CHECK (interval_ms BETWEEN 10 AND 3600000),
    batch            INTEGER CHECK (batch BETWEEN 1 AND 100000),
    max_active       INTEGER CHECK (max_active BETWEEN 1 AND 1000000),
    admit_rate_milli INTEGER NOT NULL CHECK (admit_rate_milli >= 0),
    CHECK (batch IS NOT NULL OR max_active IS NOT NULL)
);
-- The default policy of booking-core: 50 users a second, at most 500 active.
INSERT INTO queue_counters VALUES (1, 0, 0, 0, NULL, 0, 1000, 50, 500, 0);

CREATE TABLE wallets (
    user_id BLOB PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
) WITHOUT ROWID;

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BLOB NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('charge', 'payment')),
    payment_id    BLOB,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    at            INTEGER NOT NULL,
    idem_key      TEXT,
    CHECK ((kind = 'payment') = (payment_id IS NOT NULL))
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE UNIQUE INDEX ledger_charge_key ON ledger (user_id, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE payments (
    id             BLOB PRIMARY KEY,
    reservation_id BLOB NOT NULL UNIQUE REFERENCES reservations (id),
    user_id        BLOB NOT NULL,
    schedule_id    INTEGER NOT NULL,
    seat_no        INTEGER NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    paid_at        INTEGER NOT NULL,
    idem_key       TEXT,
    -- I1 in the schema: a seat is sold once.
    UNIQUE (schedule_id, seat_no)
);
CREATE INDEX payments_by_user ON payments (user_id, paid_at);
CREATE UNIQUE INDEX payments_key ON payments (user_id, idem_key) WHERE idem_key IS NOT NULL;
