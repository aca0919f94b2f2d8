//! Per-client-IP rate limit for public endpoints: a fixed one-minute window per address.
//! Limits are per instance; behind a load balancer with N instances a client gets up to
//! N times the limit, which is acceptable for abuse protection (not for billing).
//!
//! An IPv6 client is counted by its /64 network: one host usually holds a whole /64 and can
//! pick a new address per request. The table is bounded: when a flood of addresses fills it,
//! the oldest windows are evicted — never the whole table, which would let everyone through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::ApiError;

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked addresses, expired windows are swept (at most once a second).
const SWEEP_AT: usize = 10_000;
/// At most this many addresses are tracked; past it the oldest windows are evicted.
const MAX_TRACKED: usize = 200_000;

pub struct RateLimiter {
    per_window: u32,
    max_tracked: usize,
    windows: Mutex<Windows>,
}

/// What requests are counted under: the address, or for IPv6 its /64 network (an
/// IPv4-mapped IPv6 address counts as the IPv4 address).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

struct Windows {
    by_ip: HashMap<IpAddr, (Instant, u32)>,
    last_sweep: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED)
    }

    /// A limiter tracking at most `max_tracked` addresses.
    pub fn with_capacity(per_minute: u32, max_tracked: usize) -> Self {
        let windows = Windows { by_ip: HashMap::new(), last_sweep: Instant::now() };
        Self { per_window: per_minute, max_tracked: max_tracked.max(1), windows: Mutex::new(windows) }
    }

    /// Counts a request; `Err(seconds)` says how long until the address may try again.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let ip = client_key(ip);
        let now = Instant::now();
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let sweep_at = SWEEP_AT.min(self.max_tracked);
        if state.by_ip.len() >= sweep_at && now.duration_since(state.last_sweep) >= Duration::from_secs(1) {
            state.by_ip.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            state.last_sweep = now;
        }
        if state.by_ip.len() >= self.max_tracked && !state.by_ip.contains_key(&ip) {
            evict_oldest(&mut state.by_ip, self.max_tracked);
        }
        let windows = &mut state.by_ip;
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            let left = WINDOW.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Drops the oldest tenth of the windows (at least one), making room for new addresses while
/// the addresses seen most recently — a flood's included — stay limited.
fn evict_oldest(by_ip: &mut HashMap<IpAddr, (Instant, u32)>, max_tracked: usize) {
    let drop = (max_tracked / 10).max(1);
    let mut starts: Vec<Instant> = by_ip.values().map(|(start, _)| *start).collect();
    let (_, cutoff, _) = starts.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    tracing::warn!(tracked = by_ip.len(), "rate limiter table full; evicting the oldest windows");
    by_ip.retain(|_, (start, _)| *start > cutoff);
}

/// Middleware for public scopes: 429 problem+json with `Retry-After` past the limit.
pub async fn limit_public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<RateLimiter>>().cloned();
    if let (Some(limiter), Some(ip)) = (limiter, super::client_ip(req.request())) {
        if let Err(retry_after_secs) = limiter.check(ip) {
            let e = ApiError::RateLimited { retry_after_secs };
            return Ok(req.error_response(e).map_into_right_body());
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let l = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_ok());
        let retry = l.check(a).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let l = RateLimiter::new(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check(a).is_ok());
        assert!(l.check(same_net).is_ok());
        assert!(l.check(a).is_err(), "a new address in the same /64 is the same client");
        assert!(l.check(other_net).is_ok());
        assert_eq!(client_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_key(same_net), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_keeps_limiting() {
        let l = RateLimiter::with_capacity(1, 100);
        let flooder: IpAddr = "10.9.9.9".parse().unwrap();
        assert!(l.check(flooder).is_ok());
        assert!(l.check(flooder).is_err());
        // A flood of new addresses fills the table…
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let _ = l.check(ip);
            std::thread::sleep(Duration::from_micros(1));
        }
        let tracked = l.windows.lock().unwrap().by_ip.len();
        assert!(tracked <= 100, "bounded: {tracked}");
        // …the most recent addresses are still limited (the table was not cleared)…
        let recent = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + 999));
        assert!(l.check(recent).is_err(), "a recent address is still counted");
        // …and the oldest entry was the one evicted.
        assert!(l.check(flooder).is_ok(), "the oldest window was evicted");
    }
}
