//! R4 wallet, I2 money is conserved.

use std::sync::Arc;

use booking_core::domain::{LedgerKind, Money, UserId};
use booking_core::{ChargeError, Store};

use crate::{Kit, amount};

use super::{SEC, key};

/// R4, I2: charges add up, each with its ledger row; a new user has 0.
pub async fn r4_charge_adds_to_balance_with_a_ledger_row<S: Store>(store: S) {
    let kit = Kit::new(store);
    let user = UserId::random();
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::ZERO
    );
    let r1 = kit
        .booking
        .charge(user, amount(700), None)
        .await
        .expect("charge");
    kit.advance(SEC);
    let r2 = kit
        .booking
        .charge(user, amount(300), None)
        .await
        .expect("charge");
    assert!(!r1.replayed && !r2.replayed);
    assert_eq!(r2.entry.balance_after, Money::new(1_000).expect("m"));
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(1_000).expect("m")
    );
    let ledger = kit.booking.ledger(user).await.expect("ledger");
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].id, r2.entry.id, "newest first");
    assert!(
        ledger
            .iter()
            .all(|e| e.kind == LedgerKind::Charge && e.user == user)
    );
    assert_eq!(ledger.iter().map(|e| e.delta()).sum::<i64>(), 1_000);
    assert!(r2.entry.id > r1.entry.id);
}

/// R4: the per-charge and balance maximums refuse and change nothing.
pub async fn r4_charge_limits<S: Store>(store: S) {
    let kit = Kit::new(store);
    let user = UserId::random();
    let config = kit.booking.config().clone();
    let too_big = amount(config.max_charge.minor_units() + 1);
    assert_eq!(
        kit.booking.charge(user, too_big, None).await.unwrap_err(),
        ChargeError::AboveMaxCharge {
            max: config.max_charge
        }
    );
    let max = config.max_charge;
    let fills = config.max_balance.minor_units() / max.minor_units();
    for _ in 0..fills {
        kit.booking.charge(user, max, None).await.expect("charge");
    }
    let full = kit.booking.balance(user).await.expect("balance");
    assert_eq!(
        kit.booking
            .charge(
                user,
                amount(config.max_balance.minor_units() - full.minor_units() + 1),
                None
            )
            .await
            .unwrap_err(),
        ChargeError::BalanceLimit {
            balance: full,
            max: config.max_balance
        }
    );
    assert_eq!(kit.booking.balance(user).await.expect("balance"), full);
    assert_eq!(
        kit.booking.ledger(user).await.expect("ledger").len() as i64,
        fills
    );
}

/// R4: a retried charge with the same key returns the first receipt.
pub async fn r4_charge_is_idempotent_by_key<S: Store>(store: S) {
    let kit = Kit::new(store);
    let (a, b) = (UserId::random(), UserId::random());
    let first = kit
        .booking
        .charge(a, amount(500), Some(key("top-up-1")))
        .await
        .expect("charge");
    let retry = kit
        .booking
        .charge(a, amount(500), Some(key("top-up-1")))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.entry, first.entry);
    assert_eq!(
        kit.booking
            .charge(a, amount(501), Some(key("top-up-1")))
            .await
            .unwrap_err(),
        ChargeError::KeyReused
    );
    kit.booking
        .charge(b, amount(500), Some(key("top-up-1")))
        .await
        .expect("keys are per user");
    assert_eq!(
        kit.booking.balance(a).await.expect("balance"),
        Money::new(500).expect("m")
    );
    assert_eq!(kit.booking.ledger(a).await.expect("ledger").len(), 1);
}

/// I2 under concurrency: concurrent charges are all counted.
pub async fn i2_concurrent_charges_are_all_counted<S: Store>(store: S) {
    let kit = Arc::new(Kit::new(store));
    let user = UserId::random();
    let mut tasks = Vec::new();
    for i in 1..=40i64 {
        let kit = Arc::clone(&kit);
        tasks.push(tokio::spawn(async move {
            kit.booking.charge(user, amount(i), None).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("charge");
    }
    assert_eq!(
        kit.booking
            .balance(user)
            .await
            .expect("balance")
            .minor_units(),
        40 * 41 / 2
    );
    assert_eq!(kit.booking.ledger(user).await.expect("ledger").len(), 40);
}
