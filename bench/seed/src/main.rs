//! Seed data for `bench/run`: prints SQL that fills a freshly migrated Vouch database (SQLite
//! or PostgreSQL, same text) with ambassadors, codes, referrals in every status, their
//! sessions, the rewards ledger, paid payout batches, audit rows and sent e-mails — the rows
//! the service itself would have written, with the same ids (UUID v7), timestamps (UTC,
//! microseconds), contact hashes (HMAC-SHA256 keyed by `--key`, as `domain/contact.rs`) and
//! session hashes (SHA-256, as `domain/api_key.rs`). The ledger stays consistent: every paid
//! reward is in a paid line whose amount is the sum of its rewards, every batch total the
//! sum of its lines.
//!
//! Usage: vouch-bench-seed --scale smoke|small|full|payees --key KEY --session SECRET
//!        --console SECRET --fixtures DIR > seed.sql
//! `--session` is ambassador 1's portal session, `--console` an admin team member's console
//! session. Writes the ids and codes the load scripts need into DIR (see the end of `main`).
//!
//! Scale `payees` is for the payout batch and its exports: 100,000 ambassadors, each with one
//! completed referral whose reward is payable now, so a batch has ~100,000 lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
const PROGRAM_V1: &str = "00000000-0000-7000-8000-000000000001";
const REWARD: i64 = 10_000;
const HOLDING_DAYS: i64 = 14;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ROWS_PER_INSERT: usize = 500;

struct Scale {
    ambassadors: usize,
    referrals: usize,
    /// Referrals of ambassador 0 (the detail page's worst case).
    heavy: usize,
    /// Extra referrals in treatment, for the "complete a referral" scenario to consume.
    completion_pool: usize,
    /// Every referral completed, its reward payable now, none paid yet (scale `payees`).
    all_payable: bool,
}

fn scale(name: &str) -> Scale {
    match name {
        "smoke" => Scale { ambassadors: 20, referrals: 200, heavy: 40, completion_pool: 300, all_payable: false },
        "small" => Scale { ambassadors: 100, referrals: 1_000, heavy: 200, completion_pool: 5_000, all_payable: false },
        "full" => {
            Scale { ambassadors: 2_000, referrals: 200_000, heavy: 3_000, completion_pool: 0, all_payable: false }
        }
        "payees" => Scale { ambassadors: 100_000, referrals: 100_000, heavy: 1, completion_pool: 0, all_payable: true },
        other => panic!("unknown scale {other}"),
    }
}

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A time uniformly in [from, to) microseconds.
    fn between(&mut self, from: i64, to: i64) -> i64 {
        from + self.below((to - from).max(1) as u64) as i64
    }
}

/// UUID v7 text for a moment, unique by a counter in the random bits.
struct Ids {
    counter: u64,
    rng: Rng,
}
impl Ids {
    fn at(&mut self, us: i64) -> String {
        self.counter += 1;
        let ms = (us / 1000) as u64 & 0xFFFF_FFFF_FFFF;
        let rand_a = self.rng.next() & 0xFFF;
        let rand_b = (self.counter << 24 | (self.rng.next() & 0xFF_FFFF)) & 0x3FFF_FFFF_FFFF_FFFF;
        let hi = ms << 16 | 0x7000 | rand_a;
        let lo = 0x8000_0000_0000_0000 | rand_b;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn date(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("'{y:04}-{m:02}-{d:02}'")
}

/// A timestamp as diesel writes `NaiveDateTime` on both backends (UTC, microseconds).
fn ts(us: i64) -> String {
    let (day, rem) = (us.div_euclid(DAY), us.rem_euclid(DAY));
    let (y, m, d) = civil(day);
    let s = rem / 1_000_000;
    format!("'{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}'", s / 3600, s / 60 % 60, s % 60, rem % 1_000_000)
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_else(|| "NULL".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn contact_key(key: &[u8], kind: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// A unique generated code for ambassador `i` (40 bits, bijective in `i`), shown `XXXX-XXXX`.
fn code_of(i: usize) -> (String, String) {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F).wrapping_add(0x5A5A_5A5A5) & 0xFF_FFFF_FFFF;
    let raw: String = (0..8).rev().map(|k| CROCKFORD[((x >> (5 * k)) & 31) as usize] as char).collect();
    (format!("{}-{}", &raw[..4], &raw[4..]), raw)
}

/// Multi-row INSERTs, flushed every `ROWS_PER_INSERT` rows.
struct Table<'a, W: Write> {
    out: &'a mut W,
    head: String,
    rows: Vec<String>,
}
impl<'a, W: Write> Table<'a, W> {
    fn new(out: &'a mut W, table: &str, cols: &str) -> Self {
        Self { out, head: format!("INSERT INTO {table} ({cols}) VALUES\n"), rows: Vec::new() }
    }
    fn row(&mut self, values: &[String]) {
        self.rows.push(format!("({})", values.join(",")));
        if self.rows.len() == ROWS_PER_INSERT {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if !self.rows.is_empty() {
            writeln!(self.out, "{}{};", self.head, self.rows.join(",\n")).expect("write");
            self.rows.clear();
        }
    }
}
impl<W: Write> Drop for Table<'_, W> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Paypal,
    Bank,
    StoreCredit,
}

struct Ambassador {
    id: String,
    status: &'static str,
    email: String,
    method: Option<Method>,
    code_id: Option<String>,
    code: String,
}

impl Ambassador {
    fn address(&self, i: usize) -> Option<String> {
        match self.method? {
            Method::Paypal => Some(format!("pay{i}@bench.example")),
            Method::Bank => Some(format!("GB00BENCH{i:08}")),
            Method::StoreCredit => None,
        }
    }
}

struct Reward {
    id: String,
    amb: usize,
    referral_id: String,
    holds_until: i64,
    earned_on: i64,
    created_at: i64,
    in_year: i64,
    /// Paid in batch n (0-based), voided at, or open.
    fate: Fate,
}

#[derive(Clone, Copy)]
enum Fate {
    Open,
    Paid(usize),
    Voided(i64),
}

fn arg(args: &[String], name: &str) -> String {
    let i = args.iter().position(|a| a == name).unwrap_or_else(|| panic!("missing {name}"));
    args[i + 1].clone()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sc = scale(&arg(&args, "--scale"));
    let key = arg(&args, "--key").into_bytes();
    let session_secret = arg(&args, "--session");
    let console_secret = arg(&args, "--console");
    let fixtures = std::path::PathBuf::from(arg(&args, "--fixtures"));
    std::fs::create_dir_all(&fixtures).expect("fixtures dir");

    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_micros() as i64;
    let today = now.div_euclid(DAY);
    let mut rng = Rng(0x5EED);
    let mut ids = Ids { counter: 0, rng: Rng(0x1D5) };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    writeln!(out, "BEGIN;").unwrap();

    // Ambassadors and their codes. 0 is the heavy one, 1 has exactly 50 referrals; a few are
    // suspended, closed or only applied, as in a real programme.
    let mut ambs = Vec::with_capacity(sc.ambassadors);
    {
        let mut t = Table::new(
            &mut out,
            "ambassadors",
            "id,status,source,name,email,phone,display_name,show_name_to_referrals,payout_method,\
             payout_paypal_email,payout_bank_reference,notify_referral_updates,notify_reward_updates,notes,\
             application_message,status_reason,created_at,updated_at,status_changed_at",
        );
        for i in 0..sc.ambassadors {
            let created = now - 400 * DAY + i as i64 * 60_000_000;
            let status = match i % 100 {
                _ if i < 2 => "active",
                97 => "suspended",
                98 => "closed",
                99 => "applied",
                _ => "active",
            };
            let method = match (status, i % 10) {
                ("applied", _) => None,
                (_, 0..=6) => Some(Method::Paypal),
                (_, 7 | 8) => Some(Method::Bank),
                _ => Some(Method::StoreCredit),
            };
            let (code, _) = code_of(i);
            let a = Ambassador {
                id: ids.at(created),
                status,
                email: format!("amb{i}@bench.example"),
                method,
                code_id: None,
                code,
            };
            let m = a.method.map(|m| match m {
                Method::Paypal => "paypal",
                Method::Bank => "bank",
                Method::StoreCredit => "store_credit",
            });
            let addr = a.address(i);
            t.row(&[
                q(&a.id),
                q(status),
                q(if status == "applied" { "application" } else { "staff" }),
                q(&format!("Ambassador {i}")),
                q(&a.email),
                q(&format!("+1555{i:07}")),
                opt((i % 3 == 0).then(|| q(&format!("Amb {i}")))),
                (i % 2 == 0).to_string().to_uppercase(),
                opt(m.map(q)),
                opt(addr.clone().filter(|_| a.method == Some(Method::Paypal)).map(|s| q(&s))),
                opt(addr.filter(|_| a.method == Some(Method::Bank)).map(|s| q(&s))),
                "TRUE".into(),
                "TRUE".into(),
                "NULL".into(),
                opt((status == "applied").then(|| q("I would like to refer my friends."))),
                opt(matches!(status, "suspended" | "closed").then(|| q("bench"))),
                ts(created),
                ts(created),
                ts(created + DAY),
            ]);
            ambs.push(a);
        }
    }
    {
        let mut t = Table::new(
            &mut out,
            "referral_codes",
            "id,ambassador_id,code,normalized,kind,active,created_at,deactivated_at",
        );
        for (i, a) in ambs.iter_mut().enumerate() {
            if a.status == "applied" {
                continue;
            }
            let created = now - 400 * DAY + i as i64 * 60_000_000 + 1000;
            let id = ids.at(created);
            let (display, normalized) = code_of(i);
            let active = a.status != "closed";
            t.row(&[
                q(&id),
                q(&a.id),
                q(&display),
                q(&normalized),
                q("generated"),
                active.to_string().to_uppercase(),
                ts(created),
                opt((!active).then(|| ts(created + 300 * DAY))),
            ]);
            a.code_id = Some(id);
        }
    }

    // Who refers: ambassador 0 gets `heavy`, 1 gets 50, the rest share the remainder.
    let referrers: Vec<usize> = (2..sc.ambassadors).filter(|&i| ambs[i].code_id.is_some()).collect();
    let owner = |j: usize| -> usize {
        if j < sc.heavy {
            0
        } else if j < sc.heavy + 50 {
            1
        } else {
            referrers[(j - sc.heavy - 50) % referrers.len()]
        }
    };
    let total = sc.referrals + sc.completion_pool;
    let mut rewards: Vec<Reward> = Vec::new();
    let mut in_year: BTreeMap<(usize, i64), i64> = BTreeMap::new();
    let mut complete_pool: Vec<String> = Vec::new();
    let mut first_completed: Option<String> = None;
    let mut audit: Vec<[String; 8]> = Vec::new(); // occurred, action, entity_type, entity, before, after, details, role
    let mut mails: Vec<(String, String, String, i64)> = Vec::new(); // dedupe, template, to, at
    {
        let cols_r = "id,ambassador_id,code_id,submitted_code,status,source,client_first_name,client_last_name,\
            client_email,client_phone,notes,email_key,phone_key,external_ref,share_name_with_ambassador,\
            planned_sessions,session_count,first_session_on,completed_on,treatment_value_minor,earns,\
            not_earning_reason,reason_code,reason_note,registered_at,treatment_started_at,completed_at,\
            refunded_at,cancelled_at,rejected_at,erased_at,updated_at";
        let mut sessions: Vec<[String; 5]> = Vec::new();
        let mut t = Table::new(&mut out, "referrals", cols_r);
        for j in 0..total {
            let amb = owner(j);
            let a = &ambs[amb];
            // Status mix of a programme a year in: most completed, some in flight, a few closed out.
            let roll = rng.below(100);
            let status = if j >= sc.referrals {
                "in_treatment"
            } else if sc.all_payable {
                "completed"
            } else {
                match roll {
                    0..=59 => "completed",
                    60..=71 => "registered",
                    72..=86 => "in_treatment",
                    87..=89 => "refunded",
                    90..=95 => "cancelled",
                    _ => "rejected",
                }
            };
            // Completed rewards: 1 in 8 already paid, 1 in 24 still held, the rest payable now.
            let paid = status == "completed" && j % 8 == 0 && !sc.all_payable;
            let held = status == "completed" && !paid && j % 24 == 1 && !sc.all_payable;
            let registered = match status {
                "completed" if paid => rng.between(now - 330 * DAY, now - 200 * DAY),
                "completed" if held => rng.between(now - 40 * DAY, now - 15 * DAY),
                "completed" | "refunded" => rng.between(now - 200 * DAY, now - 60 * DAY),
                "in_treatment" => rng.between(now - 60 * DAY, now - DAY),
                "registered" => rng.between(now - 30 * DAY, now - HOUR),
                _ => rng.between(now - 200 * DAY, now - 10 * DAY),
            };
            let id = ids.at(registered);
            let reg_day = registered.div_euclid(DAY);
            let email = format!("client{j}@bench.example");
            let phone = (j % 2 == 0).then(|| format!("+447700{j:06}"));
            let public = j % 10 == 3;
            let completed_on = match status {
                "completed" if held => Some(today - rng.below(10) as i64),
                "completed" | "refunded" => Some(reg_day + 30),
                _ => None,
            };
            let completed_at = completed_on.map(|d| (d * DAY + 10 * HOUR).min(now - 60_000_000));
            let n_sessions = match status {
                "in_treatment" => 1 + rng.below(3) as i64,
                "completed" | "refunded" => 3 + rng.below(4) as i64,
                _ => 0,
            };
            let last_day = completed_on.unwrap_or(today);
            let session_days: Vec<i64> = (0..n_sessions).map(|k| (reg_day + 1 + 3 * k).min(last_day)).collect();
            let started = session_days.first().map(|d| (d * DAY + 9 * HOUR).min(now - 120_000_000).max(registered + 1));
            let refunded_at = (status == "refunded").then(|| completed_at.unwrap() + 5 * DAY);
            let cancelled_at = (status == "cancelled").then_some(registered + 3 * DAY);
            let rejected_at = (status == "rejected").then_some(registered + DAY);
            let updated = [Some(registered), started, completed_at, refunded_at, cancelled_at, rejected_at]
                .into_iter()
                .flatten()
                .max()
                .unwrap();
            let reason = match status {
                "refunded" => Some("client_dissatisfied"),
                "cancelled" => Some("client_withdrew"),
                "rejected" => Some("other"),
                _ => None,
            };
            let completes = matches!(status, "completed" | "refunded");
            t.row(&[
                q(&id),
                q(&a.id),
                q(a.code_id.as_ref().unwrap()),
                q(&a.code),
                q(status),
                q(if public { "public_form" } else { "staff" }),
                q("Client"),
                q(&format!("R{j}")),
                q(&email),
                opt(phone.as_ref().map(|p| q(p))),
                "NULL".into(),
                q(&contact_key(&key, "email", &email)),
                opt(phone.as_ref().map(|p| q(&contact_key(&key, "phone", p)))),
                opt((j % 4 == 0).then(|| q(&format!("EXT-{j}")))),
                (j % 2 == 0).to_string().to_uppercase(),
                "6".into(),
                n_sessions.to_string(),
                opt(session_days.first().map(|d| date(*d))),
                opt(completed_on.map(date)),
                "NULL".into(),
                opt(completes.then(|| "TRUE".into())),
                "NULL".into(),
                opt(reason.map(q)),
                "NULL".into(),
                ts(registered),
                opt(started.map(ts)),
                opt(completed_at.map(ts)),
                opt(refunded_at.map(ts)),
                opt(cancelled_at.map(ts)),
                opt(rejected_at.map(ts)),
                "NULL".into(),
                ts(updated),
            ]);
            for (k, d) in session_days.iter().enumerate() {
                let at = (d * DAY + 9 * HOUR).min(now - 120_000_000).max(registered + 1) + k as i64;
                sessions.push([ids.at(at), id.clone(), date(*d), "NULL".into(), ts(at)]);
            }
            let add_audit = |audit: &mut Vec<[String; 8]>, at: i64, action: &str, before: Option<&str>, after: &str| {
                audit.push([
                    ts(at),
                    q(action),
                    q("referral"),
                    q(&id),
                    opt(before.map(q)),
                    q(after),
                    q(&format!("{{\"ambassador_id\":\"{}\"}}", a.id)),
                    q("staff"),
                ]);
            };
            add_audit(&mut audit, registered, "referral.registered", None, "registered");
            if status != "registered" {
                let action = match status {
                    "in_treatment" => "referral.session_recorded",
                    "completed" | "refunded" => "referral.completed",
                    "cancelled" => "referral.cancelled",
                    _ => "referral.rejected",
                };
                add_audit(&mut audit, updated, action, Some("in_treatment"), status);
            }
            if !public {
                mails.push((
                    format!("referral-registered:{id}"),
                    "referral_registered".into(),
                    a.email.clone(),
                    registered,
                ));
            }
            if status == "completed" && amb == 0 && first_completed.is_none() {
                first_completed = Some(id.clone());
            }
            if status == "in_treatment" && a.status == "active" {
                complete_pool.push(id.clone());
            }
            if let (true, Some(day)) = (completes, completed_on) {
                let n = in_year.entry((amb, civil(day).0)).or_insert(0);
                *n += 1;
                let fate = match refunded_at {
                    Some(at) => Fate::Voided(at),
                    None if paid => Fate::Paid(j / 8 % 3),
                    None => Fate::Open,
                };
                let at = completed_at.unwrap();
                rewards.push(Reward {
                    id: ids.at(at),
                    amb,
                    referral_id: id.clone(),
                    holds_until: (day + HOLDING_DAYS) * DAY,
                    earned_on: day,
                    created_at: at,
                    in_year: *n,
                    fate,
                });
            }
        }
        drop(t);
        let mut t = Table::new(&mut out, "referral_sessions", "id,referral_id,session_on,note,created_at");
        for s in sessions {
            t.row(&[q(&s[0]), q(&s[1]), s[2].clone(), s[3].clone(), s[4].clone()]);
        }
    }

    // Three paid batches (90, 60 and 30 days after the oldest paid rewards became payable),
    // one line per ambassador and batch.
    let batch_at = |b: usize| now - (150 - 30 * b as i64) * DAY;
    let mut lines: BTreeMap<(usize, usize), (String, i64, i32)> = BTreeMap::new();
    for r in &rewards {
        if let Fate::Paid(b) = r.fate {
            let e = lines.entry((b, r.amb)).or_insert_with(|| (String::new(), 0, 0));
            e.1 += REWARD;
            e.2 += 1;
        }
    }
    {
        let mut batch_ids = Vec::new();
        let mut t = Table::new(
            &mut out,
            "payouts",
            "id,number,status,currency,cutoff,total_minor,skipped,reference,created_by,created_at,paid_at,\
             cancelled_at,updated_at,program_version_id,locked_at,cancel_reason",
        );
        for b in 0..3 {
            let at = batch_at(b);
            let id = ids.at(at);
            let total: i64 = lines.iter().filter(|((lb, _), _)| *lb == b).map(|(_, v)| v.1).sum();
            t.row(&[
                q(&id),
                (b + 1).to_string(),
                q("paid"),
                q("USD"),
                ts(at),
                total.to_string(),
                q("[]"),
                q(&format!("BENCH-P{}", b + 1)),
                q("system"),
                ts(at),
                ts(at + 2 * DAY),
                "NULL".into(),
                ts(at + 2 * DAY),
                q(PROGRAM_V1),
                ts(at + DAY),
                "NULL".into(),
            ]);
            batch_ids.push(id);
        }
        drop(t);
        let mut t = Table::new(
            &mut out,
            "payout_lines",
            "id,payout_id,number,ambassador_id,amount_minor,currency,payout_method,payout_address,method_seq,\
             status,failure_reason,reward_count,created_at,updated_at",
        );
        let mut number = BTreeMap::new();
        let mut seq = BTreeMap::new();
        for ((b, amb), (line_id, amount, count)) in lines.iter_mut() {
            let a = &ambs[*amb];
            let method = a.method.expect("referrers have payout details");
            let m = match method {
                Method::Paypal => "paypal",
                Method::Bank => "bank",
                Method::StoreCredit => "store_credit",
            };
            let n = number.entry(*b).or_insert(0);
            *n += 1;
            let s = seq.entry((*b, m)).or_insert(0);
            *s += 1;
            *line_id = ids.at(batch_at(*b));
            t.row(&[
                q(line_id),
                q(&batch_ids[*b]),
                n.to_string(),
                q(&a.id),
                amount.to_string(),
                q("USD"),
                q(m),
                opt(a.address(*amb).map(|s| q(&s))),
                s.to_string(),
                q("paid"),
                "NULL".into(),
                count.to_string(),
                ts(batch_at(*b)),
                ts(batch_at(*b) + 2 * DAY),
            ]);
        }
    }
    {
        let mut t = Table::new(
            &mut out,
            "rewards",
            "id,ambassador_id,referral_id,kind,amount_minor,currency,state,holds_until,earned_on,\
             program_version_id,basis,uncapped_minor,capped_reason,reason,payout_line_id,paid_at,voided_at,\
             void_reason,created_by,created_at,updated_at",
        );
        for r in &rewards {
            let (state, line, paid_at, voided_at, updated) = match r.fate {
                Fate::Open => ("open", None, None, None, r.created_at),
                Fate::Paid(b) => {
                    let at = batch_at(b) + 2 * DAY;
                    ("paid", Some(lines[&(b, r.amb)].0.clone()), Some(at), None, at)
                }
                Fate::Voided(at) => ("voided", None, None, Some(at), at),
            };
            t.row(&[
                q(&r.id),
                q(&ambs[r.amb].id),
                q(&r.referral_id),
                q("earned"),
                REWARD.to_string(),
                q("USD"),
                q(state),
                ts(r.holds_until),
                date(r.earned_on),
                q(PROGRAM_V1),
                q(&format!("{{\"type\":\"flat\",\"completed_in_year\":{},\"amount_minor\":{REWARD}}}", r.in_year)),
                REWARD.to_string(),
                "NULL".into(),
                "NULL".into(),
                opt(line.map(|l| q(&l))),
                opt(paid_at.map(ts)),
                opt(voided_at.map(ts)),
                opt(voided_at.map(|_| q("refunded"))),
                q("api_key:bench"),
                ts(r.created_at),
                ts(updated),
            ]);
            audit.push([
                ts(r.created_at),
                q("reward.earned"),
                q("reward"),
                q(&r.id),
                "NULL".into(),
                q("held"),
                q(&format!("{{\"referral_id\":\"{}\",\"amount_minor\":{REWARD}}}", r.referral_id)),
                q("staff"),
            ]);
            mails.push((
                format!("reward-earned:{}", r.id),
                "reward_earned".into(),
                ambs[r.amb].email.clone(),
                r.created_at,
            ));
        }
    }
    {
        let mut t = Table::new(
            &mut out,
            "audit_events",
            "id,occurred_at,actor_type,actor_id,actor_role,action,entity_type,entity_id,before_status,\
             after_status,request_id,details",
        );
        for (k, [at, action, et, eid, before, after, details, role]) in audit.into_iter().enumerate() {
            let at_us = k as i64; // ids need only be unique and roughly time-ordered
            let id = ids.at(now - 400 * DAY + at_us);
            t.row(&[
                q(&id),
                at,
                q("api_key"),
                q("bench"),
                role,
                action,
                et,
                eid,
                before,
                after,
                "NULL".into(),
                details,
            ]);
        }
    }
    {
        let mut t = Table::new(
            &mut out,
            "email_outbox",
            "id,dedupe_key,template,to_address,payload,status,attempts,next_attempt_at,last_error,sent_at,created_at",
        );
        for (dedupe, template, to, at) in mails {
            t.row(&[
                q(&ids.at(at)),
                q(&dedupe),
                q(&template),
                q(&to),
                q("{}"),
                q("sent"),
                "1".into(),
                ts(at),
                "NULL".into(),
                ts(at + 2_000_000),
                ts(at),
            ]);
        }
    }
    // A portal session for ambassador 1 (the one with 50 referrals), as a login link would open.
    writeln!(
        out,
        "INSERT INTO portal_sessions (id,ambassador_id,token_hash,expires_at,revoked_at,created_at) VALUES ({},{},{},{},NULL,{});",
        q(&ids.at(now - HOUR)),
        q(&ambs[1].id),
        q(&hex(&Sha256::digest(session_secret.as_bytes()))),
        ts(now + 30 * DAY),
        ts(now - HOUR)
    )
    .unwrap();
    // The console search's keys, as the service writes them (the names here are ASCII, so the
    // databases' lower() agrees with the service's); the same statements as the migration
    // `2026-12-10-000014_console_search`, in SQL both backends take.
    writeln!(out, "{SEARCH_KEYS}").unwrap();
    // An admin and a staff member signed in to the console (the console pages' scenarios):
    // the staff member's session secret is the admin's with `-staff` after it.
    let staff_secret = format!("{console_secret}-staff");
    for (n, (name, role, secret)) in
        [("Bench Admin", "admin", console_secret.as_str()), ("Bench Staff", "staff", staff_secret.as_str())]
            .into_iter()
            .enumerate()
    {
        let member = ids.at(now - 2 * HOUR + n as i64);
        writeln!(
            out,
            "INSERT INTO team_members (id,name,email,role,status,created_at,updated_at,deactivated_at) VALUES ({},{},{},{},{},{},{},NULL);",
            q(&member),
            q(name),
            q(&format!("bench.{role}@bench.example")),
            q(role),
            q("active"),
            ts(now - 2 * HOUR),
            ts(now - 2 * HOUR)
        )
        .unwrap();
        writeln!(
            out,
            "INSERT INTO team_sessions (id,member_id,token_hash,created_at,last_seen_at,expires_at,ended_at,end_reason) VALUES ({},{},{},{},{},{},NULL,NULL);",
            q(&ids.at(now - HOUR + n as i64)),
            q(&member),
            q(&hex(&Sha256::digest(secret.as_bytes()))),
            ts(now - HOUR),
            ts(now),
            ts(now + 8 * HOUR)
        )
        .unwrap();
    }
    writeln!(out, "COMMIT;").unwrap();
    out.flush().unwrap();

    // Fixtures for the load scripts.
    let write = |name: &str, lines: Vec<String>| {
        std::fs::write(fixtures.join(name), lines.join("\n") + "\n").expect("write fixture");
    };
    let active: Vec<usize> = (0..sc.ambassadors).filter(|&i| ambs[i].status == "active").collect();
    write("codes.txt", active.iter().filter(|&&i| i != 1).map(|&i| ambs[i].code.clone()).collect());
    write("ambassadors.txt", active.iter().map(|&i| ambs[i].id.clone()).collect());
    write("complete.txt", complete_pool);
    write("heavy.txt", vec![ambs[0].id.clone(), sc.heavy.to_string()]);
    write("fifty.txt", vec![ambs[1].id.clone(), ambs[1].code.clone()]);
    // A referral of the heaviest ambassador with its sessions (and reward): the console's
    // referral page.
    write("console-referral.txt", vec![first_completed.expect("a completed referral")]);
    let payable = rewards.iter().filter(|r| matches!(r.fate, Fate::Open) && r.holds_until <= now).count();
    write("counts.txt", vec![format!("referrals {total}"), format!("payable_rewards {payable}")]);
}

const SEARCH_KEYS: &str = "INSERT INTO referral_search_keys \
    (referral_id, name_key, reversed_name_key, email, phone_digits_reversed, external_ref_key) \
    SELECT id, lower(trim(client_first_name || ' ' || coalesce(client_last_name, ''))), \
    CASE WHEN client_last_name IS NULL THEN NULL ELSE lower(client_last_name || ' ' || client_first_name) END, \
    client_email, \
    (WITH RECURSIVE r(i, out) AS (SELECT length(client_phone), CAST('' AS TEXT) UNION ALL \
    SELECT i - 1, out || substr(client_phone, i, 1) FROM r WHERE i > 1) \
    SELECT out FROM r WHERE i = 1 AND client_phone IS NOT NULL), \
    lower(external_ref) \
    FROM referrals WHERE erased_at IS NULL AND client_first_name IS NOT NULL;\n\
    UPDATE ambassadors SET name_key = lower(name);";
