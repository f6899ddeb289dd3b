//! R1 the waiting-room token: issue, forgery, status, the gate, a full line.

use std::time::Duration;

use booking_core::domain::{QueueSeq, TokenId, UserId};
use booking_core::{
    Config, GateError, IssueError, QueueStatus, StatusError, Store, TickOutcome, TokenError,
    TokenSigner,
};

use crate::Kit;

use super::{SEC, issue_n, policy, position};

/// R1: asking again returns the same place and the same token; others queue behind.
pub async fn r1_token_issue_is_idempotent_per_user<S: Store>(store: S) {
    let kit = Kit::new(store);
    let (a, b) = (UserId::random(), UserId::random());
    let first = kit.booking.issue_token(a).await.expect("issue");
    let again = kit.booking.issue_token(a).await.expect("issue again");
    let other = kit.booking.issue_token(b).await.expect("issue b");
    assert_eq!(first.claims.seq.get(), 1);
    assert_eq!(again.token, first.token, "same place, same token");
    assert_eq!(other.claims.seq.get(), 2);
    assert_eq!(first.claims.user, a);
    assert_eq!(
        kit.booking
            .queue_stats()
            .await
            .expect("stats")
            .counters
            .last_seq,
        2
    );
}

/// R1: a token signed with another secret, or altered, is refused everywhere.
pub async fn r1_forged_and_altered_tokens_are_refused<S: Store>(store: S) {
    let kit = Kit::new(store);
    let real = kit
        .booking
        .issue_token(UserId::random())
        .await
        .expect("issue");
    let forger = TokenSigner::new(&[7u8; 32]).expect("signer");
    let forged = forger.sign(&real.claims);
    assert_eq!(
        kit.booking.queue_status(&forged).await.unwrap_err(),
        StatusError::Token(TokenError::BadSignature)
    );
    assert_eq!(
        kit.booking.gate(&forged).await.unwrap_err(),
        GateError::Token(TokenError::BadSignature)
    );
    let mut altered = real.token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ascii");
    assert!(kit.booking.gate(&altered).await.is_err());
    assert_eq!(
        kit.booking.gate("not a token").await.unwrap_err(),
        GateError::Token(TokenError::Malformed)
    );
}

/// R1: a well-signed token whose place this database never issued is unknown.
pub async fn r1_token_of_another_database_is_unknown<S: Store>(store: S) {
    let kit = Kit::new(store);
    let signer = TokenSigner::new(crate::SECRET).expect("signer");
    let stray = signer.sign(&booking_core::TokenClaims {
        user: UserId::random(),
        seq: QueueSeq::new(99).expect("seq"),
        issued_at: crate::T0,
        token_id: TokenId::random(),
    });
    assert_eq!(
        kit.booking.queue_status(&stray).await.unwrap_err(),
        StatusError::UnknownToken
    );
    assert_eq!(
        kit.booking.gate(&stray).await.unwrap_err(),
        GateError::UnknownToken
    );
}

/// R1: the poll gives position = my sequence - serving, and an ETA from the rate.
pub async fn r1_status_reports_position_and_eta<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(2), None))
        .await
        .expect("policy");
    let tokens = issue_n(&kit, 5).await;
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(position(&kit, t).await, i as u64 + 1);
    }
    // Before any tick the policy's promise (2 a second) gives the ETA.
    match kit
        .booking
        .queue_status(&tokens[4])
        .await
        .expect("status")
        .status
    {
        QueueStatus::Waiting { eta, .. } => assert_eq!(eta, Some(Duration::from_millis(2_500))),
        other => panic!("expected waiting, got {other:?}"),
    }
    kit.advance(SEC);
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 2,
            serving: 2
        }
    );
    for t in &tokens[..2] {
        let status = kit.booking.queue_status(t).await.expect("status").status;
        assert!(matches!(status, QueueStatus::Active { .. }), "{status:?}");
    }
    for (i, t) in tokens[2..].iter().enumerate() {
        assert_eq!(position(&kit, t).await, i as u64 + 1);
    }
}

/// R1 and every gated operation: a waiting token does not pass the gate.
pub async fn r1_gate_refuses_waiting_tokens_with_their_position<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(1), None))
        .await
        .expect("policy");
    let tokens = issue_n(&kit, 3).await;
    kit.advance(SEC);
    kit.booking.tick().await.expect("tick");
    assert!(kit.booking.gate(&tokens[0]).await.is_ok());
    match kit.booking.gate(&tokens[2]).await.unwrap_err() {
        GateError::Waiting { position, .. } => assert_eq!(position, 2),
        other => panic!("expected waiting, got {other:?}"),
    }
}

/// R1: the waiting line has a maximum length.
pub async fn r1_queue_full_is_refused<S: Store>(store: S) {
    let config = Config {
        max_waiting: 2,
        ..crate::config()
    };
    let kit = Kit::with_config(store, config);
    issue_n(&kit, 2).await;
    assert_eq!(
        kit.booking.issue_token(UserId::random()).await.unwrap_err(),
        IssueError::QueueFull { max: 2 }
    );
    assert_eq!(
        kit.booking
            .queue_stats()
            .await
            .expect("stats")
            .counters
            .last_seq,
        2
    );
}
