-- Events: a transactional outbox, relayed into one ordered feed (decision record 0013),
-- as in the SQLite migration 0007.
--
-- Every change writes its events into event_outbox in its own transaction, through
-- the triggers below on the tables that carry the change, so that no write path (the
-- functions, their _batch versions, the chained CTEs, the sweeper, the ticker) can
-- forget one; a refused or rolled-back write leaves none. hold.cancelled is written by
-- the adapter's CANCEL statement (no row carries a cancel's time).
--
-- session.ended of a paid place is a deferred constraint trigger: it runs at commit,
-- when the payment's ledger row (written after the place is ended by booking_pay)
-- gives its time.
--
-- The relay (the adapter's relay_events) holds pg_try_advisory_xact_lock, so one
-- relay runs at a time; in one transaction it deletes the outbox rows it can see and
-- inserts them into events in pending_id order, taking the next ids of events' own
-- sequence. A relay commits before the next one starts, so ids become visible in
-- increasing order: nothing commits behind a reader's cursor.

CREATE TABLE event_outbox (
    pending_id     BIGSERIAL PRIMARY KEY,
    type           TEXT NOT NULL,
    at             BIGINT NOT NULL,
    user_id        UUID,
    seq            BIGINT,
    first_seq      BIGINT,
    reservation_id UUID,
    schedule_id    BIGINT,
    seat_no        BIGINT,
    amount         BIGINT,
    balance        BIGINT,
    payment_id     UUID,
    until_at       BIGINT,
    reason         TEXT
);

CREATE TABLE events (
    id             BIGSERIAL PRIMARY KEY,
    type           TEXT NOT NULL,
    at             BIGINT NOT NULL,
    user_id        UUID,
    seq            BIGINT,
    first_seq      BIGINT,
    reservation_id UUID,
    schedule_id    BIGINT,
    seat_no        BIGINT,
    amount         BIGINT,
    balance        BIGINT,
    payment_id     UUID,
    until_at       BIGINT,
    reason         TEXT
);

-- token.issued: a new place.
CREATE FUNCTION event_token_issued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox (type, at, user_id, seq)
    VALUES ('token.issued', NEW.issued_at, NEW.user_id, NEW.seq);
    RETURN NULL;
END $$;
CREATE TRIGGER event_token_issued AFTER INSERT ON queue_entries
FOR EACH ROW EXECUTE FUNCTION event_token_issued();

-- session.ended: a live place ends, paid (at the payment's time, read at commit) or
-- lapsed (at its end).
CREATE FUNCTION event_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
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
    RETURN NULL;
END $$;
CREATE TRIGGER event_session_lapsed AFTER UPDATE OF state ON queue_entries
FOR EACH ROW WHEN (OLD.state = 'live' AND NEW.state = 'expired')
EXECUTE FUNCTION event_session_ended();
CREATE CONSTRAINT TRIGGER event_session_paid AFTER UPDATE OF state ON queue_entries
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (OLD.state = 'live' AND NEW.state = 'done')
EXECUTE FUNCTION event_session_ended();

-- session.admitted: one tick, one range of places.
CREATE FUNCTION event_session_admitted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox (type, at, first_seq, seq)
    VALUES ('session.admitted', coalesce(NEW.last_tick_at, 0), OLD.serving + 1, NEW.serving);
    RETURN NULL;
END $$;
CREATE TRIGGER event_session_admitted AFTER UPDATE OF serving ON queue_counters
FOR EACH ROW WHEN (NEW.serving > OLD.serving)
EXECUTE FUNCTION event_session_admitted();

-- hold.created: a seat names a new live hold.
CREATE FUNCTION event_hold_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox
        (type, at, user_id, reservation_id, schedule_id, seat_no, amount, until_at)
    VALUES ('hold.created', NEW.held_at, NEW.hold_user, NEW.hold_id, NEW.schedule_id,
            NEW.seat_no, NEW.price, NEW.hold_until);
    RETURN NULL;
END $$;
CREATE TRIGGER event_hold_created AFTER UPDATE OF hold_id ON seats
FOR EACH ROW
WHEN (NEW.hold_id IS NOT NULL AND NOT NEW.sold AND NEW.hold_id IS DISTINCT FROM OLD.hold_id)
EXECUTE FUNCTION event_hold_created();

-- hold.expired: a lapsed hold recorded (swept, or replaced by a new hold).
CREATE FUNCTION event_hold_expired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox
        (type, at, user_id, reservation_id, schedule_id, seat_no, until_at)
    VALUES ('hold.expired', NEW.expires_at, NEW.user_id, NEW.id, NEW.schedule_id,
            NEW.seat_no, NEW.expires_at);
    RETURN NULL;
END $$;
CREATE TRIGGER event_hold_expired AFTER INSERT ON ended_reservations
FOR EACH ROW WHEN (NEW.state = 'expired')
EXECUTE FUNCTION event_hold_expired();

-- wallet.charged and payment.completed: the ledger row of each.
CREATE FUNCTION event_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox (type, at, user_id, amount, balance, payment_id)
    VALUES (CASE NEW.kind WHEN 'charge' THEN 'wallet.charged' ELSE 'payment.completed' END,
            NEW.at, NEW.user_id, NEW.amount, NEW.balance_after, NEW.payment_id);
    RETURN NULL;
END $$;
CREATE TRIGGER event_ledger AFTER INSERT ON ledger
FOR EACH ROW EXECUTE FUNCTION event_ledger();
