/* page.c - pages of small and medium blocks: carving blocks lazily, merging
 * the three free lists, moving pages between a heap's queues and its full
 * list, and giving empty pages back to the arena.  This is the slow path of
 * malloc for sizes up to TESS_MEDIUM_MAX.  Every function here runs on the
 * heap's owner thread (or on a thread that has claimed an abandoned heap),
 * so a heap's queues need no lock; only page->xthread_free and
 * heap->remote_pages are shared, and they are changed atomically.
 *
 * The three lists of a page:
 *   free         blocks malloc pops (owner only)
 *   local_free   blocks the owner freed since the last collect (owner only)
 *   xthread_free blocks other threads freed (pushed with CAS, taken with CAS)
 * Separate lists keep the fast paths free of atomics and let the owner take
 * a whole batch of remote frees with one atomic operation.
 */
#include "internal.h"

/* ---- queues ------------------------------------------------------------------ */

tess_page_queue_t* _tess_page_queue_of(tess_heap_t* heap, tess_page_t* page) {
  return page->in_full ? &heap->full : &heap->queues[page->bin];
}

/* heap->direct[i] serves sizes (16(i-1), 16i]; keep the slots of `bin`
 * pointing at the first page of its queue. */
static void direct_update(tess_heap_t* heap, size_t bin) {
  if (_tess_bin_size(bin) > TESS_DIRECT_MAX) return;
  tess_page_t* first = heap->queues[bin].first;
  if (first == NULL) first = &_tess_page_empty;
  size_t lo = bin == 1 ? 0 : _tess_bin_size(bin - 1) / TESS_ALIGN + 1;
  size_t hi = _tess_bin_size(bin) / TESS_ALIGN;
  for (size_t i = lo; i <= hi; i++) heap->direct[i] = first;
}

static void queue_push_front(tess_heap_t* heap, tess_page_queue_t* q, tess_page_t* page) {
  page->prev = NULL;
  page->next = q->first;
  if (q->first) q->first->prev = page;
  else q->last = page;
  q->first = page;
  if (!page->in_full) direct_update(heap, page->bin);
}

static void queue_push_back(tess_heap_t* heap, tess_page_queue_t* q, tess_page_t* page) {
  page->next = NULL;
  page->prev = q->last;
  if (q->last) q->last->next = page;
  else q->first = page;
  q->last = page;
  if (!page->in_full && q->first == page) direct_update(heap, page->bin);
}

void _tess_page_queue_remove(tess_heap_t* heap, tess_page_t* page) {
  tess_page_queue_t* q = _tess_page_queue_of(heap, page);
  bool was_first = q->first == page;
  if (page->prev) page->prev->next = page->next;
  else q->first = page->next;
  if (page->next) page->next->prev = page->prev;
  else q->last = page->prev;
  page->next = page->prev = NULL;
  if (was_first && !page->in_full) direct_update(heap, page->bin);
}

/* ---- a page's life ------------------------------------------------------------ */

static uint64_t next_key(tess_heap_t* heap) {
  uint64_t x = heap->rng; /* xorshift64 */
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  heap->rng = x;
  /* Top bit set: a cleared seal (0) beside any link, a NULL or a pointer
   * (malloc leaves the link), matches no seal state (see _tess_seal_of). */
  return x | ((uint64_t)1 << 63);
}

static void page_init(tess_heap_t* heap, tess_page_t* page, size_t bin, bool is_zero) {
  tess_segment_t* seg = _tess_segment_of(page);
  size_t bsize = _tess_bin_size(bin);
  size_t bytes = (size_t)page->slice_count << TESS_SLICE_SHIFT;
  page->start = _tess_slice_start(seg, page);
  page->reserved = (uint32_t)(bytes / bsize);
  _tess_page_set_blocks(page, bsize, 0); /* never-carved blocks are not blocks */
  page->key = next_key(heap);
  page->bin = (uint8_t)bin;
  page->free = page->local_free = NULL;
  page->used = 0;
  page->in_full = 0;
  page->trim_pending = 0;
  page->is_zero = is_zero;
  atomic_store_explicit(&page->xthread_free, 0, memory_order_relaxed);
  tess_racy_store(page->heap, _tess_page_heap_tagged(page, heap, false));
}

/* Carve the next blocks onto the empty free list: as many as fit in 4 KiB
 * (at least one), so a new page touches memory only as it is used. */
static void page_extend(tess_page_t* page) {
  tess_assert(page->free == NULL && page->capacity < page->reserved);
  size_t bsize = page->block_size;
  size_t n = TESS_OS_PAGE_SIZE / bsize;
  if (n == 0) n = 1;
  if (n > page->reserved - page->capacity) n = page->reserved - page->capacity;
  uint8_t* first = page->start + (size_t)page->capacity * bsize;
  uint8_t* p = first;
  /* Marked free like freed blocks: freeing one that was never handed out
   * is caught as a double free would be. */
  for (size_t i = 0; i + 1 < n; i++, p += bsize) _tess_block_link(page, (tess_block_t*)p, (tess_block_t*)(p + bsize));
  _tess_block_link(page, (tess_block_t*)p, NULL);
  page->free = (tess_block_t*)first;
  _tess_page_set_capacity(page, page->capacity + (uint32_t)n);
}

/* Move other threads' frees and the owner's frees onto the free list. */
void _tess_page_collect(tess_page_t* page) {
  uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  if ((x & ~TESS_XFREE_STATE_MASK) != 0) {
    while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &x, x & TESS_XFREE_STATE_MASK,
                                                  memory_order_acquire, memory_order_relaxed)) {
    }
    tess_block_t* head = (tess_block_t*)(x & ~TESS_XFREE_STATE_MASK);
    tess_block_t* tail = head;
    uint32_t count = 1;
    for (;; tail = tail->next) {
      if (tess_unlikely(!_tess_block_sealed(page, tail))) _tess_block_overwritten("malloc", page, tail);
      if (tail->next == NULL) break;
      /* a block freed twice by other threads makes a cycle here */
      if (++count > page->used) _tess_error("free", tail->next, "double free (detected later, from another thread)");
    }
    if (count > page->used) _tess_error("free", head, "double free (detected later, from another thread)");
    page->used -= count;
    _tess_block_link(page, tail, page->local_free);
    page->local_free = head;
  }
  if (page->free == NULL && page->local_free != NULL) {
    page->free = page->local_free;
    page->local_free = NULL;
  }
}

static uintptr_t xfree_state(tess_page_t* page) {
  return atomic_load_explicit(&page->xthread_free, memory_order_acquire) & TESS_XFREE_STATE_MASK;
}

/* Give an empty page's span back to the arena. */
static void trim_forget(tess_heap_t* heap, tess_page_t* page);

static void page_free(tess_heap_t* heap, tess_page_t* page) {
  tess_assert(page->used == 0 && xfree_state(page) == TESS_XFREE_NORMAL);
  if (page->trim_pending) trim_forget(heap, page);
  _tess_page_queue_remove(heap, page);
  atomic_fetch_sub_explicit(&heap->page_bytes, (size_t)page->slice_count << TESS_SLICE_SHIFT, memory_order_relaxed);
  atomic_fetch_sub_explicit(&_tess_os.pages_in_use_bytes, (size_t)page->slice_count << TESS_SLICE_SHIFT,
                            memory_order_relaxed);
  tess_racy_store(page->heap, 0);
  page->free = page->local_free = NULL;
  _tess_arena_span_free(page);
}

/* A page's last block came back and it is not alone in its queue (see
 * _tess_page_retire).  Keep it if it is still the only page of its class
 * with blocks to give (so a malloc/free loop at a page boundary does not map
 * and unmap); keep it too while other threads' frees may still name it
 * (xthread state not NORMAL: it is, or is about to be, on remote_pages). */
bool _tess_page_retire_queued(tess_heap_t* heap, tess_page_t* page) {
  if (page->in_full) _tess_page_unfull(heap, page);
  if (xfree_state(page) != TESS_XFREE_NORMAL) return true;
  tess_page_queue_t* q = &heap->queues[page->bin];
  if (q->first == page && page->next == NULL) return true;
  page_free(heap, page);
  return false;
}

/* In a program without the purger (single-threaded), a medium page that is
 * mostly free (a quarter of its blocks in use or fewer, or none, kept as
 * its class's last page) gives, once its turn comes (see trim_note), the
 * inside of its free blocks back to the OS: the whole OS pages past their
 * first three words (seal, link, and the mark below), so the lists stay
 * intact and a block handed out again just faults in fresh pages.  One
 * page pinned by one live block then no longer keeps half a MiB resident.
 * A block done is marked in its third word (_tess_mark_trimmed; cleared
 * when it is freed again), so each is given back once.  Owner only.  With
 * the purger (a multi-threaded program) pages are not trimmed: there, a
 * system call per block and the faults to reuse it cost 4-5x on churn
 * (xchurn, leakexit), and madvise must shoot down other CPUs' TLBs. */
static void page_trim(tess_page_t* page) {
  size_t bsize = page->block_size;
  uintptr_t done = _tess_mark_trimmed(page);
  tess_block_t* lists[2] = {page->free, page->local_free};
  int saved = errno;
  for (int l = 0; l < 2; l++) {
    uint32_t steps = 0;
    for (tess_block_t* b = lists[l]; b != NULL && steps <= page->capacity; b = b->next, steps++) {
      if ((uintptr_t)b - (uintptr_t)page->start >= _tess_page_area(page) || !_tess_block_sealed(page, b)) {
        break; /* written after free: malloc reports it */
      }
      uintptr_t* word = (uintptr_t*)b;
      if (word[2] == done) continue;
      uintptr_t lo = ((uintptr_t)(word + 3) + TESS_OS_PAGE_SIZE - 1) & ~(uintptr_t)(TESS_OS_PAGE_SIZE - 1);
      uintptr_t hi = ((uintptr_t)b + bsize) & ~(uintptr_t)(TESS_OS_PAGE_SIZE - 1);
      if (hi > lo) _tess_os_purge((void*)lo, hi - lo);
      word[2] = done;
    }
  }
  errno = saved;
}

/* Sparse medium pages wait on the heap's trim list until the free bytes
 * they hold pass the budget; then the oldest are trimmed down to half of
 * it.  So a page that is soon filled again (churn) is not trimmed and
 * faulted back in, and an idle program keeps at most the budget: 2 MiB,
 * plus what the heap learned.  A trimmed block handed out again
 * (_tess_page_note_trimmed) was needed after all: its size is added to the
 * budget, up to the heap's page bytes and 32 MiB, and the addition fades by
 * half every second.  A program that keeps 100 blocks of 1-64 KiB and
 * replaces one at random took a fault and a madvise every time (1,600 ns
 * an operation against glibc's 250); a program that frees everything and
 * idles never reuses a trimmed block, so it learns nothing. */
#define TESS_TRIM_BUDGET ((size_t)2 << 20)
#define TESS_TRIM_BOOST_MAX ((size_t)32 << 20)

static void trim_boost_decay(tess_heap_t* heap) {
  uint64_t now = _tess_prim_clock_ms();
  if (now - heap->trim_boost_at < 1000) return;
  heap->trim_boost_at = now;
  heap->trim_boost /= 2;
}

void _tess_page_trim_reused(tess_heap_t* heap, tess_page_t* page, void* p) {
  ((uintptr_t*)p)[2] = 0; /* counted once */
  trim_boost_decay(heap);
  size_t most = atomic_load_explicit(&heap->page_bytes, memory_order_relaxed);
  if (most > TESS_TRIM_BOOST_MAX) most = TESS_TRIM_BOOST_MAX;
  if (heap->trim_boost + page->block_size <= most) heap->trim_boost += page->block_size;
}

static void trim_remove(tess_heap_t* heap, size_t i) {
  heap->trim[i].page->trim_pending = 0;
  heap->trim_bytes -= heap->trim[i].bytes;
  heap->trim_count--;
  memmove(&heap->trim[i], &heap->trim[i + 1], (heap->trim_count - i) * sizeof heap->trim[0]);
}

/* The page leaves the heap (or is filled): forget it. */
static void trim_forget(tess_heap_t* heap, tess_page_t* page) {
  for (size_t i = 0; i < heap->trim_count; i++) {
    if (heap->trim[i].page == page) {
      trim_remove(heap, i);
      return;
    }
  }
}

static void trim_oldest(tess_heap_t* heap) {
  tess_page_t* oldest = heap->trim[0].page;
  trim_remove(heap, 0);
  page_trim(oldest);
}

static void trim_note(tess_heap_t* heap, tess_page_t* page) {
  if (page->trim_pending) return;
  if (heap->trim_count == TESS_TRIM_PENDING) trim_oldest(heap);
  size_t bytes = (size_t)(page->capacity - page->used) * page->block_size;
  heap->trim[heap->trim_count].page = page;
  heap->trim[heap->trim_count].bytes = bytes;
  heap->trim_count++;
  heap->trim_bytes += bytes;
  page->trim_pending = 1;
  if (heap->trim_bytes <= TESS_TRIM_BUDGET + heap->trim_boost) return;
  trim_boost_decay(heap);
  size_t budget = TESS_TRIM_BUDGET + heap->trim_boost;
  while (heap->trim_count > 0 && heap->trim_bytes > budget / 2) trim_oldest(heap);
}

/* A sparse medium page, not at the front of its queue (the next allocations
 * of its class come from there, and would fault right back in what it
 * gave): noted for trimming if the purger is not running. */
static TESS_NOINLINE void trim_consider(tess_heap_t* heap, tess_page_t* page) {
  if (!_tess_purger_running()) trim_note(heap, page);
}

static TESS_NOINLINE void page_emptied(tess_heap_t* heap, tess_page_t* page) {
  if (!_tess_page_retire(heap, page)) return; /* given back: its memory may be gone */
  if (page->bin > TESS_BIN_SMALL_LAST && page->prev != NULL) trim_consider(heap, page);
}

/* Free b into its page, which this thread owns (the slow path of free, and
 * frees other threads sent here): back on local_free, counted, an empty
 * page retired, a sparse medium page noted for trimming. */
void _tess_page_free_block(tess_heap_t* heap, tess_page_t* page, tess_block_t* b) {
  bool medium = page->bin > TESS_BIN_SMALL_LAST;
  if (medium) ((uintptr_t*)b)[2] = 0; /* resident again: not trimmed */
  _tess_block_push(page, &page->local_free, b);
  /* Every call out is a tail call, so the common case saves no registers. */
  if (tess_unlikely(--page->used == 0)) {
    page_emptied(heap, page);
  } else if (medium && (size_t)page->used * 4 <= page->capacity && page->prev != NULL) {
    trim_consider(heap, page);
  }
}

/* The page has no free block: park it on the full list, where mallocs do
 * not look, and ask the next remote free to tell us (state FULL).  Fails,
 * returning false, if remote frees arrived meanwhile. */
static bool page_mark_full(tess_heap_t* heap, tess_page_t* page) {
  uintptr_t expect = TESS_XFREE_NORMAL;
  if (!atomic_compare_exchange_strong_explicit(&page->xthread_free, &expect, TESS_XFREE_FULL,
                                               memory_order_acq_rel, memory_order_relaxed)) {
    return false;
  }
  _tess_page_queue_remove(heap, page);
  page->in_full = 1;
  tess_racy_store(page->heap, _tess_page_heap_tagged(page, heap, true));
  queue_push_back(heap, &heap->full, page);
  return true;
}

/* Back from the full list to its class queue. */
void _tess_page_unfull(tess_heap_t* heap, tess_page_t* page) {
  tess_assert(page->in_full);
  _tess_page_queue_remove(heap, page);
  page->in_full = 0;
  tess_racy_store(page->heap, _tess_page_heap_tagged(page, heap, false));
  uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  while ((x & TESS_XFREE_STATE_MASK) == TESS_XFREE_FULL &&
         !atomic_compare_exchange_weak_explicit(&page->xthread_free, &x, x & ~TESS_XFREE_STATE_MASK,
                                                memory_order_acq_rel, memory_order_relaxed)) {
  }
  queue_push_back(heap, &heap->queues[page->bin], page);
}

/* ---- the slow path of malloc ------------------------------------------------------ */

/* A page of `bin` with a free block at the front of its queue, or NULL. */
static tess_page_t* queue_find_free(tess_heap_t* heap, size_t bin) {
  tess_page_queue_t* q = &heap->queues[bin];
  tess_page_t* page = q->first;
  while (page != NULL) {
    tess_page_t* next = page->next;
    _tess_page_collect(page);
    if (page->free == NULL && page->capacity < page->reserved) page_extend(page);
    if (page->free != NULL) {
      if (q->first != page) {
        _tess_page_queue_remove(heap, page);
        queue_push_front(heap, q, page);
      }
      return page;
    }
    if (!page_mark_full(heap, page) &&
        (atomic_load_explicit(&page->xthread_free, memory_order_acquire) & ~TESS_XFREE_STATE_MASK) != 0) {
      continue; /* remote frees arrived meanwhile: take them */
    }
    /* else full; or on its way to remote_pages (NOTIFIED): left in the
     * queue until the drain puts it right */
    page = next;
  }
  return NULL;
}

/* Slices for a page of `bin`: one for small blocks; for medium blocks
 * enough for about TESS_MEDIUM_PAGE_BLOCKS of them, so one long-lived block
 * pins that much memory, not a fixed 512 KiB. */
static size_t page_slices(size_t bin) {
  if (bin <= TESS_BIN_SMALL_LAST) return 1;
  size_t bytes = _tess_bin_size(bin) * TESS_MEDIUM_PAGE_BLOCKS;
  size_t slices = (bytes + TESS_SLICE_SIZE - 1) >> TESS_SLICE_SHIFT;
  return slices < TESS_MEDIUM_PAGE_SLICES ? slices : TESS_MEDIUM_PAGE_SLICES;
}

static tess_page_t* page_fresh(tess_heap_t* heap, size_t bin) {
  bool small = bin <= TESS_BIN_SMALL_LAST;
  size_t slices = page_slices(bin);
  bool is_zero;
  tess_page_t* page = _tess_arena_span_alloc(slices, small ? TESS_PAGE_SMALL : TESS_PAGE_MEDIUM, &is_zero);
  if (page == NULL) return NULL;
  page_init(heap, page, bin, is_zero);
  atomic_fetch_add_explicit(&heap->page_bytes, slices << TESS_SLICE_SHIFT, memory_order_relaxed);
  _tess_os_in_use_add(slices << TESS_SLICE_SHIFT);
  page_extend(page);
  queue_push_front(heap, &heap->queues[bin], page);
  return page;
}

/* malloc for a small or medium size when the fast path found no block. */
void* _tess_page_malloc_slow(tess_heap_t* heap, size_t size) {
  size_t bin = _tess_bin(size);
  tess_assert(bin <= TESS_BIN_MEDIUM_LAST);
#if TESS_DEBUG >= 3
  static __thread unsigned walks;
  if (walks++ % 64 == 0) {
    tess_assert(_tess_heap_is_valid(heap));
    tess_assert(_tess_arena_is_valid());
  }
#endif
  if (++heap->window_mallocs == TESS_FOREIGN_WINDOW) { /* see foreign_keep */
    heap->keep_off = heap->window_remote < TESS_FOREIGN_WINDOW;
    heap->window_mallocs = heap->window_remote = 0;
  }
  if (heap->foreign_count != 0 && heap->foreign[bin] != NULL) return _tess_heap_foreign_take(heap, bin);
  if (atomic_load_explicit(&heap->remote_pages, memory_order_relaxed) != NULL ||
      atomic_load_explicit(&heap->inbox, memory_order_relaxed) != NULL) {
    _tess_heap_drain_remote(heap);
  }
  tess_page_t* page = queue_find_free(heap, bin);
  if (page == NULL) {
    /* About to take memory from the arena: first hand back the frees this
     * thread buffered for others, let time-based purging run, and reclaim
     * what exited threads left behind. */
    if (heap->remote_count != 0) _tess_heap_flush_remote(heap);
    _tess_arena_maybe_purge();
    _tess_heap_scavenge_abandoned();
    page = page_fresh(heap, bin);
    if (page == NULL) return NULL;
  }
  void* p = _tess_page_take(page, page->free);
  _tess_page_note_trimmed(heap, page, p);
  return p;
}

/* Collect every page of the heap and give the empty ones back; with
 * `all_empty`, also the last empty page of each class (thread exit, trim). */
void _tess_heap_release_pages(tess_heap_t* heap, bool all_empty) {
  _tess_heap_drain_remote(heap);
  tess_page_t* page;
  tess_page_t* next;
  for (page = heap->full.first; page != NULL; page = next) {
    next = page->next;
    _tess_page_collect(page);
    if (page->free != NULL || page->local_free != NULL) _tess_page_unfull(heap, page);
  }
  for (size_t bin = 1; bin <= TESS_BIN_MEDIUM_LAST; bin++) {
    for (page = heap->queues[bin].first; page != NULL; page = next) {
      next = page->next;
      _tess_page_collect(page);
      if (page->used != 0 || xfree_state(page) != TESS_XFREE_NORMAL) continue;
      tess_page_queue_t* q = &heap->queues[bin];
      if (!all_empty && q->first == page && page->next == NULL) continue;
      page_free(heap, page);
    }
  }
}

/* A heap whose thread exited: give back its empty pages and park the others
 * on the full list with state FULL, so that the next free another thread
 * makes into one of them puts that page on remote_pages.  Cleaning the heap
 * later then looks only at pages that received frees. */
void _tess_heap_park_pages(tess_heap_t* heap) {
  _tess_heap_drain_remote(heap);
  for (size_t bin = 1; bin <= TESS_BIN_MEDIUM_LAST; bin++) {
    tess_page_t* next;
    for (tess_page_t* page = heap->queues[bin].first; page != NULL; page = next) {
      next = page->next;
      for (;;) {
        _tess_page_collect(page);
        if (page->used == 0 && xfree_state(page) == TESS_XFREE_NORMAL) {
          page_free(heap, page);
          break;
        }
        if (page_mark_full(heap, page)) break;
        if ((atomic_load_explicit(&page->xthread_free, memory_order_acquire) & ~TESS_XFREE_STATE_MASK) == 0) {
          break; /* NOTIFIED: on remote_pages already; the next clean sees it */
        }
      }
    }
  }
}

/* A heap being adopted by a new thread: every parked page back in its queue,
 * so the new owner allocates from them before taking fresh pages. */
void _tess_heap_unpark_pages(tess_heap_t* heap) {
  _tess_heap_drain_remote(heap);
  tess_page_t* page;
  while ((page = heap->full.first) != NULL) {
    _tess_page_collect(page);
    _tess_page_unfull(heap, page);
  }
}

/* Blocks handed out from the heap's pages, or (`bytes`) the bytes in them;
 * blocks freed by other threads and not yet received count as in use.
 * Owner only. */
size_t _tess_heap_in_use(tess_heap_t* heap, bool bytes) {
  size_t n = 0;
  for (size_t bin = 1; bin <= TESS_BIN_MEDIUM_LAST; bin++) {
    for (tess_page_t* p = heap->queues[bin].first; p != NULL; p = p->next) n += (size_t)p->used * (bytes ? p->block_size : 1);
  }
  for (tess_page_t* p = heap->full.first; p != NULL; p = p->next) n += (size_t)p->used * (bytes ? p->block_size : 1);
  return n;
}
