-- Two hot writes (hold, pay) as PL/pgSQL functions, so that each is one
-- round trip and one autocommit transaction.
--
-- Why functions: under READ COMMITTED every statement of a (volatile) function takes a
-- fresh snapshot. A check made after a lock is therefore made on everything committed
-- before the lock was granted, which one statement cannot do (its snapshot is taken
-- before it waits). This lets a hold count the user's live holds exactly after locking
-- the session row, without writing a new version of it, and lets a payment write its
-- rows with plain conditional UPDATEs in the lock order instead of locking every row
-- first and writing it afterwards.
--
-- Lock order (as in the adapter): the session (queue entry), then the seat, then the
-- reservation that holds it, then the wallet. Every function locks in this order and
-- never goes back to an earlier class.
--
-- A refusal returns its name and changes no data: it is named from reads before
-- anything is written (a hold refused after locking its session row has taken that
-- row lock, nothing more). A condition that fails after a write raises SQLSTATE BK001 ("stale: run
-- again"), which rolls the whole transaction back; the adapter runs the call again and
-- the next run's checks name the refusal. BK002 reports a broken invariant.
--
-- Times are BIGINT milliseconds passed in by the caller: functions never read a clock.

-- Room on every seat page for the new versions its holds and sales write, so that
-- they stay on the page (HOT updates: no new primary-key entry, no row moved to the
-- end of the table). A seat row is written a few times in its life (held, perhaps
-- reclaimed, sold); packed full, the first write of each seat moved it. The same for
-- wallets, whose balance every charge and payment rewrites. Applies to pages written
-- from now on.
ALTER TABLE seats SET (fillfactor = 50);
ALTER TABLE wallets SET (fillfactor = 70);

-- A hold. Returns o_refusal NULL and the seat's price when the hold was taken, or the
-- refusal: 'no_such_seat', 'session_ended', 'hold_limit', 'seat_taken' (in this order
-- of precedence). o_n_live is the user's live holds, counted before the hold.
CREATE FUNCTION booking_hold(
    p_schedule BIGINT, p_seat BIGINT, p_seq BIGINT, p_user UUID, p_now BIGINT,
    p_max_live BIGINT, p_id UUID, p_until BIGINT,
    OUT o_refusal TEXT, OUT o_n_live BIGINT, OUT o_price BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_sold BOOLEAN;
    v_until BIGINT;
    v_prev UUID;
    v_n BIGINT;
BEGIN
    SELECT st.sold, st.hold_until, st.hold_id INTO v_sold, v_until, v_prev
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
        SELECT count(*) INTO o_n_live FROM reservations r
        WHERE r.user_id = p_user AND r.state = 'held' AND r.expires_at > p_now;
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
    SELECT count(*) INTO o_n_live FROM reservations r
    WHERE r.user_id = p_user AND r.state = 'held' AND r.expires_at > p_now;
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
        UPDATE seats st SET hold_id = p_id, hold_until = p_until
        WHERE st.schedule_id = p_schedule AND st.seat_no = p_seat
          AND NOT st.sold AND (st.hold_until IS NULL OR st.hold_until <= p_now)
          AND st.hold_id IS NOT DISTINCT FROM v_prev
        RETURNING st.price INTO o_price;
        EXIT WHEN FOUND;
        SELECT st.sold, st.hold_until, st.hold_id INTO v_sold, v_until, v_prev
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

    -- Under the seat's lock: a held reservation is always the one its seat names, so
    -- the seat's previous, lapsed hold (if any) is v_prev; it is recorded as expired
    -- (found by its id: no scan of other held reservations), then the new reservation
    -- is inserted (the one-held-per-seat index backs this up).
    IF v_prev IS NOT NULL THEN
        UPDATE reservations r SET state = 'expired'
        WHERE r.id = v_prev AND r.state = 'held';
        GET DIAGNOSTICS v_n = ROW_COUNT;
        IF v_n <> 1 THEN
            RAISE EXCEPTION 'seat % of schedule % names reservation %, which is not held',
                p_seat, p_schedule, v_prev USING ERRCODE = 'BK002';
        END IF;
    END IF;
    INSERT INTO reservations
        (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
    VALUES (p_id, p_user, p_schedule, p_seat, o_price, p_now, p_until, 'held');
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
    SELECT r.id, r.user_id, r.schedule_id, r.seat_no, r.price, r.created_at,
           r.expires_at, r.state
    INTO o_id, o_user_id, o_schedule_id, o_seat_no, o_price, o_created_at, o_expires_at,
         o_state
    FROM reservations r WHERE r.id = p_reservation;
    IF NOT FOUND THEN
        o_outcome := 'not_found';
        RETURN;
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

    -- 2. The seat: still claimed by this live hold.
    UPDATE seats st SET sold = TRUE, hold_id = NULL, hold_until = NULL
    WHERE st.schedule_id = o_schedule_id AND st.seat_no = o_seat_no
      AND st.hold_id = p_reservation AND NOT st.sold AND st.hold_until > p_now;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reservation % no longer holds its seat', p_reservation
            USING ERRCODE = 'BK001';
    END IF;

    -- 3. The reservation: a held reservation is the one its seat names, and we hold
    -- the seat's lock.
    UPDATE reservations r SET state = 'paid'
    WHERE r.id = p_reservation AND r.state = 'held';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reservation % is not held though its seat is claimed by it',
            p_reservation USING ERRCODE = 'BK002';
    END IF;

    -- 4. The debit, re-checked on the newest balance.
    UPDATE wallets w SET balance = w.balance - o_price
    WHERE w.user_id = p_user AND w.balance >= o_price
    RETURNING w.balance INTO v_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'balance of % moved below %', p_user, o_price USING ERRCODE = 'BK001';
    END IF;

    -- 5. The payment and ledger rows (unique per reservation and per user and key: a
    -- racing payment fails here and is rolled back).
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
