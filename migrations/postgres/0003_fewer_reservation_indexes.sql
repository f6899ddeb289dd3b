-- Fewer indexes on reservations, as in the SQLite migration of the same number: every
-- index a held reservation enters is one more page a hold writes (and a payment, a
-- cancel or a sweep rewrites).
--
-- One index by user and state now answers both what reservations_by_user answered (a
-- user's reservations, sorted after reading: a user has few) and what
-- reservations_held_by_user answered (the hold cap's count of the user's live holds:
-- a range of the index, whatever the number of the user's past reservations).
--
-- The sweep and the list of live holds read held reservations through
-- reservations_one_held_per_seat, which holds exactly the held ones (at most one per
-- seat), instead of an index of their own by expiry.
--
-- A seat is sold once: the payments table's unique (schedule_id, seat_no) says so, and
-- a reservation becomes paid only in the statement or transaction that writes its
-- payment row, so reservations_one_paid_per_seat only repeated it.
DROP INDEX reservations_by_user;
DROP INDEX reservations_held_by_user;
DROP INDEX reservations_held_by_expiry;
DROP INDEX reservations_one_paid_per_seat;
CREATE INDEX reservations_by_user_state ON reservations (user_id, state, expires_at);
