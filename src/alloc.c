/* alloc.c - the allocating half of the tess_ API: malloc beyond its fast
 * path (alloc_inline.h), calloc, realloc, the aligned allocations and the
 * usable size.  Every failure returns NULL with errno set; none crashes. */
#include "alloc_inline.h"

void* _tess_fail_enomem(void) {
  errno = ENOMEM;
  return NULL;
}

/* Blocks of up to TESS_MEDIUM_MAX come from the heap's pages, up to
 * TESS_LARGE_MAX from a span of their own, above that from a mapping of
 * their own.  `zero` asks for zeroed memory (calloc): the whole block, its
 * usable size and not only what was asked, as glibc's calloc clears the
 * whole chunk (a program may take malloc_usable_size as zeroed room, and
 * the bytes past the request would otherwise show a freed block's data,
 * or the free-list link its first words held). */
/* A malloc on a thread past its exit (see heap.c): from a heap lent for
 * the call. */
static TESS_NOINLINE void* malloc_after_exit(size_t size, bool zero, size_t alignment) {
  tess_heap_t* heap = _tess_heap_lend();
  if (heap == NULL) return _tess_fail_enomem();
  void* p = alignment == 0 ? _tess_malloc_generic(size, zero) : _tess_aligned_generic(alignment, size, zero);
  _tess_heap_return(heap); /* keeps errno */
  return p;
}

/* Under an address-space limit (RLIMIT_AS) a large block gets a mapping of
 * its own, the size of the block, as a huge one does: in 4 MiB segments
 * (63 slices after the header) a 1 MiB block took 1.33 MiB of the limit
 * (three to a segment) and a 2 MB one 4 MiB, so under a 500 MB limit 348
 * blocks of 1 MiB fitted, and 116 of 2 MB, where glibc fits 495 and 260.
 * A mapping per block costs an mmap and a munmap each; only there. */
static bool large_own_mapping(void) { return _tess_address_space_limited(); }

void* _tess_malloc_generic(size_t size, bool zero) {
  tess_heap_t* heap = _tess_heap_get();
  if (tess_unlikely(heap == &_tess_heap_empty)) {
    if (_tess_heap_thread_exited()) return malloc_after_exit(size, zero, 0);
    heap = _tess_heap_init_thread();
    if (heap == NULL) return _tess_fail_enomem();
  }
  void* p;
  if (size <= TESS_MEDIUM_MAX) {
    /* A second fast path for sizes above the direct table. */
    tess_page_t* page = heap->queues[_tess_bin(size)].first;
    if (page != NULL && page->free != NULL) {
      p = _tess_page_take(page, page->free);
      _tess_page_note_trimmed(heap, page, p);
    } else {
      p = _tess_page_malloc_slow(heap, size);
      if (p == NULL) return _tess_fail_enomem();
    }
    if (zero) memset(p, 0, _tess_bin_size(_tess_bin(size))); /* its page's block size */
    return p;
  }
  if (size <= TESS_LARGE_MAX) {
    /* (a mapping refused, say past vm.max_map_count, may still leave room
     * in the segments) */
    if (large_own_mapping() && (p = _tess_huge_alloc(size, 0, zero)) != NULL) return p;
    p = _tess_arena_large_alloc(size, 0);
    if (p == NULL) return _tess_fail_enomem();
    if (zero) {
      tess_page_t* page = _tess_page_of(_tess_segment_of(p), p);
      if (!page->is_zero) memset(p, 0, page->block_size);
    }
    return p;
  }
  if (size > PTRDIFF_MAX) return _tess_fail_enomem();
  p = _tess_huge_alloc(size, 0, zero);
  return p != NULL ? p : _tess_fail_enomem();
}

void* tess_malloc(size_t size) { return _tess_malloc_inline(size); }

void* tess_calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return _tess_fail_enomem();
  if (total <= TESS_DIRECT_MAX) { /* malloc's fast path, clearing the whole block */
    tess_page_t* page = _tess_heap_get()->direct[(total + TESS_ALIGN - 1) / TESS_ALIGN];
    tess_block_t* block = page->free;
    if (tess_likely(block != NULL)) return memset(_tess_page_take(page, block), 0, page->block_size);
  }
  return _tess_malloc_generic(total, true);
}

/* Alignments above 16: a size class whose block size is a multiple of the
 * alignment gives aligned blocks, because every page starts on a 64 KiB
 * boundary; beyond 64 KiB alignment, or beyond large sizes, a huge block
 * placed at the alignment within its own mapping. */
void* _tess_aligned_generic(size_t alignment, size_t size, bool zero) {
  if (alignment <= TESS_ALIGN) return zero ? tess_calloc(1, size) : _tess_malloc_inline(size);
  if (size > PTRDIFF_MAX) return _tess_fail_enomem();
  if (alignment <= TESS_SLICE_SIZE) {
    size_t want = size > alignment ? size : alignment;
    if (want <= TESS_LARGE_MAX) {
      size_t bin = _tess_bin(want);
      while (_tess_bin_size(bin) % alignment != 0) bin++;
      size_t bsize = _tess_bin_size(bin);
      if (bsize <= TESS_LARGE_MAX) {
        void* p = zero ? tess_calloc(1, bsize) : _tess_malloc_inline(bsize);
        tess_assert(p == NULL || ((uintptr_t)p & (alignment - 1)) == 0);
        return p;
      }
    }
  }
  if (tess_unlikely(_tess_heap_get() == &_tess_heap_empty)) {
    if (_tess_heap_thread_exited()) return malloc_after_exit(size, zero, alignment);
    if (_tess_heap_init_thread() == NULL) return _tess_fail_enomem();
  }
  /* Up to 2 MiB: a large block on an aligned slice of a segment, if both
   * fit in one (a block of a few bytes takes the smallest large class);
   * under an address-space limit a mapping of its own first. */
  size_t want = size > TESS_MEDIUM_MAX ? size : TESS_MEDIUM_MAX + 1;
  bool fits = _tess_arena_large_aligned_fits(want, alignment);
  if (!fits || large_own_mapping()) {
    void* p = _tess_huge_alloc(size, alignment, zero);
    if (p != NULL) return p;
    if (!fits) return _tess_fail_enomem();
  }
  void* p = _tess_arena_large_alloc(want, alignment);
  if (p == NULL) return _tess_fail_enomem();
  tess_assert(((uintptr_t)p & (alignment - 1)) == 0);
  if (zero) {
    tess_page_t* page = _tess_page_of(_tess_segment_of(p), p);
    if (!page->is_zero) memset(p, 0, page->block_size);
  }
  return p;
}

static bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void* tess_aligned_alloc(size_t alignment, size_t size) {
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return _tess_aligned_generic(alignment, size, false);
}

int tess_posix_memalign(void** out, size_t alignment, size_t size) {
  if (!is_power_of_two(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  void* p = _tess_aligned_generic(alignment, size, false);
  if (p == NULL) return ENOMEM; /* errno is ENOMEM too, as glibc leaves it */
  *out = p;
  return 0;
}

/* The usable size of p, validated: inline for the common small and medium
 * blocks in use, everything else (a block with a seal, which may be free,
 * and every report) through the full check. */
static inline size_t usable_size_inline(const void* p, const char* call) {
  if (tess_likely(_tess_segmap_get((uintptr_t)p) == TESS_SEGMAP_NORMAL)) {
    tess_page_t* page = _tess_page_of(_tess_segment_of(p), p);
    if (tess_likely((page->kind == TESS_PAGE_SMALL || page->kind == TESS_PAGE_MEDIUM) &&
                    _tess_is_block_start(page, (uintptr_t)p - (uintptr_t)page->start) &&
                    !_tess_maybe_double_free(page, p))) {
      return page->block_size;
    }
  }
  return _tess_usable_size_checked(p, call);
}

/* Some programs call this on every allocation and free (Ruby's GC does, to
 * count its malloc'd bytes): the inline path first. */
size_t tess_usable_size(const void* p) {
  if (p == NULL) return 0;
  return usable_size_inline(p, "malloc_usable_size");
}

/* A large block of at least this much that must move (to grow past what
 * its span can give, or into a huge one) gives its pages back as they are
 * copied, in steps of TESS_MOVE_STEP, when its span would be purged as
 * soon as it is freed anyway (over the allowance of free memory: a small
 * or single-threaded program): the move then does not hold both copies at
 * once.  barnes' cell pool moving from 1.7 MB to 3.4 MB had put the peak
 * RSS 1.1 MB above glibc's, which moves mmapped chunks with mremap.  When
 * the span would stay free and resident instead, the next block to take
 * it finds its pages there, so they are left alone (a program rebuilding
 * a 3 MB buffer again and again, with the purger: 128,000 faults instead
 * of 1,800). */
#define TESS_MOVE_RELEASE_MIN ((size_t)1 << 20)
#define TESS_MOVE_STEP ((size_t)256 << 10)

static void move_bytes(void* q, void* p, size_t keep, size_t usable) {
  if (usable <= TESS_MEDIUM_MAX || usable > TESS_LARGE_MAX || keep < TESS_MOVE_RELEASE_MIN ||
      !_tess_arena_over_allowance(usable)) {
    memcpy(q, p, keep);
    return;
  }
  uint8_t* src = p; /* a large block: at the start of its span */
  tess_assert(((uintptr_t)src & (TESS_OS_PAGE_SIZE - 1)) == 0);
  /* The first page stays: free reads the block's first words. */
  uintptr_t released = (uintptr_t)src + TESS_OS_PAGE_SIZE;
  for (size_t done = 0; done < keep;) {
    size_t n = keep - done < TESS_MOVE_STEP ? keep - done : TESS_MOVE_STEP;
    memcpy((uint8_t*)q + done, src + done, n);
    done += n;
    uintptr_t copied = ((uintptr_t)src + done) & ~(uintptr_t)(TESS_OS_PAGE_SIZE - 1);
    if (copied > released) {
      _tess_os_purge((void*)released, copied - released);
      released = copied;
    }
  }
}

/* Stay in place when the new size fits and wastes at most half the block
 * (a huge block also when it grows within its room, see
 * _tess_huge_realloc); resize large blocks in place when their neighbour
 * allows and huge ones with mremap; otherwise move, copying every usable byte that fits
 * (programs treat the usable size as capacity).  A small or medium block
 * that must move to grow gets a quarter more room than asked: a string or
 * array grown a few bytes at a time then moves half as often as the fine
 * size classes alone would make it. */
static void* realloc_checked(void* p, size_t size, const char* call) {
  if (p == NULL) return _tess_malloc_inline(size);
  size_t usable = usable_size_inline(p, call);
  if (size == 0) {
    _tess_free_inline(p, call); /* as glibc: free, and return NULL */
    return NULL;
  }
  if (size > PTRDIFF_MAX) return _tess_fail_enomem();
  if (usable > TESS_LARGE_MAX && size > TESS_LARGE_MAX) {
    tess_segment_t* seg = _tess_huge_segment_of(p, _tess_segmap_get((uintptr_t)p));
    if (seg != NULL) {
      void* q = _tess_huge_realloc(seg, size);
      if (q != NULL) return q;
    }
  }
  if (size <= usable && size >= usable / 2) return p;
  if (usable > TESS_MEDIUM_MAX && usable <= TESS_LARGE_MAX && size > TESS_MEDIUM_MAX && size <= TESS_LARGE_MAX &&
      _tess_segmap_get((uintptr_t)p) == TESS_SEGMAP_NORMAL) {
    /* large to large: grow into the free span after it, or shrink (not a
     * huge block that only its alignment made huge: its usable size can
     * be a large one's too) */
    tess_page_t* page = _tess_page_of(_tess_segment_of(p), p);
    if (_tess_arena_large_resize(page, size)) return p;
  }
  void* q = NULL;
  if (size > usable && size <= TESS_MEDIUM_MAX) q = _tess_malloc_inline(size + size / 4);
  if (q == NULL) {
    q = _tess_malloc_inline(size);
    if (q == NULL) return NULL; /* errno is ENOMEM; p is untouched */
  }
  /* Growing: all of the old block fits.  Shrinking (below half): keep what
   * the new block can hold, its usable size (a huge one's is not its size
   * class's: an aligned huge block shrunk to 3 MB once copied 143 KB past
   * the end of its new mapping). */
  size_t keep = size > usable ? usable : usable_size_inline(q, call);
  if (keep > usable) keep = usable;
  move_bytes(q, p, keep, usable);
  _tess_free_inline(p, call);
  return q;
}

void* tess_realloc(void* p, size_t size) { return realloc_checked(p, size, "realloc"); }

void* tess_reallocarray(void* p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return _tess_fail_enomem();
  return realloc_checked(p, total, "reallocarray");
}
