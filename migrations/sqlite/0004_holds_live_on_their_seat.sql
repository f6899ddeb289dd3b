-- A seat row carries its reservation: a hold is one conditional UPDATE of the seat.
--
-- Before, a hold inserted a reservation row (table, primary key and two indexes) and
-- marked the seat: five pages written per hold, against one for a single-row UPDATE.
-- Now the seat row itself names its current reservation (hold_id, hold_user, held_at,
-- hold_until) while it is held, and keeps naming it once it is sold (sold = 1). Only a
-- reservation that ends without a sale (cancelled, or expired and then swept or
-- replaced by a new hold) moves to a row of its own, in ended_reservations, when it
-- ends.
--
-- A hold writes the seat row and one small partial index, seats_held_by_user: the
-- unsold holds (live, or lapsed and not yet swept) by user and expiry, which the hold
-- cap counts. A payment only sets sold = 1 (the seat leaves that index) and writes no
-- reservation row. There is no index of seats by reservation id: a payment and a
-- cancel know the user, and find the hold among the user's few entries of
-- seats_held_by_user; a lookup by id alone scans that index, which holds only the
-- unsold holds (the sweeper keeps the lapsed ones few), while sold seats are found by
-- id through payments.

-- The view `reservations` shows every reservation, whatever its state, with the
-- columns of the old table: held and sold seats, and ended_reservations.
--
-- The tables whose constraints change are rebuilt; the rows with foreign keys are
-- written back after their parents are in place, so foreign keys stay on.

CREATE TABLE seats_new (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id),
    seat_no     INTEGER NOT NULL CHECK (seat_no BETWEEN 1 AND 1000),
    price       INTEGER NOT NULL CHECK (price > 0),
    sold        INTEGER NOT NULL DEFAULT 0 CHECK (sold IN (0, 1)),
    -- The reservation the seat names: its live or lapsed hold while sold = 0, the
    -- paid one once sold = 1. All four are set, or none.
    hold_id     BLOB,
    hold_user   BLOB,
    held_at     INTEGER,
    hold_until  INTEGER,
    PRIMARY KEY (schedule_id, seat_no),
    CHECK ((hold_id IS NULL) = (hold_user IS NULL)
       AND (hold_id IS NULL) = (held_at IS NULL)
       AND (hold_id IS NULL) = (hold_until IS NULL)),
    CHECK (sold = 0 OR hold_id IS NOT NULL)
) WITHOUT ROWID;

-- Held seats take their holder from the held reservation; sold seats take their paid
-- reservation back.
INSERT INTO seats_new (schedule_id, seat_no, price, sold, hold_id, hold_user, held_at, hold_until)
SELECT s.schedule_id, s.seat_no, s.price, s.sold, r.id, r.user_id, r.created_at, r.expires_at
FROM seats s
LEFT JOIN reservations r
  ON r.schedule_id = s.schedule_id AND r.seat_no = s.seat_no
 AND ((s.sold = 0 AND r.id = s.hold_id AND r.state = 'held')
   OR (s.sold = 1 AND r.state = 'paid'));

CREATE TABLE ended_moving (
    id BLOB, user_id BLOB, schedule_id INTEGER, seat_no INTEGER, price INTEGER,
    created_at INTEGER, expires_at INTEGER, state TEXT, row_no INTEGER
);
INSERT INTO ended_moving
SELECT id, user_id, schedule_id, seat_no, price, created_at, expires_at, state, rowid
FROM reservations WHERE state IN ('cancelled', 'expired');

-- A payment's reservation is its seat's: the foreign key to reservations goes (a
-- seat names at most one reservation, and the unique (schedule_id, seat_no) still
-- allows one payment per seat, hence one per reservation).
CREATE TABLE payments_new (
    id             BLOB PRIMARY KEY,
    reservation_id BLOB NOT NULL UNIQUE,
    user_id        BLOB NOT NULL,
    schedule_id    INTEGER NOT NULL,
    seat_no        INTEGER NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    paid_at        INTEGER NOT NULL,
    idem_key       TEXT,
    session_seq    INTEGER,
    UNIQUE (schedule_id, seat_no)
);
INSERT INTO payments_new
    (rowid, id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key,
     session_seq)
SELECT rowid, id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key,
       session_seq
FROM payments;

-- The ledger without AUTOINCREMENT: ledger rows are never deleted, so a plain rowid
-- never reuses an id, and a charge or payment no longer writes sqlite_sequence.
CREATE TABLE ledger_new (
    id            INTEGER PRIMARY KEY,
    user_id       BLOB NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('charge', 'payment')),
    payment_id    BLOB,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    at            INTEGER NOT NULL,
    idem_key      TEXT,
    CHECK ((kind = 'payment') = (payment_id IS NOT NULL))
);
INSERT INTO ledger_new SELECT * FROM ledger;

DROP TRIGGER reservation_retires_lapsed_hold;
DROP TRIGGER reservation_claims_seat;
DROP TRIGGER ledger_charge_sets_balance;
DROP TRIGGER payment_settles;
DROP TABLE payments;
DROP TABLE reservations;
DROP TABLE seats;
DROP TABLE ledger;
ALTER TABLE seats_new RENAME TO seats;
ALTER TABLE payments_new RENAME TO payments;
ALTER TABLE ledger_new RENAME TO ledger;

CREATE TABLE ended_reservations (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL,
    schedule_id INTEGER NOT NULL,
    seat_no     INTEGER NOT NULL,
    price       INTEGER NOT NULL CHECK (price > 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('cancelled', 'expired')),
    FOREIGN KEY (schedule_id, seat_no) REFERENCES seats (schedule_id, seat_no)
);
INSERT INTO ended_reservations
    (rowid, id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
SELECT row_no, id, user_id, schedule_id, seat_no, price, created_at, expires_at, state
FROM ended_moving;
DROP TABLE ended_moving;

-- The unsold holds (live or lapsed), by user and expiry: the hold cap's count, a
-- user's holds, and the sweep. A seat leaves it when its hold ends or is paid.
CREATE INDEX seats_held_by_user ON seats (hold_user, hold_until)
    WHERE hold_user IS NOT NULL AND sold = 0;
CREATE INDEX ended_reservations_by_user ON ended_reservations (user_id, created_at);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE UNIQUE INDEX ledger_charge_key ON ledger (user_id, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX payments_by_user ON payments (user_id, paid_at);
CREATE UNIQUE INDEX payments_key ON payments (user_id, idem_key) WHERE idem_key IS NOT NULL;

-- Every reservation, in the old table's shape. Each branch is read through an index
-- when a query names the id or the user (SQLite pushes the condition into each
-- branch): unsold holds through seats_held_by_user, sold seats through the payment's
-- unique reservation id or payments_by_user, ended ones by their key or
-- ended_reservations_by_user.
CREATE VIEW reservations AS
SELECT hold_id AS id, hold_user AS user_id, schedule_id, seat_no, price,
       held_at AS created_at, hold_until AS expires_at, 'held' AS state
FROM seats WHERE hold_user IS NOT NULL AND sold = 0
UNION ALL
SELECT p.reservation_id AS id, p.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid' AS state
FROM payments p JOIN seats s ON s.schedule_id = p.schedule_id AND s.seat_no = p.seat_no
UNION ALL
SELECT id, user_id, schedule_id, seat_no, price, created_at, expires_at, state
FROM ended_reservations;

-- A hold that replaces a lapsed one records the lapsed one as expired, in the same
-- statement.
CREATE TRIGGER seat_hold_replaces_lapsed_hold
BEFORE UPDATE OF hold_id ON seats
WHEN OLD.hold_id IS NOT NULL AND OLD.sold = 0 AND NEW.hold_id IS NOT NULL
 AND NEW.hold_id IS NOT OLD.hold_id
BEGIN
    INSERT INTO ended_reservations
        (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
    VALUES (OLD.hold_id, OLD.hold_user, OLD.schedule_id, OLD.seat_no, OLD.price,
            OLD.held_at, OLD.hold_until, 'expired');
END;

-- A charge row sets the balance it carries.
CREATE TRIGGER ledger_charge_sets_balance
AFTER INSERT ON ledger WHEN NEW.kind = 'charge'
BEGIN
    INSERT OR REPLACE INTO wallets (user_id, balance) VALUES (NEW.user_id, NEW.balance_after);
END;

-- A payment debits, sells the seat (which keeps naming the reservation, now paid),
-- writes its ledger row and ends the session.
CREATE TRIGGER payment_settles
AFTER INSERT ON payments WHEN NEW.session_seq IS NOT NULL
BEGIN
    UPDATE wallets SET balance = balance - NEW.amount
    WHERE user_id = NEW.user_id AND balance >= NEW.amount;
    SELECT RAISE(ABORT, 'payment: the balance does not cover the price') WHERE changes() != 1;
    UPDATE seats SET sold = 1
    WHERE schedule_id = NEW.schedule_id AND seat_no = NEW.seat_no
      AND hold_id = NEW.reservation_id AND hold_user = NEW.user_id AND sold = 0
      AND hold_until > NEW.paid_at;
    SELECT RAISE(ABORT, 'payment: the seat is not held by the reservation') WHERE changes() != 1;
    INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
    VALUES (NEW.user_id, 'payment', NEW.id, NEW.amount,
            (SELECT balance FROM wallets WHERE user_id = NEW.user_id), NEW.paid_at);
    UPDATE queue_entries SET state = 'done' WHERE seq = NEW.session_seq AND state = 'live';
    SELECT RAISE(ABORT, 'payment: the session is not live') WHERE changes() != 1;
END;
