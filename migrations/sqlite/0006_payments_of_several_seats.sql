-- A payment of several holds, and a session's end releasing the payer's other holds.
--
-- A payment is still one row of payments, naming its first seat (reservation_id,
-- schedule_id, seat_no) and its total (amount); a payment of several holds lists its
-- other seats in payment_seats, with their prices, in the order asked (position 2,
-- 3, ...). A payment of one hold writes no payment_seats row, so the single-hold
-- payment writes exactly what it wrote before. Each seat is sold once whatever the
-- table: the sale is the seat's conditional UPDATE (sold = 0 -> 1), and each table
-- keeps one row per seat and per reservation.
CREATE TABLE payment_seats (
    reservation_id BLOB PRIMARY KEY,
    payment_id     BLOB NOT NULL REFERENCES payments (id),
    user_id        BLOB NOT NULL,
    position       INTEGER NOT NULL CHECK (position >= 2),
    schedule_id    INTEGER NOT NULL,
    seat_no        INTEGER NOT NULL,
    price          INTEGER NOT NULL CHECK (price > 0),
    UNIQUE (schedule_id, seat_no),
    UNIQUE (payment_id, position)
);
CREATE INDEX payment_seats_by_user ON payment_seats (user_id);

-- Every reservation, in the old table's shape: the seats paid as the other seats of
-- a payment are paid reservations too.
DROP VIEW reservations;
CREATE VIEW reservations AS
SELECT hold_id AS id, hold_user AS user_id, schedule_id, seat_no, price,
       held_at AS created_at, hold_until AS expires_at, 'held' AS state
FROM seats WHERE hold_user IS NOT NULL AND sold = 0
UNION ALL
SELECT p.reservation_id AS id, p.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid' AS state
FROM payments p JOIN seats s ON s.schedule_id = p.schedule_id AND s.seat_no = p.seat_no
UNION ALL
SELECT ps.reservation_id AS id, ps.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid' AS state
FROM payment_seats ps JOIN seats s ON s.schedule_id = ps.schedule_id AND s.seat_no = ps.seat_no
UNION ALL
SELECT id, user_id, schedule_id, seat_no, price, created_at, expires_at, state
FROM ended_reservations;

-- The single-hold payment's trigger, as in 0004, and one more step: the payment ends
-- the session, and with it the payer's other holds, which lapse now (their seats are
-- free to everyone at once; the sweeper records them as expired). A user has one live
-- session, and holds of an earlier session lapsed with it, so these are the holds of
-- the session the payment ends. Usually there are none: one probe of
-- seats_held_by_user.
DROP TRIGGER payment_settles;
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
    UPDATE seats SET hold_until = NEW.paid_at
    WHERE hold_user = NEW.user_id AND sold = 0 AND hold_until > NEW.paid_at;
END;
