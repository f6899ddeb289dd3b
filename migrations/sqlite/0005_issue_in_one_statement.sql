-- Token issue in one statement, so that issues can share a commit (group commit).
--
-- The common case of an issue (a user with no live place) is one INSERT of the entry
-- with `seq = last_seq + 1`, read from the counters in the same statement. This
-- trigger moves `last_seq` to the new entry's sequence in that statement, so the
-- counters and the entry change together or not at all. The other cases (a live or
-- lapsed place, a full line) are left to the adapter's transaction, which moves
-- `last_seq` itself first: there the trigger changes nothing.
--
-- Sequences stay gap-free and strictly increasing: each INSERT reads `last_seq`
-- after the previous one's trigger ran (SQLite has one writer, and statements run
-- one after another), and the sequence is the primary key.
CREATE TRIGGER queue_entry_moves_last_seq AFTER INSERT ON queue_entries
BEGIN
    UPDATE queue_counters SET last_seq = NEW.seq WHERE id = 1 AND last_seq < NEW.seq;
END;
