-- Batches of holds and of payments, for the adapter's group commit: one call (one
-- round trip, one autocommit transaction, one commit) runs many callers' writes, in
-- the order given. Each statement takes a fresh snapshot, so a write sees the writes
-- of the batch before it (a seat just held is taken, a cap just reached refuses)
-- exactly as it would see them committed.
--
-- A batch never waits for a row lock. Each write first locks, with SKIP LOCKED and in
-- one statement, every row it writes or whose lock orders it: its live session and
-- its seat (a payment: also its wallet). When one of them is locked by another
-- transaction, or is not in the state the common case needs (no live session, no
-- such seat, a payment of no held seat of the payer's, no wallet), the write is not
-- run and its row says 'busy': the adapter runs it alone, after the batch, with the
-- single-write function (booking_hold, booking_pay), which waits for locks and names
-- every refusal. A batch takes no part in a deadlock, whatever else runs (single
-- writes, other instances' batches), and single writes keep their lock order.
--
-- With its rows locked, a write reads their newest versions, so it decides exactly as
-- the single-write function would, with the same refusals in the same order of
-- precedence, and its writes cannot find a row changed: one that does raises BK002 (a
-- broken invariant). What else a write could wait on, and why those locks cover it:
-- - a hold may record the seat's lapsed hold in ended_reservations, whose id only a
--   transaction holding that seat can write;
-- - a payment inserts a payment whose unique keys (reservation, seat, the user's
--   idempotency key) only a transaction holding that seat or the user's live session
--   can insert;
-- - foreign-key checks take KEY SHARE locks, which no hot write's lock conflicts with.
--
-- Any error rolls the whole batch back; the adapter then runs each of its writes
-- alone.

-- Holds: the arrays are the parameters of booking_hold, one element per hold. One row
-- per hold, in order: o_i (from 1), and booking_hold's outputs, or o_refusal 'busy'.
CREATE FUNCTION booking_hold_batch(
    p_schedule BIGINT[], p_seat BIGINT[], p_seq BIGINT[], p_user UUID[], p_now BIGINT[],
    p_max_live BIGINT[], p_id UUID[], p_until BIGINT[])
RETURNS TABLE (o_i INT, o_refusal TEXT, o_n_live BIGINT, o_price BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_sold BOOLEAN;
    v_until BIGINT;
    v_prev UUID;
    v_prev_user UUID;
    v_prev_at BIGINT;
    v_price BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
        o_i := i;
        o_refusal := NULL;
        o_n_live := NULL;
        o_price := NULL;
        SELECT st.sold, st.hold_until, st.hold_id, st.hold_user, st.held_at, st.price
        INTO v_sold, v_until, v_prev, v_prev_user, v_prev_at, v_price
        FROM seats st, queue_entries q
        WHERE st.schedule_id = p_schedule[i] AND st.seat_no = p_seat[i]
          AND q.seq = p_seq[i] AND q.user_id = p_user[i] AND q.state = 'live'
          AND q.expires_at > p_now[i]
        FOR NO KEY UPDATE OF st, q SKIP LOCKED;
        IF NOT FOUND THEN
            o_refusal := 'busy';
        ELSE
            -- After the session's lock: the count is exact.
            SELECT count(*) INTO o_n_live FROM seats h
            WHERE h.hold_user = p_user[i] AND NOT h.sold AND h.hold_until > p_now[i];
            IF o_n_live >= p_max_live[i] THEN
                o_refusal := 'hold_limit';
            ELSIF v_sold OR v_until > p_now[i] THEN
                o_refusal := 'seat_taken';
            ELSE
                UPDATE seats st
                SET hold_id = p_id[i], hold_user = p_user[i], held_at = p_now[i],
                    hold_until = p_until[i]
                WHERE st.schedule_id = p_schedule[i] AND st.seat_no = p_seat[i]
                  AND NOT st.sold AND (st.hold_until IS NULL OR st.hold_until <= p_now[i])
                  AND st.hold_id IS NOT DISTINCT FROM v_prev;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'locked seat % of schedule % changed', p_seat[i],
                        p_schedule[i] USING ERRCODE = 'BK002';
                END IF;
                o_price := v_price;
                -- The seat's lapsed hold, if any, as read: recorded as expired.
                IF v_prev IS NOT NULL THEN
                    INSERT INTO ended_reservations
                        (id, user_id, schedule_id, seat_no, price, created_at, expires_at,
                         state)
                    VALUES (v_prev, v_prev_user, p_schedule[i], p_seat[i], v_price,
                            v_prev_at, v_until, 'expired');
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Payments: the arrays are the parameters of booking_pay, one element per payment.
-- One row per payment, in order: o_i (from 1), and booking_pay's outputs, or
-- o_outcome 'busy' with the other outputs NULL.
CREATE FUNCTION booking_pay_batch(
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
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_payment, 1), 0) LOOP
        o_i := i;
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
            SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM t),
                   (SELECT balance FROM w), (SELECT count(*) FROM p),
                   (SELECT count(*) FROM l)
            INTO v_n_session, v_n_seat, o_balance, v_n_payment, v_n_ledger;
            IF v_n_session <> 1 OR v_n_seat <> 1 OR o_balance IS NULL OR v_n_payment <> 1
               OR v_n_ledger <> 1 THEN
                RAISE EXCEPTION 'locked rows of payment % changed', p_payment[i]
                    USING ERRCODE = 'BK002';
            END IF;
            o_outcome := 'paid';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
