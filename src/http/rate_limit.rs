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
/// Above this many tracked addresses, expired windows are swept on the next check.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_window: per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts a request; `Err(seconds)` says how long until the address may try again.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
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
