-- A seat row carries its reservation, as in the SQLite migration of the same number:
-- a hold is one conditional UPDATE of the seat.
--
-- The seat names its current reservation (hold_id, hold_user, held_at, hold_until)
-- while it is held, and keeps naming it once it is sold. Only a reservation that ends
-- without a sale (cancelled, or expired and then swept or replaced by a new hold)
-- moves to a row of its own, in ended_reservations, when it ends. The view
-- `reservations` shows every reservation, whatever its state, in the old table's
-- shape.
--
-- A hold writes the seat row (a new version, with entries in the primary key and in
-- seats_held_by_user), where it wrote a seat version and a reservation row with three
-- index entries before. A payment sets sold (the seat leaves seats_held_by_user) and
-- no longer updates a reservation row. There is no index of seats by reservation id:
-- a payment and a cancel know the user and find the hold among the user's few entries
-- of seats_held_by_user; a lookup by id alone scans that index, which holds only the
-- unsold holds, while sold seats are found by id through payments.

ALTER TABLE seats ADD COLUMN hold_user UUID, ADD COLUMN held_at BIGINT;
-- The old rule "a sold seat names no hold" goes: a sold seat names its paid
-- reservation.
ALTER TABLE seats DROP CONSTRAINT seats_check1;

UPDATE seats st SET hold_user = r.user_id, held_at = r.created_at
FROM reservations r
WHERE r.id = st.hold_id AND r.state = 'held' AND NOT st.sold;
UPDATE seats st
SET hold_id = r.id, hold_user = r.user_id, held_at = r.created_at, hold_until = r.expires_at
FROM reservations r
WHERE r.schedule_id = st.schedule_id AND r.seat_no = st.seat_no AND r.state = 'paid' AND st.sold;

ALTER TABLE seats
    ADD CONSTRAINT seats_hold_complete CHECK (
        (hold_id IS NULL) = (hold_user IS NULL)
        AND (hold_id IS NULL) = (held_at IS NULL)
        AND (hold_id IS NULL) = (hold_until IS NULL)),
    ADD CONSTRAINT seats_sold_names_reservation CHECK (NOT sold OR hold_id IS NOT NULL);

-- A payment's reservation is its seat's: the foreign key to reservations goes (a seat
-- names at most one reservation, and the unique (schedule_id, seat_no) still allows
-- one payment per seat, hence one per reservation).
ALTER TABLE payments DROP CONSTRAINT payments_reservation_id_fkey;

DELETE FROM reservations WHERE state IN ('held', 'paid');
ALTER TABLE reservations RENAME TO ended_reservations;
ALTER TABLE ended_reservations DROP CONSTRAINT reservations_state_check;
ALTER TABLE ended_reservations
    ADD CONSTRAINT ended_reservations_state_check CHECK (state IN ('cancelled', 'expired'));
ALTER TABLE ended_reservations DROP COLUMN row_no;
DROP INDEX reservations_one_held_per_seat;
DROP INDEX reservations_by_user_state;
CREATE INDEX ended_reservations_by_user ON ended_reservations (user_id, created_at);

-- The unsold holds (live, or lapsed and not yet swept), by user and expiry: the hold
-- cap's count, a user's holds, a lookup by id, the list of live holds and the sweep.
CREATE INDEX seats_held_by_user ON seats (hold_user, hold_until)
    WHERE hold_user IS NOT NULL AND NOT sold;

-- Every reservation, in the old table's shape. A condition on the id or the user
-- reaches each branch, which reads it through an index.
CREATE VIEW reservations AS
SELECT hold_id AS id, hold_user AS user_id, schedule_id, seat_no, price,
       held_at AS created_at, hold_until AS expires_at, 'held'::TEXT AS state
FROM seats WHERE hold_user IS NOT NULL AND NOT sold
UNION ALL
SELECT p.reservation_id AS id, p.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid'::TEXT AS state
FROM payments p JOIN seats s ON s.schedule_id = p.schedule_id AND s.seat_no = p.seat_no
UNION ALL
SELECT id, user_id, schedule_id, seat_no, price, created_at, expires_at, state
FROM ended_reservations;

DROP FUNCTION booking_hold(BIGINT, BIGINT, BIGINT, UUID, BIGINT, BIGINT, UUID, BIGINT);
DROP FUNCTION booking_pay(UUID, UUID, BIGINT, BIGINT, TEXT, UUID);

-- A hold. Returns o_refusal NULL and the seat's price when the hold was taken, or the
-- refusal: 'no_such_seat', 'session_ended', 'hold_limit', 'seat_taken' (in this order
-- of precedence). o_n_live is the user's live holds, counted before the hold.
-- (Why a function, and the lock order: see 0002_write_functions.sql.)
CREATE FUNCTION booking_hold(
    p_schedule BIGINT, p_seat BIGINT, p_seq BIGINT, p_user UUID, p_now BIGINT,
    p_max_live BIGINT, p_id UUID, p_until BIGINT,
    OUT o_refusal TEXT, OUT o_n_live BIGINT, OUT o_price BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_sold BOOLEAN;
    v_until BIGINT;
    v_prev UUID;
    v_prev_user UUID;
    v_prev_at BIGINT;
BEGIN
    SELECT st.sold, st.hold_until, st.hold_id, st.hold_user, st.held_at
    INTO v_sold, v_until, v_prev, v_prev_user, v_prev_at
    FROM seats st WHERE st.schedule_id = p_schedule AND st.seat_no = p_seat;
    IF NOT FOUND THEN
        o_refusal := 'no_such_seat';
        RETURN;
    END IF;

    IF v_sold OR v_until > p_now THEN
        -- The seat is visibly taken: name the refusal from plain reads, locking and
        -- writing nothing (a losing claimer costs no commit).
        PERFORM FROM queue_entries q
        WHERE q.seq = p_seq AND q.user_id = p_user AND q.state = 'live'
          AND q.expires_at > p_now;
        IF NOT FOUND THEN
            o_refusal := 'session_ended';
            RETURN;
        END IF;
        SELECT count(*) INTO o_n_live FROM seats h
        WHERE h.hold_user = p_user AND NOT h.sold AND h.hold_until > p_now;
        o_refusal := CASE WHEN o_n_live >= p_max_live THEN 'hold_limit' ELSE 'seat_taken' END;
        RETURN;
    END IF;

    -- Lock the session, re-checked on its newest version, without writing a new
    -- version of it. This serializes the user's holds (a user has one live session; a
    -- lapsed one takes no holds, and the issue that replaces it locks it too) and
    -- conflicts with a payment ending it.
    PERFORM FROM queue_entries q
    WHERE q.seq = p_seq AND q.user_id = p_user AND q.state = 'live' AND q.expires_at > p_now
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        o_refusal := 'session_ended';
        RETURN;
    END IF;

    -- A fresh snapshot, taken after the lock: every other hold of this user has
    -- committed or rolled back, so the count is exact.
    SELECT count(*) INTO o_n_live FROM seats h
    WHERE h.hold_user = p_user AND NOT h.sold AND h.hold_until > p_now;
    IF o_n_live >= p_max_live THEN
        o_refusal := 'hold_limit';
        RETURN;
    END IF;

    -- The claim: one conditional update, re-checked on the newest row after any wait,
    -- so of concurrent claimers exactly one wins. It also requires the seat to still
    -- name the (lapsed) hold read here, so that this hold knows which reservation it
    -- replaces; when that moved (a cancel or a sweep freed the seat, or a hold came
    -- and went), the seat is read again.
    FOR attempt IN 1..8 LOOP
        UPDATE seats st
        SET hold_id = p_id, hold_user = p_user, held_at = p_now, hold_until = p_until
        WHERE st.schedule_id = p_schedule AND st.seat_no = p_seat
          AND NOT st.sold AND (st.hold_until IS NULL OR st.hold_until <= p_now)
          AND st.hold_id IS NOT DISTINCT FROM v_prev
        RETURNING st.price INTO o_price;
        EXIT WHEN FOUND;
        SELECT st.sold, st.hold_until, st.hold_id, st.hold_user, st.held_at
        INTO v_sold, v_until, v_prev, v_prev_user, v_prev_at
        FROM seats st WHERE st.schedule_id = p_schedule AND st.seat_no = p_seat;
        IF v_sold OR v_until > p_now THEN
            o_refusal := 'seat_taken';
            RETURN;
        END IF;
    END LOOP;
    IF o_price IS NULL THEN
        RAISE EXCEPTION 'seat % of schedule % kept changing', p_seat, p_schedule
            USING ERRCODE = 'BK001';
    END IF;

    -- The seat's previous, lapsed hold (if any) was v_prev, as read: it is recorded
    -- as expired. A hold's fields never change while its seat names it.
    IF v_prev IS NOT NULL THEN
        INSERT INTO ended_reservations
            (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
        VALUES (v_prev, v_prev_user, p_schedule, p_seat, o_price, v_prev_at, v_until,
                'expired');
    END IF;
END
$$;

-- A payment, all or nothing. Returns the reservation as read (o_id NULL when there is
-- none) and o_outcome: 'paid', or the refusal 'not_yours', 'not_held', 'key_reused',
-- 'session_ended', 'insufficient_balance' (with o_balance), in this order of
-- precedence. The refusals are named from reads before anything is written; a
-- condition that then fails on a row's newest version (a concurrent payment or
-- debit) raises BK001 and rolls everything back.
CREATE FUNCTION booking_pay(
    p_reservation UUID, p_user UUID, p_seq BIGINT, p_now BIGINT, p_key TEXT,
    p_payment UUID,
    OUT o_outcome TEXT, OUT o_balance BIGINT,
    OUT o_id UUID, OUT o_user_id UUID, OUT o_schedule_id BIGINT, OUT o_seat_no BIGINT,
    OUT o_price BIGINT, OUT o_created_at BIGINT, OUT o_expires_at BIGINT,
    OUT o_state TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_n BIGINT;
    v_balance BIGINT;
BEGIN
    -- The payer's own live hold first (a few entries of seats_held_by_user), then any
    -- reservation by id, to name the refusal.
    SELECT st.hold_id, st.hold_user, st.schedule_id, st.seat_no, st.price, st.held_at,
           st.hold_until, 'held'
    INTO o_id, o_user_id, o_schedule_id, o_seat_no, o_price, o_created_at, o_expires_at,
         o_state
    FROM seats st
    WHERE st.hold_user = p_user AND NOT st.sold AND st.hold_id = p_reservation;
    IF NOT FOUND THEN
        SELECT r.id, r.user_id, r.schedule_id, r.seat_no, r.price, r.created_at,
               r.expires_at, r.state
        INTO o_id, o_user_id, o_schedule_id, o_seat_no, o_price, o_created_at, o_expires_at,
             o_state
        FROM reservations r WHERE r.id = p_reservation;
        IF NOT FOUND THEN
            o_outcome := 'not_found';
            RETURN;
        END IF;
    END IF;
    IF o_user_id <> p_user THEN
        o_outcome := 'not_yours';
        RETURN;
    END IF;
    IF o_state <> 'held' OR o_expires_at <= p_now THEN
        o_outcome := 'not_held';
        RETURN;
    END IF;
    IF p_key IS NOT NULL
       AND EXISTS (SELECT 1 FROM payments p WHERE p.user_id = p_user AND p.idem_key = p_key)
    THEN
        o_outcome := 'key_reused';
        RETURN;
    END IF;
    PERFORM FROM queue_entries q
    WHERE q.seq = p_seq AND q.user_id = p_user AND q.state = 'live' AND q.expires_at > p_now;
    IF NOT FOUND THEN
        o_outcome := 'session_ended';
        RETURN;
    END IF;
    SELECT w.balance INTO o_balance FROM wallets w WHERE w.user_id = p_user;
    o_balance := coalesce(o_balance, 0);
    IF o_balance < o_price THEN
        o_outcome := 'insufficient_balance';
        RETURN;
    END IF;

    -- 1. The session: ended by this payment, if still live and active.
    UPDATE queue_entries q SET state = 'done'
    WHERE q.seq = p_seq AND q.user_id = p_user AND q.state = 'live' AND q.expires_at > p_now;
    IF NOT FOUND THEN
        -- Ended after the read above; nothing is written yet.
        o_outcome := 'session_ended';
        RETURN;
    END IF;

    -- 2. The seat: still held by this live hold; sold, it keeps naming the
    -- reservation, now paid.
    UPDATE seats st SET sold = TRUE
    WHERE st.schedule_id = o_schedule_id AND st.seat_no = o_seat_no
      AND st.hold_id = p_reservation AND st.hold_user = p_user AND NOT st.sold
      AND st.hold_until > p_now;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reservation % no longer holds its seat', p_reservation
            USING ERRCODE = 'BK001';
    END IF;

    -- 3. The debit, re-checked on the newest balance.
    UPDATE wallets w SET balance = w.balance - o_price
    WHERE w.user_id = p_user AND w.balance >= o_price
    RETURNING w.balance INTO v_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'balance of % moved below %', p_user, o_price USING ERRCODE = 'BK001';
    END IF;

    -- 4. The payment and ledger rows (unique per reservation, per seat and per user
    -- and key: a racing payment fails here and is rolled back).
    INSERT INTO payments
        (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key)
    VALUES (p_payment, p_reservation, p_user, o_schedule_id, o_seat_no, o_price, p_now, p_key);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n <> 1 THEN
        RAISE EXCEPTION 'payment row not written' USING ERRCODE = 'BK002';
    END IF;
    INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
    VALUES (p_user, 'payment', p_payment, o_price, v_balance, p_now);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n <> 1 THEN
        RAISE EXCEPTION 'ledger row not written' USING ERRCODE = 'BK002';
    END IF;
    o_outcome := 'paid';
    o_balance := v_balance;
END
$$;
