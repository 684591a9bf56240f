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
  _tess_page_collect(page);
  tess_block_t* lists[2] = {page->free, page->local_free};
  for (int l = 0; l < 2; l++) {
    uint32_t steps = 0;
    for (tess_block_t* x = lists[l]; x != NULL && steps <= page->capacity; x = _tess_link_decode(page, x->next), steps++) {
      if (x == b) return true;
      if ((uintptr_t)x - (uintptr_t)page->start >= page->area) break; /* corrupt link */
    }
  }
  return false;
}

static void check_block_start(tess_page_t* page, const void* p, const char* call) {
  uintptr_t off = (uintptr_t)p - (uintptr_t)page->start;
  if (tess_unlikely(!_tess_is_block_start(page, off))) {
    if (off < (uintptr_t)page->reserved * page->block_size && off % page->block_size == 0) {
      _tess_error(call, p, "invalid pointer (never allocated)");
    }
    _tess_error(call, p, "invalid pointer (not the start of a block)");
  }
}

/* A local free that failed a fast-path check or hit a full page. */
void _tess_free_local_checked(tess_page_t* page, tess_block_t* b, const char* call) {
  check_block_start(page, b, call);
  if (_tess_maybe_double_free(page, b) && block_is_free(page, b)) _tess_error(call, b, "double free");
  tess_heap_t* heap = (tess_heap_t*)(page->heap & ~TESS_HEAP_TAG_FULL);
  int saved = errno;
  if (page->in_full) _tess_page_unfull(heap, page);
  b->next = _tess_link_encode(page, page->local_free);
  page->local_free = b;
  if (--page->used == 0) _tess_page_retire(heap, page);
  errno = saved;
}

/* Push a block onto another thread's page.  If the owner parked the page
 * as full, the first such push also puts the page on the owner's
 * remote_pages stack so the owner looks at it again. */
static void free_remote(tess_page_t* page, tess_block_t* b) {
  uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t state;
  do {
    state = x & TESS_XFREE_STATE_MASK;
    b->next = _tess_link_encode(page, (tess_block_t*)(x & ~TESS_XFREE_STATE_MASK));
  } while (!atomic_compare_exchange_weak_explicit(
      &page->xthread_free, &x, (uintptr_t)b | (state == TESS_XFREE_FULL ? TESS_XFREE_NOTIFIED : state),
      memory_order_release, memory_order_relaxed));
  /* Our block keeps the page alive (used > 0), and NOTIFIED keeps it from
   * being retired until the owner drains it, so page->heap is stable. */
  tess_heap_t* heap = (tess_heap_t*)(page->heap & ~TESS_HEAP_TAG_FULL);
  if (tess_unlikely(heap->state == TESS_HEAP_ABANDONED)) _tess_heap_note_abandoned_free(heap);
  if (state != TESS_XFREE_FULL) return;
  tess_page_t* head = atomic_load_explicit(&heap->remote_pages, memory_order_relaxed);
  do {
    page->remote_next = head;
  } while (!atomic_compare_exchange_weak_explicit(&heap->remote_pages, &head, page, memory_order_release,
                                                  memory_order_relaxed));
}

static void free_large(tess_page_t* page, const void* p, const char* call) {
  if (p != page->start) _tess_error(call, p, "invalid pointer (not the start of a block)");
  atomic_fetch_sub_explicit(&_tess_os.large_bytes, page->block_size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&_tess_os.pages_in_use_bytes, (size_t)page->slice_count << TESS_SLICE_SHIFT,
                            memory_order_relaxed);
  page->used = 0;
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
    _tess_error(call, p, "invalid pointer (not the start of a block)");
  }
  _tess_error(call, p, "invalid pointer (not allocated by tessera)");
}

void _tess_free_generic(void* p, const char* call) {
  /* The common case first: a block of a small or medium page that the fast
   * path did not take because another thread owns the page. */
  if (tess_likely(_tess_segmap_get((uintptr_t)p) == TESS_SEGMAP_NORMAL)) {
    tess_page_t* page = _tess_page_of(_tess_segment_of(p), p);
    if (tess_likely((page->kind == TESS_PAGE_SMALL || page->kind == TESS_PAGE_MEDIUM) &&
                    _tess_is_block_start(page, (uintptr_t)p - (uintptr_t)page->start) &&
                    (page->heap & ~TESS_HEAP_TAG_FULL) != (uintptr_t)_tess_heap_get())) {
      int saved = errno;
      free_remote(page, (tess_block_t*)p);
      errno = saved;
      return;
    }
  }
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
      if ((page->heap & ~TESS_HEAP_TAG_FULL) == (uintptr_t)_tess_heap_get()) {
        _tess_free_local_checked(page, (tess_block_t*)p, call);
      } else {
        free_remote(page, (tess_block_t*)p);
      }
      break;
    }
    case TESS_PAGE_LARGE:
      free_large(page, p, call);
      break;
    case TESS_PAGE_FREE:
    case TESS_PAGE_PURGING:
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
    if (p != page->start) _tess_error(call, p, "invalid pointer (not the start of a block)");
  } else {
    check_block_start(page, p, call);
  }
  return page->block_size;
}

void tess_free(void* p) { _tess_free_inline(p, "free"); }

static void free_sized_checked(void* p, size_t size, const char* call) {
  if (p == NULL) return;
  size_t usable = _tess_usable_size_checked(p, call);
  if (tess_unlikely(size > usable)) {
    char what[96];
    _tess_format(what, sizeof what, "size %zu larger than the block (%zu bytes)", size, usable);
    _tess_error(call, p, what);
  }
  _tess_free_inline(p, call);
}

void tess_free_sized(void* p, size_t size) { free_sized_checked(p, size, "free_sized"); }

void tess_free_aligned_sized(void* p, size_t alignment, size_t size) {
  if (p != NULL && (alignment == 0 || (alignment & (alignment - 1)) != 0 || ((uintptr_t)p & (alignment - 1)) != 0)) {
    _tess_error("free_aligned_sized", p, "invalid alignment for this block");
  }
  free_sized_checked(p, size, "free_aligned_sized");
}
