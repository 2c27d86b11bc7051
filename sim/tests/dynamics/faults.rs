//! Fault switches: service-protection 429s with `Retry-After`, 503s.

use std::time::Duration;

use zcc_sim::sink::dynamics::Environment;

use crate::support::*;

#[tokio::test]
async fn throttles_with_retry_after_then_serves() {
    let s = session(Environment::new()).await;
    s.fake.throttle_next(2, Duration::from_secs(3));
    for _ in 0..2 {
        let refused = s.get("WhoAmI").await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("retry-after").as_deref(), Some("3"));
        assert_eq!(refused.error().0, "0x80072322");
        assert!(
            refused
                .error()
                .1
                .contains("Number of requests exceeded the limit of 6000")
        );
    }
    assert_eq!(s.get("WhoAmI").await.status, 200);
    s.fake.unavailable_for_next(1);
    assert_eq!(s.get("WhoAmI").await.status, 503);
    assert_eq!(s.get("WhoAmI").await.status, 200);
    let counts = s.fake.request_counts();
    assert_eq!((counts.throttled, counts.requests), (2, 5));
    s.fake.stop().await;
}
