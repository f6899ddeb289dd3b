//! Column lists shared by both dialects, as macros so that `concat!` can build
//! `&'static str` queries from them.

macro_rules! schedule_cols {
    () => {
        "id, concert_id, starts_at, seat_count"
    };
}
macro_rules! hold_cols {
    () => {
        "id, user_id, schedule_id, seat_no, price, created_at, expires_at, state"
    };
}
/// A seat's unsold hold in the shape of [`hold_cols`], read from the `seats` table.
macro_rules! seat_hold_cols {
    () => {
        "hold_id AS id, hold_user AS user_id, schedule_id, seat_no, price, \
         held_at AS created_at, hold_until AS expires_at, 'held' AS state"
    };
}
macro_rules! entry_cols {
    () => {
        "seq, user_id, token_id, issued_at, state, admitted_at, seen_at, expires_at"
    };
}
macro_rules! ledger_cols {
    () => {
        "id, user_id, kind, payment_id, amount, balance_after, at, idem_key"
    };
}
macro_rules! payment_cols {
    () => {
        "id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key"
    };
}

pub(crate) use {entry_cols, hold_cols, ledger_cols, payment_cols, schedule_cols, seat_hold_cols};
