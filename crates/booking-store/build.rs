//! The migrations are embedded at compile time (`sqlx::migrate!`): rebuild the crate
//! whenever one of them is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
