-- Single-statement writes for SQLite.
--
-- A hold, a charge and a payment are each ONE statement on the hot path: an
-- INSERT ... SELECT whose WHERE clause is the whole contract (seat free or lapsed,
-- session active, under the hold cap; balance covers the price; ...). The rows that
-- change together with that insert change in these triggers, inside the same
-- statement, so the write is atomic without an explicit transaction and costs one
-- round trip to the database thread. Each trigger step checks that it changed exactly
-- one row and aborts the whole statement otherwise.

-- A payment records the queue session it ended.
ALTER TABLE payments ADD COLUMN session_seq INTEGER;

-- A new held reservation first retires the seat's lapsed one (the one-held-per-seat
-- index would refuse the insert otherwise) ...
CREATE TRIGGER reservation_retires_lapsed_hold
BEFORE INSERT ON reservations WHEN NEW.state = 'held'
BEGIN
    UPDATE reservations SET state = 'expired'
    WHERE schedule_id = NEW.schedule_id AND seat_no = NEW.seat_no AND state = 'held';
END;

-- ... and then claims its seat.
CREATE TRIGGER reservation_claims_seat
AFTER INSERT ON reservations WHEN NEW.state = 'held'
BEGIN
    UPDATE seats SET hold_id = NEW.id, hold_until = NEW.expires_at
    WHERE schedule_id = NEW.schedule_id AND seat_no = NEW.seat_no AND sold = 0;
    SELECT RAISE(ABORT, 'hold: the seat row was not claimed') WHERE changes() != 1;
END;

-- A charge row sets the balance it carries.
CREATE TRIGGER ledger_charge_sets_balance
AFTER INSERT ON ledger WHEN NEW.kind = 'charge'
BEGIN
    INSERT OR REPLACE INTO wallets (user_id, balance) VALUES (NEW.user_id, NEW.balance_after);
END;

-- A payment debits, sells the seat, closes the reservation, writes its ledger row and
-- ends the session.
CREATE TRIGGER payment_settles
AFTER INSERT ON payments WHEN NEW.session_seq IS NOT NULL
BEGIN
    UPDATE wallets SET balance = balance - NEW.amount
    WHERE user_id = NEW.user_id AND balance >= NEW.amount;
    SELECT RAISE(ABORT, 'payment: the balance does not cover the price') WHERE changes() != 1;
    UPDATE seats SET sold = 1, hold_id = NULL, hold_until = NULL
    WHERE schedule_id = NEW.schedule_id AND seat_no = NEW.seat_no
      AND hold_id = NEW.reservation_id AND sold = 0;
    SELECT RAISE(ABORT, 'payment: the seat is not held by the reservation') WHERE changes() != 1;
    UPDATE reservations SET state = 'paid' WHERE id = NEW.reservation_id AND state = 'held';
    SELECT RAISE(ABORT, 'payment: the reservation is not held') WHERE changes() != 1;
    INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
    VALUES (NEW.user_id, 'payment', NEW.id, NEW.amount,
            (SELECT balance FROM wallets WHERE user_id = NEW.user_id), NEW.paid_at);
    UPDATE queue_entries SET state = 'done' WHERE seq = NEW.session_seq AND state = 'live';
    SELECT RAISE(ABORT, 'payment: the session is not live') WHERE changes() != 1;
END;

-- The hold cap counts a user's live holds on every hold.
CREATE INDEX reservations_held_by_user ON reservations (user_id, expires_at) WHERE state = 'held';
