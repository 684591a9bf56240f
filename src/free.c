/* free.c - everything free does beyond its fast path (alloc_inline.h):
 * validating a pointer before trusting it, frees into other threads' pages,
 * large and huge blocks, confirming a suspected double free, and the sized
 * frees of C23.
 *
 * Validation never dereferences memory tessera does not own: the segment
 * map says whether a 4 MiB region is a tessera segment before its header is
 * read, and the page then says whether the pointer is a block start.
 */
#include "alloc_inline.h"

/* Is b on one of the page's owner lists (or, after collecting them, among
 * the other threads' frees)?  Bounded by the number of carved blocks, so a
 * corrupted list cannot loop forever. */
static bool block_is_free(tess_page_t* page, tess_block_t* b) {
  /* A block another thread freed may still be in flight to us: receive. */
  tess_heap_t* heap = _tess_heap_get();
  if (_tess_page_owner(page) == heap &&
      atomic_load_explicit(&heap->inbox, memory_order_relaxed) != NULL) {
    _tess_heap_drain_inbox(heap);
  }
  _tess_page_collect(page);
  tess_block_t* lists[2] = {page->free, page->local_free};
  for (int l = 0; l < 2; l++) {
    uint32_t steps = 0;
    for (tess_block_t* x = lists[l]; x != NULL && steps <= page->capacity; x = x->next, steps++) {
      if (x == b) return true;
      /* A broken list cannot say whether b is on it: report what broke it. */
      if ((uintptr_t)x - (uintptr_t)page->start >= _tess_page_area(page) || !_tess_block_sealed(page, x)) {
        _tess_block_overwritten("free", page, x);
      }
    }
  }
  return false;
}

/* Report p, which is not the start of a block.  When it points inside the
 * block of `size` bytes at `block`, say where that block starts: it is the
 * allocation the program most likely meant. */
static TESS_COLD __attribute__((noreturn)) void report_not_start(const char* call, const void* p, const void* block,
                                                                   size_t size) {
  size_t into = (size_t)((uintptr_t)p - (uintptr_t)block);
  if ((uintptr_t)p < (uintptr_t)block || into >= size) {
    _tess_error(call, p, "invalid pointer (not the start of a block)");
  }
  char what[160];
  _tess_format(what, sizeof what, "invalid pointer (not the start of a block: offset %zu of the %zu-byte block at %p)",
               into, size, block);
  _tess_error(call, p, what);
}

/* A second free of b, a block of `size` bytes. */
static TESS_COLD __attribute__((noreturn)) void report_double_free(const char* call, const void* b, size_t size) {
  char what[96];
  _tess_format(what, sizeof what, "double free (of a %zu-byte block)", size);
  _tess_error(call, b, what);
}

static void check_block_start(tess_page_t* page, const void* p, const char* call) {
  uintptr_t off = (uintptr_t)p - (uintptr_t)page->start;
  if (tess_unlikely(!_tess_is_block_start(page, off))) {
    size_t bsize = page->block_size, idx = off / bsize;
    if (off >= (uintptr_t)page->reserved * bsize) _tess_error(call, p, "invalid pointer (not the start of a block)");
    if (idx >= page->capacity) _tess_error(call, p, "invalid pointer (never allocated)"); /* not carved yet */
    report_not_start(call, p, page->start + idx * bsize, bsize);
  }
}

/* A local free that failed a fast-path check or hit a full page. */
void _tess_free_local_checked(tess_page_t* page, tess_block_t* b, const char* call) {
  check_block_start(page, b, call);
  if (_tess_maybe_double_free(page, b) && block_is_free(page, b)) report_double_free(call, b, page->block_size);
  tess_heap_t* heap = _tess_page_owner(page);
  int saved = errno;
  if (page->in_full) _tess_page_unfull(heap, page);
  _tess_page_free_block(heap, page, b);
  errno = saved;
}

/* Push a chain of `count` blocks (head..tail, linked and sealed) onto a page of
 * another heap with one CAS.  If the owner parked the page as full, the
 * first such push also puts the page on the owner's remote_pages stack so
 * the owner looks at it again. */
static void push_remote(tess_page_t* page, tess_block_t* head, tess_block_t* tail, uint32_t count) {
  /* Read the owner before publishing: until the CAS our blocks keep the
   * page alive (used > 0); after it the owner may collect them, empty the
   * page and give it back. */
  tess_heap_t* heap = _tess_page_owner(page);
  uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t state;
  do {
    state = x & TESS_XFREE_STATE_MASK;
    _tess_block_link(page, tail, (tess_block_t*)(x & ~TESS_XFREE_STATE_MASK));
  } while (!atomic_compare_exchange_weak_explicit(
      &page->xthread_free, &x, (uintptr_t)head | (state == TESS_XFREE_FULL ? TESS_XFREE_NOTIFIED : state),
      memory_order_release, memory_order_relaxed));
  /* heap outlives everything (heaps are never freed); when we set
   * NOTIFIED, the page cannot be retired until the owner drains it, so
   * pushing it on remote_pages is safe too. */
  if (tess_unlikely(tess_racy_load(heap->state) == TESS_HEAP_ABANDONED)) {
    int saved = errno; /* cleaning the heap may give memory to the OS */
    for (uint32_t i = 0; i < count; i++) _tess_heap_note_abandoned_free(heap);
    errno = saved;
  }
  if (state != TESS_XFREE_FULL) return;
  tess_page_t* top = atomic_load_explicit(&heap->remote_pages, memory_order_relaxed);
  do {
    page->remote_next = top;
  } while (!atomic_compare_exchange_weak_explicit(&heap->remote_pages, &top, page, memory_order_release,
                                                  memory_order_relaxed));
}

/* ---- remote frees: messages between heaps ----------------------------------
 * A thread freeing blocks of another heap's pages collects them in a chain
 * per owner heap and sends a chain as one message: one CAS onto the owner's
 * inbox carries up to TESS_REMOTE_BATCH frees.  The owner takes the whole
 * inbox with one atomic exchange in its slow path and frees each block
 * locally.  (page->xthread_free is still used by a thread that cannot get a
 * heap of its own.)
 *
 * A block in flight is linked to the next block of its message, with the
 * in-flight seal (tess_block_t).  The seal makes a second free of it look
 * suspicious everywhere: to the sender (which then looks in its chains), to
 * the owner (which drains its inbox before looking in its lists), and to
 * the owner when it drains (a block whose seal is not the in-flight one was
 * freed twice, or written after it was freed, and its link is not
 * followed). */

#define TESS_FOREIGN_LAG 512    /* see foreign_keep */
#define TESS_FOREIGN_WAIT_MS 50

static inline tess_page_t* page_of_block(const tess_block_t* b) { return _tess_page_of(_tess_segment_of(b), b); }

static void send_message(tess_heap_t* owner, tess_block_t* head, tess_block_t* tail, uint32_t count) {
  tess_page_t* tail_page = page_of_block(tail);
  uintptr_t state = _tess_seal_of(tail_page, tail);
  if (tess_racy_load(owner->state) == TESS_HEAP_ACTIVE) {
    uint32_t before = atomic_fetch_add_explicit(&owner->inbox_pending, count, memory_order_relaxed);
    if (before <= TESS_FOREIGN_LAG && before + count > TESS_FOREIGN_LAG) {
      atomic_store_explicit(&owner->lag_since, (uint32_t)_tess_prim_clock_ms(), memory_order_relaxed);
    }
  }
  tess_block_t* top = atomic_load_explicit(&owner->inbox, memory_order_relaxed);
  do {
    _tess_block_link_as(tail_page, tail, top, state);
  } while (!atomic_compare_exchange_weak_explicit(&owner->inbox, &top, head, memory_order_release,
                                                  memory_order_relaxed));
  if (tess_unlikely(tess_racy_load(owner->state) == TESS_HEAP_ABANDONED)) {
    int saved = errno; /* cleaning the heap may give memory to the OS */
    for (uint32_t i = 0; i < count; i++) _tess_heap_note_abandoned_free(owner);
    errno = saved;
  }
}

/* Send every chain this thread holds. */
void _tess_heap_flush_remote(tess_heap_t* heap) {
  uint32_t n = heap->remote_count;
  heap->remote_count = 0;
  heap->remote_blocks = 0;
  for (uint32_t i = 0; i < n; i++) {
    tess_remote_chain_t* c = &heap->remote[i];
    send_message(c->owner, c->head, c->tail, c->count);
  }
}

/* A block in a message without the plain in-flight seal: sent as suspect
 * (it had a seal when freed), fine unless it is on its page's lists; or
 * with no in-flight seal at all, freed twice (the second time by its owner,
 * which put it on a list) or written after the free.  Reports, or returns
 * for a suspect found on no list. */
static TESS_NOINLINE void message_check(tess_page_t* page, tess_block_t* b, uintptr_t state) {
  if ((state == TESS_SEAL_SUSPECT || state == TESS_SEAL_FREE) && block_is_free(page, b)) {
    _tess_error("free", b, "double free (detected later; one free came from another thread)");
  }
  if (state != TESS_SEAL_SUSPECT) _tess_block_overwritten("free", page, b);
}

/* Take the inbox and free every block in it. */
void _tess_heap_drain_inbox(tess_heap_t* heap) {
  atomic_store_explicit(&heap->inbox_pending, 0, memory_order_relaxed);
  tess_block_t* b = atomic_exchange_explicit(&heap->inbox, NULL, memory_order_acquire);
  while (b != NULL) {
    tess_page_t* page = page_of_block(b);
    uintptr_t state = _tess_seal_of(page, b);
    if (tess_unlikely(state != TESS_SEAL_IN_FLIGHT)) message_check(page, b, state);
    tess_block_t* next = b->next;
    if (page->in_full) _tess_page_unfull(heap, page);
    _tess_page_free_block(heap, page, b);
    b = next;
  }
}

/* Is b in one of this thread's unsent chains? */
static bool in_my_chains(tess_heap_t* heap, tess_block_t* b) {
  uint32_t kept = 0; /* or among the blocks kept for reuse (see foreign_keep) */
  for (tess_block_t* x = heap->foreign[page_of_block(b)->bin]; x != NULL && kept <= heap->foreign_count;
       x = x->next, kept++) {
    if (x == b) return true;
  }
  for (uint32_t i = 0; i < heap->remote_count; i++) {
    uint32_t steps = 0;
    for (tess_block_t* x = heap->remote[i].head; x != NULL && steps <= TESS_REMOTE_BATCH; x = x->next, steps++) {
      if (x == b) return true;
      tess_page_t* page = page_of_block(x);
      if (!_tess_block_in_flight(page, x)) _tess_block_overwritten("free", page, x);
    }
  }
  return false;
}

/* Put b on chain c of this thread (its page's owner's), sealed in `state`
 * (IN_FLIGHT or SUSPECT). */
static inline void chain_push(tess_heap_t* heap, tess_remote_chain_t* c, tess_page_t* page, tess_block_t* b,
                              uintptr_t state) {
  _tess_block_link_as(page, b, c->head, state);
  c->head = b;
  c->count++;
  if (++heap->remote_blocks >= TESS_REMOTE_BATCH) _tess_heap_flush_remote(heap);
}

/* The first block for `owner`: a new chain (sending all of them first if
 * every chain is taken).  A block of an abandoned heap is sent at once:
 * that heap is cleaned when the frees of all its blocks have come, and a
 * chain waiting in a thread that then idles would keep its pages in use for
 * good (64 blocks of 1-64 KiB held 44 MB). */
static TESS_NOINLINE void chain_start(tess_heap_t* heap, tess_heap_t* owner, tess_page_t* page, tess_block_t* b,
                                      uintptr_t state) {
  if (tess_racy_load(owner->state) == TESS_HEAP_ABANDONED) {
    _tess_block_link_as(page, b, NULL, state);
    send_message(owner, b, b, 1);
    return;
  }
  uint32_t n = heap->remote_count;
  if (n == TESS_REMOTE_CHAINS) {
    _tess_heap_flush_remote(heap);
    n = 0;
  }
  tess_remote_chain_t* c = &heap->remote[n];
  heap->remote_count = n + 1;
  c->owner = owner;
  c->head = NULL;
  c->tail = b;
  c->count = 0;
  chain_push(heap, c, page, b, state);
}

/* Add b to this thread's chain for the heap that owns its page. */
static inline void chain_add(tess_heap_t* heap, tess_page_t* page, tess_block_t* b, uintptr_t state) {
  tess_heap_t* owner = _tess_page_owner(page);
  for (uint32_t i = 0; i < heap->remote_count; i++) {
    if (heap->remote[i].owner == owner) {
      chain_push(heap, &heap->remote[i], page, b, state);
      return;
    }
  }
  chain_start(heap, owner, page, b, state);
}

/* free_remote's less common cases: the thread has no heap yet (it gets
 * one), or the block's seal says it may be free already. */
static TESS_NOINLINE void free_remote_slow(tess_page_t* page, tess_block_t* b, const char* call) {
  tess_heap_t* heap = _tess_heap_get();
  if (heap == &_tess_heap_empty) {
    int saved = errno;
    /* A thread past its exit takes no heap again (see heap.c). */
    heap = _tess_heap_thread_exited() ? NULL : _tess_heap_init_thread();
    errno = saved;
    if (heap == NULL) {
      if (_tess_maybe_double_free(page, b)) {
        /* Sealed: only its owner can tell whether it is free already. */
        _tess_block_link_as(page, b, NULL, TESS_SEAL_SUSPECT);
        send_message(_tess_page_owner(page), b, b, 1);
      } else {
        push_remote(page, b, b, 1); /* it joins the page's xthread list */
      }
      return;
    }
  }
  if (!_tess_maybe_double_free(page, b)) {
    chain_add(heap, page, b, TESS_SEAL_IN_FLIGHT);
    return;
  }
  /* Sealed: in a chain of ours (checked here), or on its owner's lists or
   * in a message to it (only the owner can look: it is sent as suspect). */
  if (in_my_chains(heap, b)) report_double_free(call, b, page->block_size);
  chain_add(heap, page, b, TESS_SEAL_SUSPECT);
}

/* ---- keeping another heap's blocks while it lags ---------------------------
 * A heap whose thread is off the CPU drains its inbox only when it runs
 * again: with 4 threads on 2 cores, xchurn's owners had up to 26 MB of
 * other threads' frees waiting, while those threads mapped fresh pages
 * (peak RSS 106-118 MiB against tcmalloc's 70; now 80-86).
 * So when an owner has more than TESS_FOREIGN_LAG blocks sent and not yet
 * drained, a thread that allocates blocks of the same class (it has a page
 * of it) keeps the block and its next malloc of that class that finds its
 * own page empty hands it out again, up to TESS_FOREIGN_MAX bytes.  The
 * block stays counted as used in its page (its owner never saw it come
 * back), carries the in-flight seal while kept, so a second free of it is
 * suspected as for a block in a chain, and is sent home at thread exit and
 * by tess_trim.  (Keeping every foreign block, as tcmalloc's thread caches
 * do, made larson 60% slower: there most frees are a new thread's into the
 * heap it adopted, and reused foreign blocks made them remote again.  With
 * a lag of 64 blocks larson was still 34% slower; with 512, 13%.)
 * So a thread keeps nothing while it frees mostly its own blocks: a kept
 * block it hands out again lands in its own data, and its next free is
 * remote too, and so on for good (larson: 3.7M remote frees in 40M, 0.3M
 * without keeping).  It keeps while its remote frees at least match its
 * slow-path mallocs, counted over windows of TESS_FOREIGN_WINDOW of the
 * latter (xchurn, whose frees are three quarters remote whatever it does:
 * 2.3M remote frees against 1.4M slow mallocs).  Except for an owner that
 * has lagged for TESS_FOREIGN_WAIT_MS: it is waiting (larson's main thread,
 * in pthread_cond_wait with the tables' first blocks), and what is sent to
 * it would stay there, resident and of no use, for as long as it waits.
 * larson: 0.71-0.81 -> 0.66-0.70 s, peak RSS 20.2-21.2 -> 21.2-24.0 MB
 * (-> 21.7-24.1 without that exception); xchurn unchanged. */
#define TESS_FOREIGN_MAX ((size_t)512 << 10)

static TESS_NOINLINE bool foreign_keep(tess_heap_t* heap, tess_heap_t* owner, tess_page_t* page, tess_block_t* b) {
  if (tess_racy_load(owner->state) != TESS_HEAP_ACTIVE || heap->queues[page->bin].first == NULL ||
      heap->foreign_bytes + page->block_size > TESS_FOREIGN_MAX) {
    return false;
  }
  if (heap->keep_off && (uint32_t)_tess_prim_clock_ms() - atomic_load_explicit(&owner->lag_since, memory_order_relaxed) <
                            TESS_FOREIGN_WAIT_MS) {
    return false; /* lagging, not waiting: see above */
  }
  _tess_block_link_as(page, b, heap->foreign[page->bin], TESS_SEAL_IN_FLIGHT);
  heap->foreign[page->bin] = b;
  heap->foreign_count++;
  heap->foreign_bytes += page->block_size;
  return true;
}

/* A kept block must still carry the in-flight seal.  One freed again by
 * another thread while kept is in that thread's chain (suspect) or back on
 * its owner's lists; else it was written after its free.  Its link is not
 * followed. */
static void foreign_check(tess_page_t* page, tess_block_t* b, const char* call) {
  uintptr_t state = _tess_seal_of(page, b);
  if (tess_likely(state == TESS_SEAL_IN_FLIGHT)) return;
  if (state == TESS_SEAL_SUSPECT || state == TESS_SEAL_FREE) {
    _tess_error(call, b, "double free (detected later; one free came from another thread)");
  }
  _tess_block_overwritten(call, page, b);
}

/* A kept block of `bin` for malloc (there is one). */
void* _tess_heap_foreign_take(tess_heap_t* heap, size_t bin) {
  tess_block_t* b = heap->foreign[bin];
  tess_page_t* page = page_of_block(b);
  foreign_check(page, b, "malloc");
  heap->foreign[bin] = b->next;
  heap->foreign_count--;
  heap->foreign_bytes -= page->block_size;
  b->seal = 0;
  return b;
}

/* Send every kept block home (thread exit, tess_trim). */
void _tess_heap_flush_foreign(tess_heap_t* heap) {
  for (size_t bin = 0; bin <= TESS_BIN_MEDIUM_LAST && heap->foreign_count != 0; bin++) {
    tess_block_t* b = heap->foreign[bin];
    heap->foreign[bin] = NULL;
    while (b != NULL) {
      tess_page_t* page = page_of_block(b);
      foreign_check(page, b, "free");
      tess_block_t* next = b->next;
      heap->foreign_count--;
      heap->foreign_bytes -= page->block_size;
      chain_add(heap, page, b, TESS_SEAL_IN_FLIGHT);
      b = next;
    }
  }
}

/* A free into another heap's page: added to this thread's chain for that
 * heap (a thread that has no heap gets one).  Sent when a chain is needed
 * for one heap more than TESS_REMOTE_CHAINS, when TESS_REMOTE_BATCH blocks
 * wait, when the thread needs fresh memory, and at thread exit;
 * kept instead while its owner lags (see foreign_keep).  Every
 * call out of the common case is a tail call, so it saves no registers. */
static void free_remote(tess_page_t* page, tess_block_t* b, const char* call) {
  tess_heap_t* heap = _tess_heap_get();
  if (tess_unlikely(heap == &_tess_heap_empty || _tess_maybe_double_free(page, b))) {
    free_remote_slow(page, b, call);
    return;
  }
  tess_heap_t* owner = _tess_page_owner(page);
  heap->window_remote++;
  if (tess_unlikely(atomic_load_explicit(&owner->inbox_pending, memory_order_relaxed) > TESS_FOREIGN_LAG) &&
      foreign_keep(heap, owner, page, b)) {
    return;
  }
  chain_add(heap, page, b, TESS_SEAL_IN_FLIGHT);
}

/* b, a carved block's start, is in a small or medium page that is not
 * this thread's or is parked full. */
void _tess_free_owned_page(tess_page_t* page, tess_block_t* b, size_t size, const char* call) {
  if (tess_unlikely(size > page->block_size)) _tess_free_sized_checked(b, size, call);
  else if (_tess_page_owner(page) != _tess_heap_get()) free_remote(page, b, call);
  else _tess_free_local_checked(page, b, call);
}

static void free_large(tess_page_t* page, const void* p, const char* call) {
  if (p != page->start) report_not_start(call, p, page->start, page->block_size);
  atomic_fetch_sub_explicit(&_tess_os.large_bytes, page->block_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&_tess_os.pages_in_use_bytes, (size_t)page->slice_count << TESS_SLICE_SHIFT,
                            memory_order_relaxed);
  page->used = 0;
  _tess_arena_seal_large(page);
  _tess_arena_span_free(page);
}

/* The span head of p, or NULL if p is in no tessera segment (reported). */
static tess_page_t* page_checked(const void* p, const char* call, tess_segment_t** huge) {
  uint8_t m = _tess_segmap_get((uintptr_t)p);
  *huge = NULL;
  if (tess_likely(m == TESS_SEGMAP_NORMAL)) {
    tess_segment_t* seg = _tess_segment_of(p);
    if ((uintptr_t)p - (uintptr_t)seg < TESS_SLICE_SIZE) {
      _tess_error(call, p, "invalid pointer (inside tessera's metadata)");
    }
    return _tess_page_of(seg, p);
  }
  if (m >= TESS_SEGMAP_HUGE) {
    tess_segment_t* seg = _tess_huge_segment_of(p, m);
    if (seg != NULL && p == seg->slices[0].start) {
      *huge = seg;
      return &seg->slices[0];
    }
    if (_tess_huge_was_freed(p, m)) _tess_error(call, p, "double free");
    if (seg != NULL) report_not_start(call, p, seg->slices[0].start, seg->huge_size);
    _tess_error(call, p, "invalid pointer (not the start of a block)");
  }
  _tess_error(call, p, "invalid pointer (not allocated by tessera)");
}

/* The fast path found p's slice but not as a page of this thread's: a
 * slice of a longer span (medium or large), another thread's page, a full
 * page of ours, or something invalid. */
void _tess_free_page(tess_page_t* slice, void* p, size_t size, const char* call) {
  tess_page_t* page = _tess_span_head(slice);
  if (tess_likely((page->kind == TESS_PAGE_SMALL || page->kind == TESS_PAGE_MEDIUM) &&
                  _tess_is_block_start(page, (uintptr_t)p - (uintptr_t)page->start))) {
    _tess_free_owned_page(page, (tess_block_t*)p, size, call);
    return;
  }
  if (size != 0) _tess_free_sized_checked(p, size, call);
  else _tess_free_generic(p, call);
}

/* Everything the fast path and _tess_free_page did not take: NULL, large
 * and huge blocks, and every invalid pointer (reported).  (Another heap's
 * small or medium block never gets here: _tess_free_owned_page takes it.) */
void _tess_free_generic(void* p, const char* call) {
  if (p == NULL) return;
  int saved = errno;
  tess_segment_t* huge;
  tess_page_t* page = page_checked(p, call, &huge);
  if (huge != NULL) {
    _tess_huge_free(huge);
  } else {
    switch (page->kind) {
    case TESS_PAGE_SMALL:
    case TESS_PAGE_MEDIUM: {
      check_block_start(page, p, call);
      if (_tess_page_owner(page) == _tess_heap_get()) {
        _tess_free_local_checked(page, (tess_block_t*)p, call);
      } else {
        free_remote(page, (tess_block_t*)p, call);
      }
      break;
    }
    case TESS_PAGE_LARGE:
      free_large(page, p, call);
      break;
    case TESS_PAGE_FREE:
    case TESS_PAGE_PURGING:
      if (_tess_arena_freed_large_at(p)) _tess_error(call, p, "double free (of a large block)");
      _tess_error(call, p, "double free (or invalid pointer: the memory is free)");
    default:
      _tess_error(call, p, "invalid pointer (not allocated by tessera)");
    }
  }
  errno = saved;
}

/* The usable size of a block, validating the pointer as free would. */
size_t _tess_usable_size_checked(const void* p, const char* call) {
  tess_segment_t* huge;
  tess_page_t* page = page_checked(p, call, &huge);
  if (huge != NULL) return huge->huge_size;
  if (page->kind != TESS_PAGE_SMALL && page->kind != TESS_PAGE_MEDIUM && page->kind != TESS_PAGE_LARGE) {
    _tess_error(call, p, "invalid pointer (the memory is free)");
  }
  if (page->kind == TESS_PAGE_LARGE) {
    if (p != page->start) report_not_start(call, p, page->start, page->block_size);
  } else {
    check_block_start(page, p, call);
    /* A sealed block of this thread's page is looked up in its lists (another
     * thread's lists are not ours to walk). */
    const tess_block_t* b = p;
    if (_tess_maybe_double_free(page, b) && _tess_page_owner(page) == _tess_heap_get() &&
        block_is_free(page, (tess_block_t*)b)) {
      _tess_error(call, p, "invalid pointer (the memory is free)");
    }
  }
  return page->block_size;
}

void tess_free(void* p) { _tess_free_inline(p, "free"); }

/* A sized free off the fast path: the pointer and the size checked in
 * full, then freed. */
void _tess_free_sized_checked(void* p, size_t size, const char* call) {
  if (p == NULL) return;
  size_t usable = _tess_usable_size_checked(p, call);
  if (tess_unlikely(size > usable)) {
    char what[96];
    _tess_format(what, sizeof what, "size %zu larger than the block (%zu bytes)", size, usable);
    _tess_error(call, p, what);
  }
  _tess_free_inline(p, call);
}

void tess_free_sized(void* p, size_t size) { _tess_free_inline_sized(p, size, "free_sized"); }

void tess_free_aligned_sized(void* p, size_t alignment, size_t size) {
  if (p != NULL && (alignment == 0 || (alignment & (alignment - 1)) != 0 || ((uintptr_t)p & (alignment - 1)) != 0)) {
    _tess_error("free_aligned_sized", p, "invalid alignment for this block");
  }
  _tess_free_inline_sized(p, size, "free_aligned_sized");
}
