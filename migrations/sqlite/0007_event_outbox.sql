-- Events: a transactional outbox, relayed into one ordered feed (decision record 0013).
--
-- Every change writes its events into event_outbox in the same statement, through the
-- triggers below on the tables that carry the change, so that no write path (single
-- statement, group commit, slow path, sweeper, ticker) can forget one: a statement
-- that changes nothing or aborts writes no event, and a rolled-back transaction takes
-- its events with it. The one event no row carries with its time, hold.cancelled, is
-- written by the adapter's cancel, in its transaction.
--
-- The relay (the one writer) moves the outbox into events in pending_id order with
-- the next ids (AUTOINCREMENT: an id is never reused, even after a prune) and empties
-- the outbox, in one transaction. Events are typed columns, not JSON: the adapter
-- turns a row into the domain event, and a payment's seats are read from payments
-- and payment_seats (which never change) when the feed is read.

CREATE TABLE event_outbox (
    pending_id     INTEGER PRIMARY KEY,
    type           TEXT NOT NULL,
    at             INTEGER NOT NULL,
    user_id        BLOB,
    seq            INTEGER,
    first_seq      INTEGER,
    reservation_id BLOB,
    schedule_id    INTEGER,
    seat_no        INTEGER,
    amount         INTEGER,
    balance        INTEGER,
    payment_id     BLOB,
    until_at       INTEGER,
    reason         TEXT
);

CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT NOT NULL,
    at             INTEGER NOT NULL,
    user_id        BLOB,
    seq            INTEGER,
    first_seq      INTEGER,
    reservation_id BLOB,
    schedule_id    INTEGER,
    seat_no        INTEGER,
    amount         INTEGER,
    balance        INTEGER,
    payment_id     BLOB,
    until_at       INTEGER,
    reason         TEXT
);

-- token.issued: a new place.
CREATE TRIGGER event_token_issued AFTER INSERT ON queue_entries
BEGIN
    INSERT INTO event_outbox (type, at, user_id, seq)
    VALUES ('token.issued', NEW.issued_at, NEW.user_id, NEW.seq);
END;

-- session.ended: a live place ends, paid (at the payment's time: its ledger row is
-- written before the place is ended, on every path) or lapsed (at its end).
CREATE TRIGGER event_session_ended AFTER UPDATE OF state ON queue_entries
WHEN OLD.state = 'live' AND NEW.state <> 'live'
BEGIN
    INSERT INTO event_outbox (type, at, user_id, seq, reason)
    VALUES ('session.ended',
            CASE NEW.state
                WHEN 'done' THEN (SELECT l.at FROM ledger l
                                  WHERE l.user_id = NEW.user_id AND l.kind = 'payment'
                                  ORDER BY l.id DESC LIMIT 1)
                ELSE coalesce(NEW.expires_at, NEW.issued_at)
            END,
            NEW.user_id, NEW.seq,
            CASE NEW.state WHEN 'done' THEN 'paid' ELSE 'lapsed' END);
END;

-- session.admitted: one tick, one range of places.
CREATE TRIGGER event_session_admitted AFTER UPDATE OF serving ON queue_counters
WHEN NEW.serving > OLD.serving
BEGIN
    INSERT INTO event_outbox (type, at, first_seq, seq)
    VALUES ('session.admitted', coalesce(NEW.last_tick_at, 0), OLD.serving + 1, NEW.serving);
END;

-- hold.created: a seat names a new live hold.
CREATE TRIGGER event_hold_created AFTER UPDATE OF hold_id ON seats
WHEN NEW.hold_id IS NOT NULL AND NEW.sold = 0 AND NEW.hold_id IS NOT OLD.hold_id
BEGIN
    INSERT INTO event_outbox
        (type, at, user_id, reservation_id, schedule_id, seat_no, amount, until_at)
    VALUES ('hold.created', NEW.held_at, NEW.hold_user, NEW.hold_id, NEW.schedule_id,
            NEW.seat_no, NEW.price, NEW.hold_until);
END;

-- hold.expired: a lapsed hold recorded (swept, or replaced by a new hold).
CREATE TRIGGER event_hold_expired AFTER INSERT ON ended_reservations
WHEN NEW.state = 'expired'
BEGIN
    INSERT INTO event_outbox
        (type, at, user_id, reservation_id, schedule_id, seat_no, until_at)
    VALUES ('hold.expired', NEW.expires_at, NEW.user_id, NEW.id, NEW.schedule_id,
            NEW.seat_no, NEW.expires_at);
END;

-- wallet.charged and payment.completed: the ledger row of each.
CREATE TRIGGER event_ledger AFTER INSERT ON ledger
BEGIN
    INSERT INTO event_outbox (type, at, user_id, amount, balance, payment_id)
    VALUES (CASE NEW.kind WHEN 'charge' THEN 'wallet.charged' ELSE 'payment.completed' END,
            NEW.at, NEW.user_id, NEW.amount, NEW.balance_after, NEW.payment_id);
END;
