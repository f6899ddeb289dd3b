//! The HTTP server's tests over real sockets, in one test binary: each former test
//! file is a module, so `cargo test -p booking-http --test http api::` runs one of
//! them. One binary is linked once (a binary per file linked axum, sqlx, reqwest and
//! the rest once per file), and its PostgreSQL tests share one throwaway server. Each
//! test starts its own servers on port 0: nothing else is shared.

mod api;
mod checkout;
mod edges;
mod events;
mod feed;
mod multi_instance;
mod openapi_props;
mod overload;
mod web;
mod webhooks;
