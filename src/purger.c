/* purger.c - the background purger: one thread that returns free memory to
 * the OS while the program does not call the allocator.
 *
 * Without it, free memory is purged only inside malloc and free calls, so a
 * program that frees a burst and then idles keeps up to the unpurged cap
 * resident for good.  The thread is started the first time free memory
 * appears (never in a program that never frees a span), sleeps on a futex
 * while nothing is dirty, and otherwise wakes every half purge delay to
 * purge what has waited out the delay.  It holds no lock while sleeping and
 * makes its system calls outside the arena lock like every other purge.
 *
 * It is only started in a process that already has threads of its own: a
 * single-threaded program may fork from a signal handler or unshare a user
 * namespace, which one hidden thread would break (glibc's fork takes its
 * atfork lock once there are threads).  Such a program purges inline, with
 * a tighter cap on unpurged memory (see dirty_max_slices in segment.c).
 * TESSERA_BACKGROUND=0 turns the thread off everywhere; if it cannot be
 * started, purging stays inline.  A forked child starts its own if needed.
 */
#include "internal.h"

enum { PURGER_NONE = 0, PURGER_STARTING, PURGER_RUNNING, PURGER_OFF };

static _Atomic(int) purger_state;
static _Atomic(uint32_t) purger_wake; /* futex word: bumped to wake it */

bool _tess_purger_running(void) {
  return atomic_load_explicit(&purger_state, memory_order_relaxed) == PURGER_RUNNING;
}

static void* purger_main(void* arg) {
  (void)arg;
  for (;;) {
    uint32_t seen = atomic_load_explicit(&purger_wake, memory_order_acquire);
    if (!_tess_arena_has_dirty() && !_tess_huge_cache_nonempty()) {
      _tess_prim_futex_wait(&purger_wake, seen);
      continue;
    }
    _tess_prim_sleep_ms((uint64_t)_tess_options.purge_delay_ms / 2 + 1);
    _tess_arena_purge(false);
    _tess_huge_cache_purge(false);
  }
  return NULL;
}

/* Free memory appeared where there was none: make sure the purger is
 * running and awake.  Called with no lock held. */
void _tess_purger_notify(void) {
  int state = atomic_load_explicit(&purger_state, memory_order_acquire);
  if (tess_likely(state == PURGER_RUNNING)) {
    atomic_fetch_add_explicit(&purger_wake, 1, memory_order_release);
    _tess_prim_futex_wake(&purger_wake);
    return;
  }
  if (state != PURGER_NONE || !_tess_options.background) return;
  if (_tess_prim_single_threaded()) return; /* not now: maybe once it has threads */
  if (!atomic_compare_exchange_strong(&purger_state, &state, PURGER_STARTING)) return;
  /* pthread_create allocates: that is fine here, no lock is held. */
  int err = _tess_prim_thread_spawn(purger_main, "tessera-purge");
  atomic_store_explicit(&purger_state, err == 0 ? PURGER_RUNNING : PURGER_OFF, memory_order_release);
  if (err != 0 && _tess_options.verbose) _tess_warning("no background purger (error %d): purging inline", err);
}

/* The child of a fork has no purger thread. */
void _tess_purger_fork_child(void) {
  atomic_store_explicit(&purger_state, PURGER_NONE, memory_order_relaxed);
  atomic_store_explicit(&purger_wake, 0, memory_order_relaxed);
}
