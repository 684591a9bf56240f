/* purger.c - the background purger: one thread that returns free memory to
 * the OS while the program does not call the allocator.
 *
 * Without it, free memory is purged only inside malloc and free calls, so a
 * program that frees a burst and then idles keeps up to the unpurged cap
 * resident for good.  The thread is started (by the next malloc) when free
 * memory appears, wakes every half purge delay to purge what has waited out
 * the delay, and ends once nothing is left to purge; the next free memory
 * starts another.
 * So it never outlives the program's work: when the program's last thread
 * ends with pthread_exit (the process ends with its last thread), the
 * purger finishes the purging and ends too, and the process exits as it
 * would without tessera, at most a purge delay or two later.  It holds no
 * lock while sleeping and makes its system calls outside the arena lock
 * like every other purge.
 * With nothing left to purge it still lingers for TESS_PURGER_LINGER_MS
 * while some thread holds a heap: while it runs, freed memory waits out the
 * purge delay, so a program that frees a generation and builds the next
 * soon after (threads that allocate and exit, main freeing their blocks)
 * reuses it instead of faulting it all in again.  Once no thread holds a
 * heap (main ended with pthread_exit) it does not linger.
 * It also cleans the abandoned heaps (of exited threads) that received
 * frees since their last clean: their emptied pages go back to the arena
 * even when the frees stop short of the count that has the freeing thread
 * clean the heap (see _tess_heap_note_abandoned_free).
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

enum { PURGER_NONE = 0, PURGER_RUNNING, PURGER_OFF };

#define TESS_PURGER_LINGER_MS 1000

static _Atomic(int) purger_state;
/* Bumped by every notice of new free memory: a purger about to end looks
 * at it again after giving up its state, so no notice is lost between its
 * last look at the arena and its end (see purger_may_end). */
static _Atomic(uint32_t) purger_work;
static _Atomic(bool) purger_wanted; /* a notice found no purger running */

bool _tess_purger_running(void) {
  return atomic_load_explicit(&purger_state, memory_order_relaxed) == PURGER_RUNNING;
}

/* Nothing is left to purge: end, unless a notice of free memory came in
 * meanwhile.  A notifier publishes its memory, bumps purger_work, then
 * reads the state (all sequentially consistent): either this sees the
 * bump and carries on, or the notifier sees NONE and asks the next malloc
 * for another purger. */
static bool purger_may_end(uint64_t* idle_since) {
  uint32_t work = atomic_load(&purger_work);
  if (_tess_arena_has_dirty() || _tess_huge_cache_nonempty() || _tess_heap_abandoned_pending()) {
    *idle_since = 0;
    return false;
  }
  /* Linger a while in case the program frees again soon (see the top). */
  uint64_t now = _tess_prim_clock_ms();
  if (*idle_since == 0) *idle_since = now;
  if (now - *idle_since < TESS_PURGER_LINGER_MS && _tess_heap_active_count() > 0) return false;
  atomic_store(&purger_state, PURGER_NONE);
  if (atomic_load(&purger_work) == work) return true;
  int none = PURGER_NONE;
  /* Work arrived: carry on, unless a notifier has started another already. */
  return !atomic_compare_exchange_strong(&purger_state, &none, PURGER_RUNNING);
}

static void* purger_main(void* arg) {
  (void)arg;
  _tess_prim_thread_name("tessera-purge");
  uint64_t idle_since = 0;
  do {
    _tess_prim_sleep_ms(_tess_purge_delay() / 2 + 1);
    _tess_heap_scavenge_all(true);
    _tess_arena_purge(false);
    _tess_huge_cache_purge(false);
  } while (!purger_may_end(&idle_since));
  return NULL;
}

/* Free memory appeared where there was none: a running purger will see
 * it; else ask the next malloc to start one.  Called with no lock held. */
void _tess_purger_notify(void) {
  atomic_fetch_add(&purger_work, 1);
  if (atomic_load(&purger_state) != PURGER_RUNNING) atomic_store_explicit(&purger_wanted, true, memory_order_relaxed);
}

/* Start a purger if free memory asked for one and none runs.  Called only
 * from malloc's slow paths, never from free: glibc frees a dead thread's
 * TLS with its thread-stack lock held, and pthread_create takes that lock.
 * Until a malloc comes, frees purge inline under the tighter cap. */
void _tess_purger_start(void) {
  if (tess_likely(!atomic_load_explicit(&purger_wanted, memory_order_relaxed))) return;
  atomic_store_explicit(&purger_wanted, false, memory_order_relaxed);
  int state = atomic_load(&purger_state);
  if (state != PURGER_NONE || !_tess_options.background) return;
  if (_tess_prim_single_threaded()) return; /* not now: maybe once it has threads */
  /* RUNNING before the thread exists: it may purge everything and end
   * (setting NONE) before pthread_create even returns here. */
  if (!atomic_compare_exchange_strong(&purger_state, &state, PURGER_RUNNING)) return;
  /* pthread_create allocates: that is fine here, no lock is held. */
  int err = _tess_prim_thread_spawn(purger_main);
  if (err == 0) return;
  atomic_store(&purger_state, PURGER_OFF);
  if (_tess_options.verbose) _tess_warning("no background purger (error %d): purging inline", err);
}

/* The child of a fork has no purger thread. */
void _tess_purger_fork_child(void) {
  atomic_store_explicit(&purger_state, PURGER_NONE, memory_order_relaxed);
  atomic_store_explicit(&purger_work, 0, memory_order_relaxed);
  atomic_store_explicit(&purger_wanted, false, memory_order_relaxed);
}
