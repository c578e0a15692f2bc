//! A write that fails (a disk full) answers 500 and changes nothing; a
//! client with a federation's retry policy rides it out and finishes
//! (issue 21: "a transient disk-full ends every client on the first 500").
//! Over real HTTP, a real state folder and real keys; the store's fault
//! injector fails the next transaction's first write.

use std::time::Duration;

use crate::client::{AggregatorClient, RetryPolicy};
use crate::crypto::{Accumulator, ParamSet, SecretKey, decrypt_mean, encrypt_weighted};
use crate::protocol::{ErrorCode, RegisterRequest};

use super::{EmbeddedServer, ServerConfig};

impl EmbeddedServer {
    /// Fails the next write transaction's first write, once.
    fn fail_next_write(&self) {
        self.shared.lock().fail_next_write();
    }
}

#[test]
fn a_failed_write_answers_500_and_the_client_retries_until_it_is_taken() {
    let sk = SecretKey::generate(ParamSet::Standard64);
    let dir = tempfile::tempdir().unwrap();
    let srv = EmbeddedServer::start(ServerConfig {
        state_dir: Some(dir.path().to_path_buf()),
        public_key: Some(sk.public()),
        max_len: Some(4),
        auto_aggregate: true,
        min_clients: Some(2),
        ..ServerConfig::default()
    })
    .unwrap();
    let retry = RetryPolicy {
        attempts: u32::MAX,
        give_up_after: Duration::from_secs(30),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    // One attempt only: the failed write is the client's end, with the
    // server's 500 and nothing registered.
    srv.fail_next_write();
    let mut once = AggregatorClient::new(srv.url()).with_retry(RetryPolicy {
        attempts: 1,
        ..retry
    });
    let e = once.register(&signed(&sk, srv.url(), "a")).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(500), Some(&ErrorCode::Internal))
    );
    assert!(e.to_string().contains("failed on purpose"), "{e}");
    assert_eq!(srv.status().registered, 0);

    // The federation's policy: every request meets a failed write first.
    let mut sites = Vec::new();
    for id in ["a", "b"] {
        srv.fail_next_write();
        let mut c = AggregatorClient::new(srv.url()).with_retry(retry);
        c.register(&signed(&sk, srv.url(), id)).unwrap();
        sites.push(c);
    }
    for (c, v) in sites.iter().zip([0.25, 0.75]) {
        srv.fail_next_write();
        let update = encrypt_weighted(&sk, &[v; 4], 1.0).unwrap().to_bytes();
        c.upload(1, &update).unwrap();
    }
    let info = sites[0]
        .wait_closed(1, None, Duration::from_secs(30))
        .unwrap();
    assert_eq!(info.contributors, 2);
    let (bytes, n) = sites[1].download_sum(1).unwrap();
    assert_eq!(n, 2);
    let mean = decrypt_mean(&sk, &Accumulator::from_bytes(&bytes, 4).unwrap()).unwrap();
    for v in mean.values {
        assert!((v - 0.5).abs() < 1e-6, "{v}");
    }
}

/// A registration as `id` for the aggregator at `url` (its session, no plan).
fn signed(sk: &crate::crypto::SecretKey, url: &str, id: &str) -> RegisterRequest {
    let session = AggregatorClient::new(url).health().unwrap().session;
    let aud = crate::crypto::Audience {
        session: &session,
        plan: None,
    };
    let identity = crate::privacy::masks::Identity::generate().unwrap();
    RegisterRequest::signed(sk, &aud, id, id, Some(4), &identity)
}
