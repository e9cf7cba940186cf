//! Abuse protection for the password endpoints (signup, login, password change):
//! a per-address token bucket ([`RateLimiter`]) and a bound on concurrent argon2
//! work ([`HashGate`]). Both live in the admin router's state.
//!
//! The client address is the TCP peer (axum `ConnectInfo`), never a forwarded
//! header, which any client could forge. Behind a reverse proxy every client shares
//! the proxy's address; IPv6 clients are grouped by /64, the block one host gets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::AdminState;
use super::error::ApiError;

/// Attempts allowed in a burst per address (signup, login and password change together).
pub const AUTH_BURST: u32 = 10;
/// Time to regain the whole burst: 10 attempts per minute.
pub const AUTH_REFILL: Duration = Duration::from_secs(60);
/// Below this many tracked addresses nothing is pruned.
const PRUNE_FLOOR: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token bucket per client address.
///
/// The std `Mutex` is held for one hash probe and some arithmetic, never across an
/// await; it is only touched by the password endpoints, never by the proxy.
pub struct RateLimiter {
    capacity: f64,
    per_sec: f64,
    state: Mutex<Buckets>,
}

struct Buckets {
    map: HashMap<IpAddr, Bucket>,
    /// Prune when the map grows past this; doubles with the live set so pruning stays
    /// amortized O(1) per call.
    prune_at: usize,
}

impl RateLimiter {
    /// `capacity` attempts at once, refilled evenly over `refill`.
    pub fn new(capacity: u32, refill: Duration) -> RateLimiter {
        let capacity = f64::from(capacity.max(1));
        RateLimiter {
            capacity,
            per_sec: capacity / refill.as_secs_f64().max(0.001),
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Takes one attempt for `ip` at `now`; when none is left, says how long to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.map.len() >= st.prune_at {
            self.prune(&mut st.map, now);
            st.prune_at = (st.map.len() * 2).max(PRUNE_FLOOR);
        }
        let b = st.map.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }

    /// Drops addresses whose bucket has refilled: they are as good as new.
    fn prune(&self, map: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * self.per_sec < self.capacity
        });
    }
}

/// IPv4 as is (also when mapped into IPv6); IPv6 by its /64 prefix.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware for the password endpoints: one attempt per request, counted before
/// the body is read, so malformed attempts count too. `429` with `Retry-After`.
pub async fn limit_auth_attempts(
    State(state): State<AdminState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Err(wait) = state.limiter.check(ip, Instant::now()) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }
    Ok(next.run(req).await)
}

/// Bounds argon2 work: at most `workers` hashes run at once (each takes ~20 ms of a
/// core and 19 MiB), at most `queue` more wait; past that, callers get `Busy` (429)
/// instead of piling up.
pub struct HashGate {
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
}

impl HashGate {
    pub fn new(workers: usize, queue: usize) -> HashGate {
        HashGate {
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
        }
    }

    /// Runs blocking password work `f` on the blocking pool under the bound.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let ticket = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy)?;
        let permit = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Busy)?;
        // The permits move into the task: a client that hangs up does not free a
        // slot while its hash is still running.
        let out = tokio::task::spawn_blocking(move || {
            let _held = (ticket, permit);
            f()
        })
        .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_then_refills() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t0).is_ok());
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        // Another address is not affected.
        assert!(l.check("10.0.0.2".parse().unwrap(), t0).is_ok());
        // After 20 s one attempt is back.
        assert!(l.check(ip, t0 + Duration::from_secs(20)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn ipv6_groups_by_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn pruning_forgets_refilled_addresses() {
        let l = RateLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..PRUNE_FLOOR as u32 {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        // The map is at its threshold: the next new address prunes the refilled ones.
        let later = t0 + Duration::from_secs(5);
        let _ = l.check("10.9.9.9".parse().unwrap(), later);
        let n = l.state.lock().unwrap().map.len();
        assert_eq!(n, 1, "stale buckets kept");
    }

    #[tokio::test]
    async fn gate_refuses_past_its_queue() {
        let gate = Arc::new(HashGate::new(1, 0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let first = tokio::spawn(async move {
            g.run(move || {
                let _ = rx.recv();
            })
            .await
        });
        // Wait until the first job holds the only slot.
        while gate.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(gate.run(|| ()).await, Err(ApiError::Busy)));
        tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert!(gate.run(|| 5).await.is_ok());
    }
}
