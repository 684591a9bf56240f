/* init.c - process start-up, fork and exit.
 *
 * Start-up is lazy: the first malloc of the process (often made by the
 * dynamic loader before any constructor runs) calls _tess_process_init,
 * which reads the options and registers the thread-exit and fork hooks.
 * Nothing in the first stage allocates; registering the fork handler may
 * (glibc keeps them in a growing array), so it comes after the state is
 * "done", where a nested malloc simply works.
 */
#include "internal.h"

_Atomic(int) _tess_init_state;

static void fork_child(void) {
  /* Only this thread exists in the child.  Locks some other thread held at
   * the instant of the fork guard half-updated lists: each layer checks its
   * own and starts afresh if so.  The heaps of the other threads are simply
   * never used again. */
  _tess_arena_fork_child();
  _tess_huge_fork_child();
  _tess_heap_fork_child();
  _tess_purger_fork_child();
}

void _tess_process_init(void) {
  int expect = 0;
  if (atomic_compare_exchange_strong(&_tess_init_state, &expect, 1)) {
    _tess_options_init();
    _tess_arena_init();
    _tess_prim_thread_key_create(_tess_heap_thread_done);
    atomic_store_explicit(&_tess_init_state, 2, memory_order_release);
    _tess_prim_atfork(fork_child);
    return;
  }
  /* Another thread is initialising: it makes no system call that can
   * block for long, so wait. */
  while (atomic_load_explicit(&_tess_init_state, memory_order_acquire) != 2) _tess_prim_yield();
}

__attribute__((constructor)) static void tess_constructor(void) {
  _tess_process_init();
  _tess_cxx_init();
  _tess_libc_init();
}

/* Statistics at exit, if asked for. */
__attribute__((destructor)) static void tess_destructor(void) {
  if (_tess_options.show_stats) _tess_stats_print_fd(2, false);
  if (_tess_options.stats_file != NULL) _tess_stats_append_json(_tess_options.stats_file);
}
