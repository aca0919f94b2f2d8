//! Webhooks as rules: the events an endpoint may subscribe to (and which audited change each
//! one stands for), the endpoint URL and which addresses it may reach, signing per the
//! Standard Webhooks specification, sealing signing secrets at rest, and the retry schedule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::audit::{AuditAction, EntityType};

super::text_enum! {
    /// An event an endpoint can subscribe to; its name is the payload's `type`.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum EventType {
        #[serde(rename = "ambassador.applied")]
        AmbassadorApplied = "ambassador.applied",
        #[serde(rename = "ambassador.activated")]
        AmbassadorActivated = "ambassador.activated",
        #[serde(rename = "ambassador.suspended")]
        AmbassadorSuspended = "ambassador.suspended",
        #[serde(rename = "referral.registered")]
        ReferralRegistered = "referral.registered",
        #[serde(rename = "referral.in_treatment")]
        ReferralInTreatment = "referral.in_treatment",
        #[serde(rename = "referral.completed")]
        ReferralCompleted = "referral.completed",
        #[serde(rename = "referral.cancelled")]
        ReferralCancelled = "referral.cancelled",
        #[serde(rename = "referral.rejected")]
        ReferralRejected = "referral.rejected",
        #[serde(rename = "referral.refunded")]
        ReferralRefunded = "referral.refunded",
        #[serde(rename = "reward.earned")]
        RewardEarned = "reward.earned",
        #[serde(rename = "reward.voided")]
        RewardVoided = "reward.voided",
        #[serde(rename = "reward.clawed_back")]
        RewardClawedBack = "reward.clawed_back",
        #[serde(rename = "payout.locked")]
        PayoutLocked = "payout.locked",
        #[serde(rename = "payout.paid")]
        PayoutPaid = "payout.paid",
        #[serde(rename = "payout.line_failed")]
        PayoutLineFailed = "payout.line_failed",
    }
}

/// The `type` of the event `POST /v1/webhooks/{id}/test` sends (never subscribed to).
pub const PING: &str = "webhook.ping";

/// The payloads' schema version (`"version": 1`); a breaking change gets a new one.
pub const PAYLOAD_VERSION: u32 = 1;

impl EventType {
    /// The event an audited change stands for, if any: each state change writes exactly one
    /// audit event, so this mapping is the one place events are decided.
    pub fn of_change(action: AuditAction, before: Option<&str>, after: Option<&str>) -> Option<Self> {
        use AuditAction as A;
        Some(match action {
            A::AmbassadorApplied => Self::AmbassadorApplied,
            A::AmbassadorEnrolled | A::AmbassadorApproved | A::AmbassadorReactivated => Self::AmbassadorActivated,
            A::AmbassadorSuspended => Self::AmbassadorSuspended,
            A::ReferralRegistered => Self::ReferralRegistered,
            // Only the session that started the treatment.
            A::ReferralSessionRecorded if after == Some("in_treatment") && before != after => Self::ReferralInTreatment,
            A::ReferralCompleted => Self::ReferralCompleted,
            A::ReferralCancelled => Self::ReferralCancelled,
            // A public submission refused on arrival is a rejected referral too.
            A::ReferralRejected | A::ReferralSubmittedRejected => Self::ReferralRejected,
            A::ReferralRefunded => Self::ReferralRefunded,
            A::RewardEarned => Self::RewardEarned,
            A::RewardVoided => Self::RewardVoided,
            A::RewardClawback => Self::RewardClawedBack,
            A::PayoutLocked => Self::PayoutLocked,
            A::PayoutPaid => Self::PayoutPaid,
            A::PayoutLineFailed => Self::PayoutLineFailed,
            _ => return None,
        })
    }

    /// What the payload's `data` describes.
    pub fn entity(self) -> EntityType {
        match self.as_str().split('.').next() {
            Some("ambassador") => EntityType::Ambassador,
            Some("referral") => EntityType::Referral,
            Some("reward") => EntityType::Reward,
            _ if self == Self::PayoutLineFailed => EntityType::PayoutLine,
            _ => EntityType::Payout,
        }
    }
}

/// The events an endpoint subscribes to: at least one, each once, in the canonical order;
/// stored space-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSelection(Vec<EventType>);

impl EventSelection {
    pub fn parse(names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Err("must name at least one event".into());
        }
        let mut chosen = Vec::new();
        for name in names {
            let event = EventType::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown event {name:?}; one of: {}",
                    EventType::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            chosen.push(event);
        }
        Ok(Self(EventType::ALL.into_iter().filter(|e| chosen.contains(e)).collect()))
    }

    /// Reads the stored form (unknown names, from a newer version, are skipped).
    pub fn from_stored(stored: &str) -> Self {
        Self(EventType::ALL.into_iter().filter(|e| stored.split(' ').any(|s| s == e.as_str())).collect())
    }

    pub fn stored(&self) -> String {
        self.0.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn contains(&self, event: EventType) -> bool {
        self.0.contains(&event)
    }

    pub fn names(&self) -> Vec<EventType> {
        self.0.clone()
    }
}

/// An endpoint URL: `http` or `https`, a host, no credentials or fragment, at most 2000
/// characters. (Whether its host may be reached is [`is_public`]'s question, asked of the
/// addresses it resolves to.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > 2000 {
            return Err("must be at most 2000 characters".into());
        }
        let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with https:// (or http://)".into());
        }
        if url.host().is_none() {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; authenticate the request by its signature".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host (without brackets for IPv6) and port to connect to.
    pub fn host_and_port(&self) -> (String, u16) {
        let host = match self.0.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        (host, self.0.port_or_known_default().unwrap_or(443))
    }

    /// The host as an address, when the URL names one literally.
    pub fn ip_literal(&self) -> Option<IpAddr> {
        match self.0.host()? {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        }
    }
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local, carrier-grade NAT, unspecified, multicast, broadcast or reserved for
/// documentation. Webhooks only go to public addresses unless an admin allows otherwise, so
/// an endpoint cannot be pointed at the clinic's own network (SSRF).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (reaches IPv4 space)
}

/// A symmetric signing secret (32 random bytes), shown as `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

const SECRET_PREFIX: &str = "whsec_";

impl SigningSecret {
    pub fn generate() -> Self {
        let mut raw = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        Self(raw)
    }

    pub fn parse(shown: &str) -> Result<Self, String> {
        let b64 = shown.strip_prefix(SECRET_PREFIX).ok_or("a signing secret starts with whsec_")?;
        B64.decode(b64).map(Self).map_err(|e| format!("signing secret is not base64: {e}"))
    }

    /// `whsec_<base64>`, as receivers' Standard Webhooks libraries take it.
    pub fn shown(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated (during a
/// rotation's grace period both the new and the previous secret sign).
pub fn signature_header(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Seals a signing secret for storage: AES-256-GCM under the instance key, bound to its
/// endpoint (`aad`), as `v1.<base64 nonce>.<base64 ciphertext>`.
pub fn seal(key: &[u8], aad: &str, secret: &SigningSecret) -> Result<String, String> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| "sealing key must be 32 bytes")?);
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut data = secret.0.clone();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
        .map_err(|_| "sealing failed")?;
    Ok(format!("v1.{}.{}", B64.encode(nonce), B64.encode(data)))
}

/// Opens what [`seal`] made with the same key and `aad`.
pub fn open(key: &[u8], aad: &str, sealed: &str) -> Result<SigningSecret, String> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| "sealing key must be 32 bytes")?);
    let mut parts = sealed.split('.');
    let (Some("v1"), Some(nonce), Some(data), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("unknown sealed secret format".into());
    };
    let nonce: [u8; 12] =
        B64.decode(nonce).ok().and_then(|n| n.try_into().ok()).ok_or("sealed secret has a bad nonce")?;
    let mut data = B64.decode(data).map_err(|_| "sealed secret is not base64")?;
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
        .map_err(|_| "sealed secret does not open with this instance's key")?;
    Ok(SigningSecret(plain.to_vec()))
}

/// The delay before try `attempts + 1`: `base * 2^(attempts - 1)`, capped, then jittered
/// into its upper half (`jitter` in `[0, 1)`) so endpoints coming back from an outage are not
/// hit by every retry at the same moment.
pub fn retry_delay(base: Duration, cap: Duration, attempts: i32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let full = base.saturating_mul(1u32 << exponent).min(cap);
    full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Response bodies are kept up to this many bytes.
pub const MAX_RESPONSE_BYTES: usize = 1024;

/// A response body as kept: at most [`MAX_RESPONSE_BYTES`], cut at a character boundary.
pub fn clip_body(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RESPONSE_BYTES)]).into_owned();
    let mut end = text.len().min(MAX_RESPONSE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

super::text_enum! {
    /// Where a delivery stands (the table's CHECK constraint).
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum DeliveryStatus {
        /// Waiting for its time (first try or a retry), or for an earlier event about the
        /// same record to this endpoint.
        Pending = "pending",
        Sending = "sending",
        Delivered = "delivered",
        /// Out of tries (or the endpoint was deleted); an admin may replay it.
        Failed = "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // libraries/python/tests/test_webhooks.py::test_sign_function in the specification's repo.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_both_secrets_space_separated() {
        let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
        let header = signature_header(&[new.clone(), old.clone()], "m", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, vec![new.sign("m", 1, b"{}"), old.sign("m", 1, b"{}")]);
        assert_eq!(SigningSecret::parse(&new.shown()).unwrap(), new);
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_endpoint() {
        let key = [7u8; 32];
        let secret = SigningSecret::generate();
        let sealed = seal(&key, "endpoint-1", &secret).unwrap();
        assert!(!sealed.contains(&secret.shown()[6..]));
        assert_eq!(open(&key, "endpoint-1", &sealed).unwrap(), secret);
        assert!(open(&key, "endpoint-2", &sealed).is_err());
        assert!(open(&[8u8; 32], "endpoint-1", &sealed).is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        assert!(WebhookUrl::parse("https://hooks.example.com/vouch").is_ok());
        assert_eq!(WebhookUrl::parse("http://[::1]:8080/x").unwrap().host_and_port(), ("::1".into(), 8080));
        for bad in ["ftp://example.com", "https://user:pw@example.com", "not a url", "https://example.com/#x"] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let (base, cap) = (Duration::from_secs(10), Duration::from_secs(100));
        assert_eq!(retry_delay(base, cap, 1, 0.0), Duration::from_secs(5));
        assert_eq!(retry_delay(base, cap, 1, 0.999_999).as_secs(), 9);
        assert_eq!(retry_delay(base, cap, 3, 0.0), Duration::from_secs(20));
        assert_eq!(retry_delay(base, cap, 30, 0.0), Duration::from_secs(50));
        assert!(retry_delay(base, cap, 30, 0.99) <= cap);
    }

    #[test]
    fn events_come_from_audited_changes() {
        use AuditAction as A;
        assert_eq!(EventType::of_change(A::AmbassadorApproved, None, None), Some(EventType::AmbassadorActivated));
        assert_eq!(
            EventType::of_change(A::ReferralSessionRecorded, Some("registered"), Some("in_treatment")),
            Some(EventType::ReferralInTreatment)
        );
        assert_eq!(EventType::of_change(A::ReferralSessionRecorded, Some("in_treatment"), Some("in_treatment")), None);
        assert_eq!(EventType::of_change(A::ApiKeyCreated, None, None), None);
        assert_eq!(EventType::PayoutLineFailed.entity(), EntityType::PayoutLine);
        assert_eq!(EventType::PayoutPaid.entity(), EntityType::Payout);
        assert_eq!(EventType::RewardClawedBack.entity(), EntityType::Reward);
    }

    #[test]
    fn selections_are_known_events_in_canonical_order() {
        let s = EventSelection::parse(&["reward.earned".into(), "ambassador.applied".into()]).unwrap();
        assert_eq!(s.stored(), "ambassador.applied reward.earned");
        assert_eq!(EventSelection::from_stored(&s.stored()), s);
        assert!(EventSelection::parse(&[]).is_err());
        assert!(EventSelection::parse(&["referral.deleted".into()]).is_err());
    }

    #[test]
    fn kept_bodies_are_cut_at_one_kib() {
        assert_eq!(clip_body(&[b'a'; 5000]).len(), MAX_RESPONSE_BYTES);
        assert_eq!(clip_body("é".repeat(1000).as_bytes()).len(), 1024);
    }
}
