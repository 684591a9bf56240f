/* heap.c - thread heaps: giving a thread its heap, abandoning it when the
 * thread exits, adopting abandoned heaps, and cleaning them up.
 *
 * A heap is never freed.  When its thread exits, the heap gives its empty
 * pages back and goes on the abandoned pool with the pages that still hold
 * blocks.  Other threads' frees into those pages keep landing on the pages'
 * xthread_free lists (a heap that is never freed is always safe to push
 * to); a new thread adopts the heap, or any thread needing a fresh page
 * cleans one abandoned heap first, so nothing is lost for good.
 *
 * Locking: `heaps.lock` guards the abandoned pool and the metadata chunk.
 * A leaf lock, never held across a system call or another lock.  At fork,
 * a child that finds it held forgets the pool (leaking it) rather than
 * trusting a half-updated list.
 */
#include "internal.h"

__thread tess_heap_t* _tess_heap_tls __attribute__((tls_model("initial-exec"))) = &_tess_heap_empty;

/* Set when this thread's heap was given back at its exit.  What runs after
 * that (later pthread key destructors, glibc's own clean-up of per-thread
 * buffers such as strerror's and dlerror's, which frees after every
 * destructor round is over) must not leave a heap attached to the thread:
 * nothing would give it back again, and every such thread would leak one
 * heap and the blocks other threads free into its pages. */
static __thread bool thread_exited __attribute__((tls_model("initial-exec")));

bool _tess_heap_thread_exited(void) { return thread_exited; }

/* Every direct slot of the empty heap points at the empty page, whose free
 * list is always NULL: the fast path's one test sends the first malloc of a
 * thread to the slow path. */
tess_page_t _tess_page_empty;
tess_heap_t _tess_heap_empty = {
  /* Statically, because the dynamic loader calls malloc before any
   * constructor of ours has run. */
  .direct = {[0 ... TESS_DIRECT_COUNT - 1] = &_tess_page_empty},
};

#define TESS_META_CHUNK (256 * 1024)

static struct {
  tess_lock_t lock;
  tess_heap_t* abandoned_first; /* adoption takes the first (warmest) */
  tess_heap_t* abandoned_last;  /* scavenging puts a heap back here   */
  size_t abandoned_count;
  uint8_t* meta_next;           /* bump allocation of heap structs  */
  uint8_t* meta_end;
  size_t count;                 /* heaps created                    */
  _Atomic(size_t) active;       /* heaps that live threads hold      */
  _Atomic(tess_heap_t*) all;    /* every heap, newest first          */
} heaps;

static void heap_setup(tess_heap_t* heap) {
  for (size_t i = 0; i < TESS_DIRECT_COUNT; i++) heap->direct[i] = &_tess_page_empty;
}

static tess_heap_t* heap_new(void) {
  size_t size = (sizeof(tess_heap_t) + 63) & ~(size_t)63;
  for (;;) {
    _tess_lock(&heaps.lock);
    if (heaps.meta_next != NULL && heaps.meta_next + size <= heaps.meta_end) {
      tess_heap_t* heap = (tess_heap_t*)heaps.meta_next;
      heaps.meta_next += size;
      heap->id = (uint32_t)heaps.count;
      tess_racy_store(heaps.count, heaps.count + 1);
      _tess_unlock(&heaps.lock);
      heap_setup(heap);
      heap->rng = _tess_prim_random() | 1;
      tess_heap_t* top = atomic_load_explicit(&heaps.all, memory_order_relaxed);
      do {
        heap->next_all = top;
      } while (!atomic_compare_exchange_weak_explicit(&heaps.all, &top, heap, memory_order_release,
                                                      memory_order_relaxed));
      return heap;
    }
    _tess_unlock(&heaps.lock);
    uint8_t* base;
    size_t mapped;
    uint8_t* chunk = _tess_os_map_aligned(TESS_META_CHUNK, TESS_OS_PAGE_SIZE, &base, &mapped);
    if (chunk == NULL) return NULL;
    _tess_os_committed_add(TESS_META_CHUNK);
    _tess_lock(&heaps.lock);
    heaps.meta_next = chunk; /* the rest of an older chunk, if any, is left */
    heaps.meta_end = chunk + TESS_META_CHUNK;
    _tess_unlock(&heaps.lock);
  }
}

static tess_heap_t* abandoned_pop(bool wait) {
  if (tess_racy_load(heaps.abandoned_first) == NULL) return NULL; /* a hint */
  if (wait) _tess_lock(&heaps.lock);
  else if (atomic_exchange_explicit(&heaps.lock.held, 1, memory_order_acquire)) return NULL;
  tess_heap_t* heap = heaps.abandoned_first;
  if (heap != NULL) {
    tess_racy_store(heaps.abandoned_first, heap->next);
    if (heaps.abandoned_first == NULL) heaps.abandoned_last = NULL;
    heaps.abandoned_count--;
    heap->next = NULL;
  }
  _tess_unlock(&heaps.lock);
  return heap;
}

static void abandoned_push(tess_heap_t* heap, bool at_front) {
  tess_racy_store(heap->state, TESS_HEAP_ABANDONED);
  _tess_lock(&heaps.lock);
  if (at_front || heaps.abandoned_first == NULL) {
    heap->next = heaps.abandoned_first;
    tess_racy_store(heaps.abandoned_first, heap);
    if (heaps.abandoned_last == NULL) heaps.abandoned_last = heap;
  } else {
    heap->next = NULL;
    heaps.abandoned_last->next = heap;
    heaps.abandoned_last = heap;
  }
  heaps.abandoned_count++;
  _tess_unlock(&heaps.lock);
}

/* Give the calling thread a heap: an abandoned one if any, else a new one.
 * Returns NULL only when the OS has no memory for a new one.  On a thread
 * past its exit (thread_exited) the heap is not registered for the thread's
 * exit: the caller gives it back itself (_tess_heap_lend, _tess_heap_return). */
tess_heap_t* _tess_heap_init_thread(void) {
  if (tess_unlikely(atomic_load_explicit(&_tess_init_state, memory_order_acquire) != 2)) _tess_process_init();
  tess_heap_t* heap = _tess_heap_tls;
  if (heap != &_tess_heap_empty) return heap;
  heap = abandoned_pop(true);
  if (heap == NULL) heap = heap_new();
  if (heap == NULL) return NULL;
  tess_racy_store(heap->state, TESS_HEAP_ACTIVE);
  atomic_fetch_add_explicit(&heaps.active, 1, memory_order_relaxed);
  _tess_heap_tls = heap;
  _tess_heap_unpark_pages(heap); /* adopted: its pages serve again */
  /* May allocate (keys past the first 32): the heap is already in place. */
  if (!thread_exited) _tess_prim_thread_set(heap);
  _tess_heap_drain_remote(heap);
  return heap;
}

/* A thread past its exit that must allocate borrows a heap for the one
 * call (its caller then calls _tess_heap_return).  NULL without memory. */
tess_heap_t* _tess_heap_lend(void) {
  tess_assert(thread_exited && _tess_heap_tls == &_tess_heap_empty);
  return _tess_heap_init_thread();
}

void _tess_heap_return(tess_heap_t* heap) { _tess_heap_thread_done(heap); }

/* Thread exit (pthread key destructor): return what can be returned and put
 * the heap on the abandoned pool.  From then on the thread frees without a
 * heap, into the pages' lists of other threads' frees, and a malloc borrows
 * a heap for the call (_tess_heap_lend). */
void _tess_heap_thread_done(void* arg) {
  tess_heap_t* heap = (tess_heap_t*)arg;
  /* Only the thread's own heap: a value left from before is not ours. */
  if (heap == NULL || heap == &_tess_heap_empty || heap != _tess_heap_tls) return;
  int saved = errno;
  thread_exited = true;
  _tess_heap_flush_foreign(heap);
  _tess_heap_flush_remote(heap);
  _tess_heap_tls = &_tess_heap_empty;
  _tess_heap_park_pages(heap);
  /* Counted from here (abandoned_push publishes both): when as many frees
   * have come as it held blocks, the heap is cleaned at once. */
  size_t live = _tess_heap_in_use(heap, false);
  atomic_store_explicit(&heap->abandoned_live, live < UINT32_MAX ? (uint32_t)live : UINT32_MAX, memory_order_relaxed);
  atomic_store_explicit(&heap->abandoned_frees, 0, memory_order_relaxed);
  atomic_store_explicit(&heap->abandoned_cleaned, 0, memory_order_relaxed);
  abandoned_push(heap, true);
  atomic_fetch_sub_explicit(&heaps.active, 1, memory_order_relaxed);
  errno = saved;
}

/* Other threads' frees: the messages in the inbox, and the full pages they
 * freed into directly: back to their class queues. */
void _tess_heap_drain_remote(tess_heap_t* heap) {
  if (atomic_load_explicit(&heap->inbox, memory_order_relaxed) != NULL) _tess_heap_drain_inbox(heap);
  tess_page_t* page = atomic_exchange_explicit(&heap->remote_pages, NULL, memory_order_acquire);
  while (page != NULL) {
    tess_page_t* next = page->remote_next;
    page->remote_next = NULL;
    uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
    while ((x & TESS_XFREE_STATE_MASK) == TESS_XFREE_NOTIFIED &&
           !atomic_compare_exchange_weak_explicit(&page->xthread_free, &x, x & ~TESS_XFREE_STATE_MASK,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
    }
    if (page->in_full) _tess_page_unfull(heap, page);
    page = next;
  }
}

/* Clean an abandoned heap this thread has claimed (taken off the pool). */
static void clean_claimed(tess_heap_t* heap) {
  atomic_store_explicit(&heap->abandoned_cleaned, atomic_load_explicit(&heap->abandoned_frees, memory_order_relaxed),
                        memory_order_relaxed);
  _tess_heap_park_pages(heap);
}

/* Clean one abandoned heap: collect the remote frees of the pages that
 * received any (they are on its remote_pages) and give back the pages that
 * became empty.  Called before taking a fresh page, so
 * memory exiting threads left behind is reused before new memory is mapped.
 * Never waits for the pool lock. */
void _tess_heap_scavenge_abandoned(void) {
  tess_heap_t* heap = abandoned_pop(false);
  if (heap == NULL) return;
  clean_claimed(heap);
  abandoned_push(heap, false);
}

/* Another thread freed into a page of an abandoned heap.  Every so many
 * such frees, and at the one that brings back the last block the heap held
 * when its thread exited, clean that heap, so the memory of blocks an
 * exited thread left behind goes back to the arena as the program frees
 * them, even if no thread ever allocates again (3,000 threads each leaving
 * one block kept 885 segments mapped after the blocks were freed). */
#define TESS_ABANDONED_FREES_PER_CLEAN 1024

void _tess_heap_note_abandoned_free(tess_heap_t* heap) {
  uint32_t n = atomic_fetch_add_explicit(&heap->abandoned_frees, 1, memory_order_relaxed) + 1;
  if (n % TESS_ABANDONED_FREES_PER_CLEAN != 0 && n != atomic_load_explicit(&heap->abandoned_live, memory_order_relaxed)) {
    /* The first free since the last clean: if no more come, the purger
     * cleans it (a block the program keeps means the count is never met). */
    if (n == atomic_load_explicit(&heap->abandoned_cleaned, memory_order_relaxed) + 1) _tess_purger_notify();
    return;
  }
  /* Claim it: take it off the pool if it is still there.  The last free
   * waits for the pool lock: skipping it would leave the heap's pages in
   * use, with nothing to clean them until some thread takes a fresh page. */
  if (n == atomic_load_explicit(&heap->abandoned_live, memory_order_relaxed)) _tess_lock(&heaps.lock);
  else if (atomic_exchange_explicit(&heaps.lock.held, 1, memory_order_acquire)) return;
  tess_heap_t* prev = NULL;
  tess_heap_t* h = heaps.abandoned_first;
  while (h != NULL && h != heap) {
    prev = h;
    h = h->next;
  }
  if (h != NULL) {
    if (prev != NULL) prev->next = h->next;
    else tess_racy_store(heaps.abandoned_first, h->next);
    if (heaps.abandoned_last == h) heaps.abandoned_last = prev;
    heaps.abandoned_count--;
    h->next = NULL;
  }
  _tess_unlock(&heaps.lock);
  if (h == NULL) return; /* adopted or being cleaned by another thread */
  clean_claimed(h);
  abandoned_push(h, false);
}

/* Abandoned heaps that received frees since they were last cleaned. */
static size_t abandoned_pending(void) {
  size_t n = 0;
  _tess_lock(&heaps.lock);
  for (tess_heap_t* h = heaps.abandoned_first; h != NULL; h = h->next) {
    n += atomic_load_explicit(&h->abandoned_frees, memory_order_relaxed) !=
         atomic_load_explicit(&h->abandoned_cleaned, memory_order_relaxed);
  }
  _tess_unlock(&heaps.lock);
  return n;
}

bool _tess_heap_abandoned_pending(void) { return abandoned_pending() != 0; }

/* Clean every abandoned heap once (trim), or (`pending_only`, the purger)
 * those that received frees since their last clean. */
void _tess_heap_scavenge_all(bool pending_only) {
  _tess_lock(&heaps.lock);
  size_t n = heaps.abandoned_count;
  _tess_unlock(&heaps.lock);
  if (pending_only && abandoned_pending() == 0) return;
  for (size_t i = 0; i < n; i++) {
    tess_heap_t* heap = abandoned_pop(true);
    if (heap == NULL) break;
    if (!pending_only || atomic_load_explicit(&heap->abandoned_frees, memory_order_relaxed) !=
                             atomic_load_explicit(&heap->abandoned_cleaned, memory_order_relaxed)) {
      clean_claimed(heap);
    }
    abandoned_push(heap, false); /* to the back: each is looked at once */
  }
}

/* Bytes in small and medium blocks in use, for mallinfo: exact for this
 * thread's heap and for abandoned heaps (each claimed while it is counted),
 * the bytes of their pages for heaps other live threads are using (their
 * pages cannot be walked from here). */
size_t _tess_heaps_bytes_in_use(void) {
  size_t bytes = 0;
  tess_heap_t* mine = _tess_heap_get();
  if (mine != &_tess_heap_empty) bytes += _tess_heap_in_use(mine, true);
  _tess_lock(&heaps.lock);
  size_t n = heaps.abandoned_count;
  _tess_unlock(&heaps.lock);
  size_t counted_abandoned = 0;
  for (size_t i = 0; i < n; i++) {
    tess_heap_t* heap = abandoned_pop(true);
    if (heap == NULL) break;
    bytes += _tess_heap_in_use(heap, true);
    counted_abandoned += atomic_load_explicit(&heap->page_bytes, memory_order_relaxed);
    abandoned_push(heap, false);
  }
  /* the rest: live heaps of other threads, by their page bytes */
  size_t others = 0;
  for (tess_heap_t* h = atomic_load_explicit(&heaps.all, memory_order_acquire); h != NULL; h = h->next_all) {
    if (h != mine) others += atomic_load_explicit(&h->page_bytes, memory_order_relaxed);
  }
  return bytes + (others > counted_abandoned ? others - counted_abandoned : 0);
}

void _tess_heap_fork_child(void) {
  if (_tess_lock_is_held(&heaps.lock)) {
    size_t count = heaps.count;
    memset(&heaps, 0, sizeof heaps);
    heaps.count = count;
  }
  /* Only the forking thread lives on. */
  atomic_store_explicit(&heaps.active, _tess_heap_tls != &_tess_heap_empty, memory_order_relaxed);
}

size_t _tess_heap_count(void) { return tess_racy_load(heaps.count); }

/* Heaps that live threads hold. */
size_t _tess_heap_active_count(void) { return atomic_load_explicit(&heaps.active, memory_order_relaxed); }
