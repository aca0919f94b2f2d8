//! A request's `Idempotency-Key` claim, carried from the HTTP edge into the database work the
//! request does, so that it is written by the request's first write transaction — committed
//! with the change itself, or rolled back with it — instead of in a transaction of its own
//! before the request runs.
//!
//! The edge (`crate::http::idempotency`) wraps the request in [`RequestClaim::scope`]; every
//! [`super::blocking`] call the request makes carries the claim onto its thread; the first
//! [`super::write_tx`] writes it as the transaction's first statement (a [`ClaimWriter`] the
//! edge supplies), and a key already held by another request makes that transaction fail
//! before it changes anything ([`key_in_use`]). Afterwards the edge reads what happened
//! ([`ClaimState`]) and stores the reply, replays the other request's, or stores a refusal
//! that changed nothing. Work outside the request (background tasks, the mail worker) never
//! sees the claim: it is bound to the request's task and to the threads its work runs on.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryResult;

use super::DbConnection;

/// Writes a request's claim: `Ok(true)` claimed, `Ok(false)` the key is held by another
/// request (its reply, or its run still going).
pub trait ClaimWriter: Send + Sync {
    fn write(&self, conn: &mut DbConnection) -> QueryResult<bool>;
}

/// Where a request's claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Not in the database: the request has not written anything (or every write it tried
    /// was rolled back, the claim with it).
    Unwritten,
    /// Committed: with the request's first change (`write_tx`), or just before it (`write_now`).
    Written,
    /// The key is held by another request: nothing of this request was written.
    Refused,
}

/// A request's claim and where it stands; cloned into every piece of the request's work.
#[derive(Clone)]
pub struct RequestClaim(Arc<Shared>);

struct Shared {
    writer: Box<dyn ClaimWriter>,
    state: Mutex<ClaimState>,
}

tokio::task_local! {
    static REQUEST: RequestClaim;
}

thread_local! {
    static CURRENT: RefCell<Option<RequestClaim>> = const { RefCell::new(None) };
}

/// The message of the error a write fails with when the request's key is held by another
/// request (see [`key_in_use`]).
pub const KEY_IN_USE: &str = "idempotency key held by another request";

/// The error of a write refused because the request's key is held by another request: the
/// transaction is rolled back having changed nothing, and the edge answers for the other
/// request.
pub fn key_in_use() -> DieselError {
    DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(KEY_IN_USE.to_owned()))
}

/// Whether `e` is [`key_in_use`].
pub fn is_key_in_use(e: &DieselError) -> bool {
    matches!(e, DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) if info.message() == KEY_IN_USE)
}

impl RequestClaim {
    pub fn new(writer: impl ClaimWriter + 'static) -> Self {
        Self(Arc::new(Shared { writer: Box::new(writer), state: Mutex::new(ClaimState::Unwritten) }))
    }

    pub fn state(&self) -> ClaimState {
        *self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: ClaimState) {
        *self.0.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Runs `work` (the request) with this claim: its database work writes the claim first.
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        REQUEST.scope(self, work).await
    }
}

/// The claim of the request whose task this is, if any (taken by [`super::blocking`]).
pub(super) fn of_task() -> Option<RequestClaim> {
    REQUEST.try_with(Clone::clone).ok()
}

/// Makes `claim` this thread's for as long as the guard lives (a blocking task's run).
pub(super) fn enter(claim: Option<RequestClaim>) -> impl Drop {
    struct Left(Option<RequestClaim>);
    impl Drop for Left {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    Left(CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), claim)))
}

/// Called first thing in an outermost write (inside its transaction, or before a write made
/// without one): writes this thread's claim if it is not written yet. Returns the claim when
/// this call wrote it, for [`settle`] once the write has committed or rolled back. A key held
/// by another request fails the write ([`key_in_use`]), now and for every later write of the
/// request.
pub(super) fn write_first(conn: &mut DbConnection) -> QueryResult<Option<RequestClaim>> {
    let Some(claim) = CURRENT.with(|c| c.borrow().clone()) else {
        return Ok(None);
    };
    match claim.state() {
        ClaimState::Written => Ok(None),
        ClaimState::Refused => Err(key_in_use()),
        ClaimState::Unwritten => {
            if claim.0.writer.write(conn)? {
                Ok(Some(claim))
            } else {
                claim.set(ClaimState::Refused);
                Err(key_in_use())
            }
        }
    }
}

/// Records how the write that wrote `claim` ended: committed, the claim is written; rolled
/// back, the claim went with it (unless the key turned out to be taken).
pub(super) fn settle(claim: Option<RequestClaim>, committed: bool) {
    if let Some(claim) = claim {
        if committed {
            claim.set(ClaimState::Written);
        }
    }
}
