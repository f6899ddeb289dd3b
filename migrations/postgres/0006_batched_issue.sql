-- Token issues in batches, for the adapter's group commit: one call (one round trip,
-- one autocommit transaction, one commit) gives places to many users, in the order
-- given.
--
-- The call first locks the counters row, as every issue does (the single-issue
-- statement moves last_seq): issues of every instance take their places one
-- transaction after another, and the batch's next statement takes a snapshot after
-- that lock, so it sees every place committed before it. Holding that lock, nothing
-- else can append an entry, so the places are last_seq + 1, + 2, ... in the order of
-- the arrays, with no gap and no repeat.
--
-- Only the common case is decided here: a user with no live entry (none at all) gets
-- the next place when the line has room for it (last_seq - serving < max_waiting,
-- counted with the places given before it in the batch). Everything else comes back
-- 'busy' and the adapter runs it alone with the single-issue statement, which
-- returns a live place, records a lapsed one and names a full line: a user who has a
-- place, a user asking twice in one batch (the first ask is the one that counts), a
-- user the line has no room for. The lock is the only one the call waits for (new
-- entries are rows nobody else can hold), so it takes no part in a deadlock.
CREATE FUNCTION booking_issue_batch(
    p_user UUID[], p_token UUID[], p_now BIGINT[], p_max_waiting BIGINT[])
RETURNS TABLE (
    o_i INT, o_outcome TEXT, o_seq BIGINT, o_user_id UUID, o_token_id UUID,
    o_issued_at BIGINT, o_state TEXT, o_admitted_at BIGINT, o_seen_at BIGINT,
    o_expires_at BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_last BIGINT;
    v_serving BIGINT;
BEGIN
    SELECT c.last_seq, c.serving INTO v_last, v_serving
    FROM queue_counters c WHERE c.id = 1 FOR UPDATE;
    RETURN QUERY
    WITH req AS (
        SELECT r.u, r.t, r.i::INT AS i
        FROM unnest(p_user, p_token) WITH ORDINALITY AS r(u, t, i)
    ), fresh AS (
        SELECT f.u, f.t, f.i, row_number() OVER (ORDER BY f.i) AS k
        FROM (SELECT DISTINCT ON (req.u) req.u, req.t, req.i FROM req ORDER BY req.u, req.i) f
        WHERE NOT EXISTS (
            SELECT 1 FROM queue_entries q WHERE q.user_id = f.u AND q.state = 'live')
    ), placed AS (
        -- A place k is given only when every place before it was: room is counted
        -- with them.
        SELECT fresh.* FROM fresh
        WHERE NOT EXISTS (
            SELECT 1 FROM fresh g
            WHERE g.k <= fresh.k AND v_last + g.k - 1 - v_serving >= p_max_waiting[g.i])
    ), ins AS (
        INSERT INTO queue_entries AS e (seq, user_id, token_id, issued_at, state)
        SELECT v_last + placed.k, placed.u, placed.t, p_now[placed.i], 'live' FROM placed
        RETURNING e.seq, e.user_id, e.token_id, e.issued_at, e.state, e.admitted_at,
                  e.seen_at, e.expires_at
    ), moved AS (
        UPDATE queue_counters c SET last_seq = v_last + (SELECT count(*) FROM ins)
        WHERE c.id = 1
    )
    SELECT req.i, CASE WHEN ins.seq IS NULL THEN 'busy' END, ins.seq, ins.user_id,
           ins.token_id, ins.issued_at, ins.state, ins.admitted_at, ins.seen_at,
           ins.expires_at
    FROM req
    LEFT JOIN placed ON placed.i = req.i
    LEFT JOIN ins ON ins.seq = v_last + placed.k
    ORDER BY req.i;
END $$;
