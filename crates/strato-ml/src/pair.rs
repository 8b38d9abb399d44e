//! A second core for one sequence's products: while a single sequence's pass runs, one of rayon's threads
//! spins, ready to take half of each product the moment it is posted.
//!
//! Why not rayon's own split: between two products the pass does attention and layer norms on one thread, long
//! enough for rayon's idle worker to yield and sleep, so each of a query's 24 products paid a hand-off and often
//! a wake-up, and two threads were barely faster than one (measured: 0.95 ms of products per query on one
//! thread, 0.75-0.85 on two). A spinning helper takes a half in about a microsecond.
//!
//! Nothing ever waits on a helper that is not there: a posted half that no helper has claimed by the time the
//! poster has finished its own half is taken back and run by the poster.

#![expect(unsafe_code, reason = "a posted job is shared with the helper through a raw pointer; see `split_two`")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A half of a product, on the poster's stack while posted.
struct Job<'a> {
    run: &'a (dyn Fn() + Sync),
    done: AtomicBool,
}

/// Empty (0), claimed by the helper (`CLAIMED`), or the address of a posted [`Job`].
static SLOT: AtomicUsize = AtomicUsize::new(0);
const CLAIMED: usize = 1;
/// Whether a session (a pass that may post halves) is open.
static SESSION: AtomicBool = AtomicBool::new(false);
/// The rayon thread that holds the session (`NO_OWNER`: one outside the pool).
static OWNER: AtomicUsize = AtomicUsize::new(NO_OWNER);
const NO_OWNER: usize = usize::MAX;
/// Whether a helper is up (serving a session, or lingering after one).
static HELPER_UP: AtomicBool = AtomicBool::new(false);
/// How long a helper waits for the next session before it returns to rayon: a client's next query then finds it
/// spinning instead of waking a sleeping worker (which cost the first products of every query their second core).
const LINGER: std::time::Duration = std::time::Duration::from_micros(300);

/// Runs `pass` with a helper spinning on one of rayon's threads for its duration, when rayon has exactly two
/// threads and no other pass holds the helper; otherwise simply runs `pass`.
pub(crate) fn with_helper<R>(pass: impl FnOnce() -> R) -> R {
    let _session = start();
    pass()
}

/// A helper's session; ends (the helper stops spinning) when dropped, also while unwinding.
pub(crate) struct Session;

impl Drop for Session {
    fn drop(&mut self) {
        SESSION.store(false, Ordering::Release);
    }
}

/// Starts a session with its helper, or None (see [`with_helper`]). The caller may be outside rayon's pool: then
/// both of its threads can help.
pub(crate) fn start() -> Option<Session> {
    let owner = rayon::current_thread_index();
    if rayon::current_num_threads() != 2 {
        return None;
    }
    SESSION.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).ok()?;
    OWNER.store(owner.unwrap_or(NO_OWNER), Ordering::Release);
    // A helper still up from an earlier session serves this one.
    if HELPER_UP.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        rayon::spawn(help);
    }
    Some(Session)
}

/// The helper: claims and runs posted halves while sessions last, and lingers for the next one.
fn help() {
    loop {
        {
            // Marks the helper down on every way out (a panicking half included), so that the next session
            // spawns one.
            struct Up;
            impl Drop for Up {
                fn drop(&mut self) {
                    HELPER_UP.store(false, Ordering::Release);
                }
            }
            let _up = Up;
            serve();
        }
        // A session that started while this helper was leaving found it up and spawned none: stay for it.
        if !SESSION.load(Ordering::Acquire) || HELPER_UP.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

/// Serves until no session has been open for `LINGER`, or at once on the current session's own thread, which may
/// run the helper's job from rayon's queues while it waits inside rayon: spinning there would wait on itself.
fn serve() {
    let here = rayon::current_thread_index().unwrap_or(NO_OWNER);
    let mut idle_since: Option<std::time::Instant> = None;
    loop {
        if !SESSION.load(Ordering::Acquire) {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= LINGER {
                return;
            }
        } else if OWNER.load(Ordering::Acquire) == here {
            return;
        } else {
            idle_since = None;
        }
        let posted = SLOT.load(Ordering::Acquire);
        if posted > CLAIMED && SLOT.compare_exchange(posted, CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            // SAFETY: a posted address is a live Job until its poster sees `done` (split_two waits for it, even
            // when unwinding), and the claim above made this thread the only one to run it.
            let job = unsafe { &*(posted as *const Job) };
            // Sets `done` even if the half panics, so that the poster does not wait forever.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(&job.done);
            (job.run)();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Runs `theirs` on the helper (or here, if no helper claims it in time) and `mine` here; false, with nothing
/// run, when there is no helper or another half is posted already.
pub(crate) fn split_two(theirs: &(dyn Fn() + Sync), mine: impl FnOnce()) -> bool {
    if !SESSION.load(Ordering::Acquire) {
        return false;
    }
    let job = Job { run: theirs, done: AtomicBool::new(false) };
    let addr = &job as *const Job as usize;
    if SLOT.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return false;
    }
    // From here the job must outlive the helper's use of it: this guard takes it back or waits for it to finish,
    // on every way out of this function.
    struct Settle<'a, 'b>(&'a Job<'b>, usize);
    impl Drop for Settle<'_, '_> {
        fn drop(&mut self) {
            if SLOT.compare_exchange(self.1, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                // Never claimed: run it here.
                (self.0.run)();
                return;
            }
            while !self.0.done.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            SLOT.store(0, Ordering::Release);
        }
    }
    let settle = Settle(&job, addr);
    mine();
    drop(settle);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Posts 1,000 halves; how many were posted, and how many times each side ran.
    fn rounds() -> (usize, usize, usize) {
        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut posted = 0;
        for _ in 0..1000 {
            let theirs = || {
                a.fetch_add(1, Ordering::Relaxed);
            };
            if split_two(&theirs, || {
                b.fetch_add(1, Ordering::Relaxed);
            }) {
                posted += 1;
            }
        }
        (posted, a.into_inner(), b.into_inner())
    }

    #[test]
    fn every_posted_half_runs_exactly_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let (posted, theirs, mine) = pool.install(|| {
            // Other tests' passes may hold the one helper for a while.
            loop {
                if let Some(session) = start() {
                    let r = rounds();
                    drop(session);
                    return r;
                }
                std::thread::yield_now();
            }
        });
        assert_eq!((posted, theirs, mine), (1000, 1000, 1000));
    }

    #[test]
    fn nothing_is_posted_without_a_pool_of_two() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        assert!(pool.install(start).is_none());
        let posted = pool.install(|| split_two(&|| {}, || {}));
        assert!(!posted || SESSION.load(Ordering::Acquire), "posted with no session");
    }
}
