//! SQLite has one writer at a time. Left to SQLite, concurrent writers of one process collide
//! on the file lock and wait in its busy handler, which sleeps in growing steps (up to 100 ms)
//! and wakes in no particular order: at 16 concurrent writers the slowest waited over a
//! second. So this process's writers queue here instead, first come first served, and each
//! is woken the moment the one before it commits. The busy handler stays as the fallback
//! for writers in other processes (`vouch keys …`, a second instance on the same file).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// A pool's writer queue, carried by each of its SQLite connections. A diesel connection has
/// no slot for data of ours; its instrumentation hook is the one object that travels with it,
/// so the queue rides there (the hook itself does nothing) and `write_tx` finds it again.
#[derive(Clone, Default)]
pub(super) struct SqliteWriter(Arc<Queue>);

impl Instrumentation for SqliteWriter {
    fn on_connection_event(&mut self, _: InstrumentationEvent<'_>) {}
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Default)]
struct State {
    writing: bool,
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// The turn to write; the next writer in line goes when it is dropped. `None` inside: this
/// thread already had the turn (a write nested in another), so there is nothing to give back.
pub(super) struct Turn(Option<(Arc<Queue>, usize)>);

thread_local! {
    /// The queue whose turn this thread holds (its address), so a nested write does not wait
    /// for the thread itself.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some((queue, before)) = self.0.take() {
            HELD.set(before);
            queue.lock().writing = false;
            queue.turn.notify_all();
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // `State` is only changed in whole steps under the lock: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SqliteWriter {
    /// Waits for this process's earlier writers to finish, at most `timeout` (then `None`:
    /// the caller answers as SQLite's busy timeout would).
    pub(super) fn turn(&self, timeout: Duration) -> Option<Turn> {
        let queue = &self.0;
        let id = Arc::as_ptr(queue) as usize;
        if HELD.get() == id {
            return Some(Turn(None));
        }
        let granted = || Some(Turn(Some((queue.clone(), HELD.replace(id)))));
        let mut state = queue.lock();
        if !state.writing && state.waiting.is_empty() {
            state.writing = true;
            return granted();
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            state = queue.turn.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
            if !state.writing && state.waiting.front() == Some(&ticket) {
                state.waiting.pop_front();
                state.writing = true;
                return granted();
            }
            if Instant::now() >= deadline {
                state.waiting.retain(|t| *t != ticket);
                drop(state);
                // The writer behind this one may be first in line now.
                queue.turn.notify_all();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_take_turns_in_arrival_order() {
        let writer = SqliteWriter::default();
        let first = writer.turn(Duration::from_secs(1)).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..4 {
            let (next, order) = (writer.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _turn = next.turn(Duration::from_secs(5)).unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each is queued before the next arrives.
            while writer.0.lock().waiting.len() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_nested_write_does_not_wait_for_its_own_thread() {
        let writer = SqliteWriter::default();
        let outer = writer.turn(Duration::from_secs(1)).unwrap();
        let inner = writer.turn(Duration::from_millis(20)).expect("the thread has the turn already");
        drop(inner);
        // Still this thread's turn until the outer write ends.
        let other = writer.clone();
        assert!(std::thread::spawn(move || other.turn(Duration::from_millis(20)).is_none()).join().unwrap());
        drop(outer);
        let other = writer.clone();
        assert!(std::thread::spawn(move || other.turn(Duration::from_millis(20)).is_some()).join().unwrap());
    }

    #[test]
    fn a_writer_that_waited_too_long_leaves_the_line() {
        let writer = SqliteWriter::default();
        let first = writer.turn(Duration::from_secs(1)).unwrap();
        let other = writer.clone();
        assert!(std::thread::spawn(move || other.turn(Duration::from_millis(20)).is_none()).join().unwrap());
        assert!(writer.0.lock().waiting.is_empty());
        drop(first);
        let other = writer.clone();
        assert!(std::thread::spawn(move || other.turn(Duration::from_millis(20)).is_some()).join().unwrap());
    }
}
