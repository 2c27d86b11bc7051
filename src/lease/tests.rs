//! The lease loop's timing under tokio's paused clock, against a scripted
//! store: renewal every ttl/5, the 2/3-of-ttl deadline counted from the send
//! time, the compare-and-swap loss, the standby's poll, release on stop, and
//! the source's gate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;

const TTL: Duration = Duration::from_secs(15);

/// How the fake answers one call: after a delay with a result, or never.
#[derive(Clone, Debug)]
enum Answer {
    After(Duration, Result<u64, StoreError>),
    Never,
}

type Script = Box<dyn Fn(usize, Duration) -> Answer + Send + Sync>;

/// A store whose `create` and `update` answers are scripted by call number
/// and time since the test began; every call is logged with its time.
#[derive(Clone)]
struct Fake {
    inner: Arc<FakeInner>,
}

struct FakeInner {
    start: Instant,
    create: Script,
    update: Script,
    calls: Mutex<Vec<(&'static str, Duration, u64)>>,
}

impl Fake {
    fn new(
        create: impl Fn(usize, Duration) -> Answer + Send + Sync + 'static,
        update: impl Fn(usize, Duration) -> Answer + Send + Sync + 'static,
    ) -> Fake {
        Fake {
            inner: Arc::new(FakeInner {
                start: Instant::now(),
                create: Box::new(create),
                update: Box::new(update),
                calls: Mutex::new(Vec::new()),
            }),
        }
    }

    fn calls(&self, op: &str) -> Vec<(Duration, u64)> {
        self.inner
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, ..)| *name == op)
            .map(|(_, at, revision)| (*at, *revision))
            .collect()
    }

    async fn answer(&self, op: &'static str, revision: u64) -> Result<u64, StoreError> {
        let at = self.inner.start.elapsed();
        let n = {
            let mut calls = self.inner.calls.lock().unwrap();
            calls.push((op, at, revision));
            calls.iter().filter(|(name, ..)| *name == op).count() - 1
        };
        let answer = match op {
            "create" => (self.inner.create)(n, at),
            _ => (self.inner.update)(n, at),
        };
        match answer {
            Answer::After(delay, result) => {
                sleep(delay).await;
                result
            }
            Answer::Never => std::future::pending().await,
        }
    }
}

impl LeaseStore for Fake {
    async fn create(&self, _value: bytes::Bytes) -> Result<u64, StoreError> {
        self.answer("create", 0).await
    }

    async fn update(&self, _value: bytes::Bytes, revision: u64) -> Result<u64, StoreError> {
        self.answer("update", revision).await
    }

    async fn release(&self, revision: u64) -> Result<(), StoreError> {
        let at = self.inner.start.elapsed();
        self.inner
            .calls
            .lock()
            .unwrap()
            .push(("release", at, revision));
        Ok(())
    }

    async fn holder(&self) -> Result<Option<Holding>, StoreError> {
        Ok(Some(Holding {
            holder: "other:1".into(),
            acquired_ms: 5,
        }))
    }

    async fn write_last_live(&self, at_ms: u64) -> Result<(), StoreError> {
        let at = self.inner.start.elapsed();
        self.inner
            .calls
            .lock()
            .unwrap()
            .push(("last_live", at, at_ms));
        Ok(())
    }

    async fn last_live(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

fn ok(revision: u64) -> Answer {
    Answer::After(Duration::ZERO, Ok(revision))
}

/// Starts the loop over `fake`; the role watch and the stop token.
fn start(fake: &Fake) -> (watch::Receiver<Role>, CancellationToken) {
    let (role, role_rx) = watch::channel(Role::Standby { holder: None });
    let cancel = CancellationToken::new();
    let lease = Lease {
        store: fake.clone(),
        ttl: TTL,
        holder: "me:1".into(),
        role,
    };
    tokio::spawn(lease.run(cancel.clone()));
    (role_rx, cancel)
}

/// The role's history: (time since start, leader?) at every change of role
/// (renewals, which only move `expires`, are not changes).
fn watch_roles(mut role: watch::Receiver<Role>) -> Arc<Mutex<Vec<(Duration, bool)>>> {
    let start = Instant::now();
    let history = Arc::new(Mutex::new(vec![(
        Duration::ZERO,
        role.borrow().is_leader(),
    )]));
    let log = history.clone();
    tokio::spawn(async move {
        while role.changed().await.is_ok() {
            let leader = role.borrow_and_update().is_leader();
            let mut log = log.lock().unwrap();
            if log.last().map(|(_, l)| *l) != Some(leader) {
                log.push((start.elapsed(), leader));
            }
        }
    });
    history
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn renews_every_fifth_of_ttl_on_the_last_revision() {
    let fake = Fake::new(|_, _| ok(10), |n, _| ok(11 + n as u64));
    let (role, cancel) = start(&fake);
    sleep(secs(31.0)).await;
    assert!(role.borrow().is_leader());
    let updates = fake.calls("update");
    let times: Vec<Duration> = updates.iter().map(|(at, _)| *at).collect();
    let expected: Vec<Duration> = (1..=10).map(|n| secs(3.0 * n as f64)).collect();
    assert_eq!(times, expected, "every ttl/5 = 3s");
    let revisions: Vec<u64> = updates.iter().map(|(_, rev)| *rev).collect();
    assert_eq!(
        revisions,
        (10..20).collect::<Vec<_>>(),
        "each on the last revision"
    );
    cancel.cancel();
    sleep(secs(0.1)).await;
    assert_eq!(
        fake.calls("release"),
        [(secs(31.0), 20)],
        "released on stop"
    );
    assert!(!role.borrow().is_leader());
}

#[tokio::test(start_paused = true)]
async fn steps_down_when_no_renewal_succeeds_within_two_thirds_of_ttl() {
    // Taken at 0 (the answer takes 2s); every renewal hangs.
    let fake = Fake::new(
        |n, _| match n {
            0 => Answer::After(secs(2.0), Ok(1)),
            _ => Answer::After(Duration::ZERO, Err(StoreError::Lost)),
        },
        |_, _| Answer::Never,
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(9.9)).await;
    assert!(role.borrow().is_leader(), "still inside 2/3 of ttl");
    sleep(secs(0.2)).await;
    assert!(!role.borrow().is_leader());
    // Counted from when the create was sent (0), not when it was answered (2).
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(2.0), true), (secs(10.0), false)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_renewal_counts_from_when_it_was_sent() {
    // Renewals take 6s each: sent at 3 (good at 9), the next at 9 (good at
    // 15), …: each good renewal was sent within 2/3 ttl (10s) of the last.
    let fake = Fake::new(
        |_, _| ok(1),
        |n, _| Answer::After(secs(6.0), Ok(2 + n as u64)),
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(60.0)).await;
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(0.0), true)]
    );
    // Renewals answered after 10.5s: the deadline of the first (sent at 3,
    // answered at 13.5) is 0 + 10.
    let fake = Fake::new(
        |n, _| {
            if n == 0 {
                ok(1)
            } else {
                Answer::After(Duration::ZERO, Err(StoreError::Lost))
            }
        },
        |n, _| Answer::After(secs(10.5), Ok(2 + n as u64)),
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(20.0)).await;
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(0.0), true), (secs(10.0), false)]
    );
}

#[tokio::test(start_paused = true)]
async fn steps_down_at_once_when_a_renewal_loses_the_compare_and_swap() {
    let fake = Fake::new(
        |n, _| {
            if n == 0 {
                ok(1)
            } else {
                Answer::After(Duration::ZERO, Err(StoreError::Lost))
            }
        },
        |n, _| {
            if n == 0 {
                ok(2)
            } else {
                Answer::After(Duration::ZERO, Err(StoreError::Lost))
            }
        },
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(20.0)).await;
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(0.0), true), (secs(6.0), false)]
    );
    assert_eq!(
        *role.borrow(),
        Role::Standby {
            holder: Some(Holding {
                holder: "other:1".into(),
                acquired_ms: 5
            })
        },
        "the standby shows who holds it"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_server_is_no_step_down_until_the_deadline() {
    // Renewals 1 and 2 fail without a word on the lease; 3 (sent at 9) works.
    let fake = Fake::new(
        |_, _| ok(1),
        |n, _| match n {
            0 | 1 => Answer::After(Duration::ZERO, Err(StoreError::Unavailable("down".into()))),
            _ => ok(5),
        },
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(30.0)).await;
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(0.0), true)]
    );
}

#[tokio::test(start_paused = true)]
async fn the_standby_polls_every_fifth_of_ttl_and_takes_a_free_lease() {
    let fake = Fake::new(
        |_, at| {
            if at < secs(8.0) {
                Answer::After(Duration::ZERO, Err(StoreError::Lost))
            } else {
                ok(7)
            }
        },
        |n, _| ok(8 + n as u64),
    );
    let (role, _cancel) = start(&fake);
    let history = watch_roles(role.clone());
    sleep(secs(10.0)).await;
    let creates: Vec<Duration> = fake.calls("create").iter().map(|(at, _)| *at).collect();
    assert_eq!(creates, [secs(0.0), secs(3.0), secs(6.0), secs(9.0)]);
    assert_eq!(
        *history.lock().unwrap(),
        [(secs(0.0), false), (secs(9.0), true)]
    );
}

#[tokio::test(start_paused = true)]
async fn the_gate_opens_only_with_a_third_of_ttl_left() {
    let (role, _) = watch::channel(Role::Leader {
        acquired_ms: 0,
        expires: Instant::now() + TTL,
    });
    let gate = Gate {
        role: role.subscribe(),
        ttl: TTL,
    };
    assert!(gate.may_connect());
    sleep(secs(9.9)).await;
    assert!(gate.may_connect(), "5.1s left");
    sleep(secs(0.2)).await;
    assert!(!gate.may_connect(), "4.9s left: under a third");
    role.send_replace(Role::Standby { holder: None });
    assert!(!gate.may_connect());
}

#[tokio::test(start_paused = true)]
async fn the_last_live_instant_is_written_at_most_once_a_second() {
    let fake = Fake::new(|_, _| ok(1), |_, _| ok(1));
    let (live, live_rx) = watch::channel(0u64);
    let cancel = CancellationToken::new();
    let writer = {
        let (fake, cancel) = (fake.clone(), cancel.clone());
        tokio::spawn(async move { keep_last_live(&fake, live_rx, cancel).await })
    };
    // A frame every 100 ms for 3 s (the value at the start is an earlier
    // term's: not written).
    for n in 1..=30u64 {
        live.send_replace(n * 100);
        sleep(secs(0.1)).await;
    }
    cancel.cancel();
    writer.await.unwrap();
    let writes = fake.calls("last_live");
    assert!(
        (2..=3).contains(&writes.len()),
        "at most one a second: {writes:?}"
    );
    assert!(writes[0].1 > 100, "{writes:?}");
    for pair in writes.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= LAST_LIVE_EVERY, "{writes:?}");
        assert!(pair[1].1 > pair[0].1);
    }
}

#[test]
fn keys_and_bucket_names() {
    assert_eq!(key_for("aB-1_x", "sub.1 2"), "aB-1_x.sub_1_2");
    assert_eq!(key_for("", "s"), "_.s");
    assert!(is_bucket_name("zcc_relay-1"));
    assert!(!is_bucket_name("zcc.relay"));
    assert!(!is_bucket_name(""));
    assert!(!is_bucket_name(&"a".repeat(MAX_BUCKET_NAME + 1)));
}
