//! Per-client-IP rate limit for public endpoints: a fixed one-minute window per address.
//! Limits are per instance; behind a load balancer with N instances a client gets up to
//! N times the limit, which is acceptable for abuse protection (not for billing).

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
/// If a flood of addresses still exceeds this after a sweep, the table starts over rather
/// than grow without bound (failing open for a minute beats running out of memory).
const MAX_TRACKED: usize = 200_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<Windows>,
}

struct Windows {
    by_ip: HashMap<IpAddr, (Instant, u32)>,
    last_sweep: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        let windows = Windows { by_ip: HashMap::new(), last_sweep: Instant::now() };
        Self { per_window: per_minute, windows: Mutex::new(windows) }
    }

    /// Counts a request; `Err(seconds)` says how long until the address may try again.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut guard = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if state.by_ip.len() > SWEEP_AT && now.duration_since(state.last_sweep) >= Duration::from_secs(1) {
            state.by_ip.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            state.last_sweep = now;
            if state.by_ip.len() > MAX_TRACKED {
                tracing::warn!(tracked = state.by_ip.len(), "rate limiter flooded with addresses; starting over");
                state.by_ip.clear();
            }
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
}
