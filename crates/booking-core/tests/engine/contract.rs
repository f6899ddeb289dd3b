//! The contract suite on the in-memory adapter.

booking_testkit::contract_suite!(async { (booking_core::MemoryStore::new(), ()) });
