-- A payment of several holds, and a session's end releasing the payer's other holds,
-- as in the SQLite migration 0006.
--
-- A payment is still one row of payments, naming its first seat (reservation_id,
-- schedule_id, seat_no) and its total (amount); a payment of several holds lists its
-- other seats in payment_seats, with their prices, in the order asked (position 2,
-- 3, ...). A payment of one hold writes no payment_seats row. Each seat is sold once
-- whatever the table: the sale is the seat's conditional UPDATE (NOT sold -> sold),
-- and each table keeps one row per seat and per reservation. A payment of several
-- holds runs alone, in its own transaction (the adapter's `pay_many`), never in a
-- batch.
CREATE TABLE payment_seats (
    reservation_id UUID PRIMARY KEY,
    payment_id     UUID NOT NULL REFERENCES payments (id),
    user_id        UUID NOT NULL,
    position       INT NOT NULL CHECK (position >= 2),
    schedule_id    BIGINT NOT NULL,
    seat_no        BIGINT NOT NULL,
    price          BIGINT NOT NULL CHECK (price > 0),
    UNIQUE (schedule_id, seat_no),
    UNIQUE (payment_id, position)
);
CREATE INDEX payment_seats_by_user ON payment_seats (user_id);

-- Every reservation, in the old table's shape: the seats paid as the other seats of
-- a payment are paid reservations too.
CREATE OR REPLACE VIEW reservations AS
SELECT hold_id AS id, hold_user AS user_id, schedule_id, seat_no, price,
       held_at AS created_at, hold_until AS expires_at, 'held'::TEXT AS state
FROM seats WHERE hold_user IS NOT NULL AND NOT sold
UNION ALL
SELECT p.reservation_id AS id, p.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid'::TEXT AS state
FROM payments p JOIN seats s ON s.schedule_id = p.schedule_id AND s.seat_no = p.seat_no
UNION ALL
SELECT ps.reservation_id AS id, ps.user_id, s.schedule_id, s.seat_no, s.price,
       s.held_at AS created_at, s.hold_until AS expires_at, 'paid'::TEXT AS state
FROM payment_seats ps JOIN seats s ON s.schedule_id = ps.schedule_id AND s.seat_no = ps.seat_no
UNION ALL
SELECT id, user_id, schedule_id, seat_no, price, created_at, expires_at, state
FROM ended_reservations;

-- The single-hold payment of 0004, with one more step: the payment ends the session,
-- and with it the payer's other holds, which lapse now.
CREATE OR REPLACE FUNCTION booking_pay(
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

    -- 2b. The session ends, and with it the payer's other holds: they lapse now
    -- (their seats are free to everyone at once; the sweeper records them). Seats
    -- after the session, as in the lock order; usually there are none.
    UPDATE seats h SET hold_until = p_now
    WHERE h.hold_user = p_user AND NOT h.sold AND h.hold_until > p_now;

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

-- The batch of 0005, with the same step. A batch never waits for a lock, so it
-- locks the payer's other live holds with SKIP LOCKED first; when one of them is
-- locked by another transaction, the payment comes back 'busy' and runs alone.
CREATE OR REPLACE FUNCTION booking_pay_batch(
    p_reservation UUID[], p_user UUID[], p_seq BIGINT[], p_now BIGINT[], p_key TEXT[],
    p_payment UUID[])
RETURNS TABLE (
    o_i INT, o_outcome TEXT, o_balance BIGINT,
    o_id UUID, o_user_id UUID, o_schedule_id BIGINT, o_seat_no BIGINT,
    o_price BIGINT, o_created_at BIGINT, o_expires_at BIGINT, o_state TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_live BOOLEAN;
    v_n_session BIGINT;
    v_n_seat BIGINT;
    v_n_payment BIGINT;
    v_n_ledger BIGINT;
    v_n_others BIGINT;
    v_n_locked BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_payment, 1), 0) LOOP
        o_i := i;
        o_outcome := NULL;
        o_balance := NULL;
        -- The payer's held seat (live or lapsed), session and wallet, locked: the
        -- session for update (the payment may end it), the others as their updates
        -- lock them.
        SELECT st.hold_id, st.hold_user, st.schedule_id, st.seat_no, st.price, st.held_at,
               st.hold_until, 'held', q.state = 'live' AND q.expires_at > p_now[i],
               w.balance
        INTO o_id, o_user_id, o_schedule_id, o_seat_no, o_price, o_created_at,
             o_expires_at, o_state, v_live, o_balance
        FROM seats st, queue_entries q, wallets w
        WHERE st.hold_user = p_user[i] AND NOT st.sold AND st.hold_id = p_reservation[i]
          AND q.seq = p_seq[i] AND q.user_id = p_user[i]
          AND w.user_id = p_user[i]
        FOR UPDATE OF q SKIP LOCKED
        FOR NO KEY UPDATE OF st, w SKIP LOCKED;
        IF NOT FOUND THEN
            o_outcome := 'busy';
            o_id := NULL;
            o_user_id := NULL;
            o_schedule_id := NULL;
            o_seat_no := NULL;
            o_price := NULL;
            o_created_at := NULL;
            o_expires_at := NULL;
            o_state := NULL;
            o_balance := NULL;
        ELSIF o_expires_at <= p_now[i] THEN
            o_outcome := 'not_held';
        ELSIF p_key[i] IS NOT NULL
              AND EXISTS (SELECT 1 FROM payments p
                          WHERE p.user_id = p_user[i] AND p.idem_key = p_key[i]) THEN
            o_outcome := 'key_reused';
        ELSIF NOT v_live THEN
            o_outcome := 'session_ended';
        ELSIF o_balance < o_price THEN
            o_outcome := 'insufficient_balance';
        ELSE
            -- The payer's other live holds, which the payment releases, locked too
            -- (usually there are none): when one is locked elsewhere, the payment
            -- runs alone.
            SELECT count(*) INTO v_n_others FROM seats h
            WHERE h.hold_user = p_user[i] AND NOT h.sold AND h.hold_until > p_now[i]
              AND h.hold_id <> p_reservation[i];
            v_n_locked := 0;
            IF v_n_others > 0 THEN
                SELECT count(*) INTO v_n_locked FROM (
                    SELECT 1 FROM seats h
                    WHERE h.hold_user = p_user[i] AND NOT h.sold
                      AND h.hold_until > p_now[i] AND h.hold_id <> p_reservation[i]
                    FOR NO KEY UPDATE SKIP LOCKED) x;
            END IF;
        END IF;
        IF o_outcome IS NULL AND v_n_locked <> v_n_others THEN
            o_outcome := 'busy';
            o_id := NULL;
            o_user_id := NULL;
            o_schedule_id := NULL;
            o_seat_no := NULL;
            o_price := NULL;
            o_created_at := NULL;
            o_expires_at := NULL;
            o_state := NULL;
            o_balance := NULL;
        ELSIF o_outcome IS NULL THEN
            -- The session ends, the seat is sold (it keeps naming the reservation, now
            -- paid), the wallet is debited, and the payment and its ledger row are
            -- written: every row locked above, every count checked.
            WITH s AS (
                UPDATE queue_entries q SET state = 'done'
                WHERE q.seq = p_seq[i] AND q.user_id = p_user[i] AND q.state = 'live'
                RETURNING 1
            ), t AS (
                UPDATE seats st SET sold = TRUE
                WHERE st.schedule_id = o_schedule_id AND st.seat_no = o_seat_no
                  AND st.hold_id = p_reservation[i] AND NOT st.sold
                RETURNING 1
            ), w AS (
                UPDATE wallets w SET balance = w.balance - o_price
                WHERE w.user_id = p_user[i] AND w.balance >= o_price
                RETURNING w.balance
            ), p AS (
                INSERT INTO payments
                    (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at,
                     idem_key)
                VALUES (p_payment[i], p_reservation[i], p_user[i], o_schedule_id,
                        o_seat_no, o_price, p_now[i], p_key[i])
                RETURNING 1
            ), l AS (
                INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
                SELECT p_user[i], 'payment', p_payment[i], o_price, w.balance, p_now[i]
                FROM w
                RETURNING 1
            )
            , r AS (
                -- (v_n_others > 0 is a one-time filter: with no other hold, the
                -- usual case, the seats are not scanned again.)
                UPDATE seats h SET hold_until = p_now[i]
                WHERE v_n_others > 0
                  AND h.hold_user = p_user[i] AND NOT h.sold AND h.hold_until > p_now[i]
                  AND h.hold_id <> p_reservation[i]
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM t),
                   (SELECT balance FROM w), (SELECT count(*) FROM p),
                   (SELECT count(*) FROM l), (SELECT count(*) FROM r)
            INTO v_n_session, v_n_seat, o_balance, v_n_payment, v_n_ledger, v_n_locked;
            IF v_n_session <> 1 OR v_n_seat <> 1 OR o_balance IS NULL OR v_n_payment <> 1
               OR v_n_ledger <> 1 OR v_n_locked <> v_n_others THEN
                RAISE EXCEPTION 'locked rows of payment % changed', p_payment[i]
                    USING ERRCODE = 'BK002';
            END IF;
            o_outcome := 'paid';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
