/* huge.c - huge blocks: each in a mapping of its own (a huge segment),
 * given back with munmap, and resized with mremap.
 *
 * A huge segment: a header (the segment fields and one page descriptor),
 * then the block at offset max(256, alignment).  When that offset is 4 MiB
 * or more, the segment-map byte of the block's own 4 MiB says how far back
 * the header is.
 *
 *   seg (4 MiB aligned)  seg + 256 (or + alignment)
 *   | header | block .......................................... |
 *
 * Freed huge blocks whose header is in their first 4 MiB (any alignment
 * below that) are kept, resident, in a small cache for the purge delay,
 * and the next huge allocation, calloc and aligned ones included, reuses
 * one (see huge_from_cache): a program that allocates and frees big
 * buffers in turn neither maps nor faults in fresh memory every time.
 * The purger unmaps what has waited out the delay; without it the next
 * allocator calls do, after twenty delays (see _tess_huge_cache_purge);
 * huge_cache_cap says how much is kept.  The cache has its own leaf lock;
 * no system call is made while it is held.
 *
 * With TESSERA_HUGEPAGES=1 (off by default), a huge mapping of 4 MiB or
 * more (two huge pages; see _tess_huge_alloc) asks the kernel for
 * transparent huge pages (MADV_HUGEPAGE; honoured when the system's THP mode
 * is "madvise" or "always"): a program filling a 20 MiB buffer then takes
 * about 10 faults instead of 5,000.  Off by default because a huge-page
 * fault can cost far more than the 512 small ones it replaces (the kernel
 * may compact memory first, and a virtual machine's host may back the
 * 2 MiB on first touch): on the machine tessera is measured on, sort -S
 * 500M spent 0.6 s instead of 0.1 s in the kernel, in every run.  The
 * price is also RSS in 2 MiB steps for a buffer touched sparsely (but not
 * for the partial 2 MiB at its end).
 */
#include "internal.h"

/* Where a plain huge block starts: right after the header, in the same OS
 * page, so the page holding the block's start also holds what free needs
 * (a program that remaps the pages around its buffer keeps it, as with
 * glibc, whose header sits just before the block). */
#define TESS_HUGE_OFFSET ((size_t)256)
_Static_assert(offsetof(tess_segment_t, slices) + sizeof(tess_page_t) <= TESS_HUGE_OFFSET,
               "a huge block's header fits before it");

#define TESS_HUGE_CACHE_SLOTS 32
#define TESS_HUGE_CACHE_MAX ((size_t)64 << 20)

static struct {
  tess_lock_t lock;
  size_t count;
  size_t bytes;
  tess_segment_t* seg[TESS_HUGE_CACHE_SLOTS]; /* oldest first */
  uint64_t freed_at[TESS_HUGE_CACHE_SLOTS];
  _Atomic(uint64_t) expired_at; /* last unmapping of one for its age */
} cache;

static size_t huge_total(size_t offset, size_t size) {
  return (offset + size + TESS_OS_PAGE_SIZE - 1) & ~(size_t)(TESS_OS_PAGE_SIZE - 1);
}

/* Point a (fresh or moved) huge segment's header at a block of `total`. */
static void huge_setup(tess_segment_t* seg, size_t total, size_t offset) {
  seg->kind = TESS_SEGMENT_HUGE;
  seg->mapped = total;
  seg->map_base = (uint8_t*)seg;
  seg->huge_size = total - offset;
  tess_page_t* page = &seg->slices[0];
  page->kind = TESS_PAGE_HUGE;
  page->start = (uint8_t*)seg + offset;
  page->used = 1;
}

/* Resize the mapping of seg (a plain huge block) to `total` bytes: in
 * place when the address space allows, else moved without copying to a
 * fresh aligned range, its segment-map entry moved along.  Returns the
 * (possibly moved) segment or NULL, in which case seg is untouched. */
static tess_segment_t* huge_remap(tess_segment_t* seg, size_t total) {
  size_t old = seg->mapped;
  if (total == old) return seg;
  if (_tess_prim_remap(seg, old, total, NULL, false) == 0) {
    atomic_fetch_add_explicit(&_tess_os.mapped, total - old, memory_order_relaxed);
    return seg;
  }
  uint8_t* base;
  size_t mapped;
  tess_segment_t* dest = _tess_os_map_aligned(total, TESS_SEGMENT_SIZE, &base, &mapped);
  if (dest == NULL) return NULL;
  /* The move gives the old range back to the kernel, and another thread
   * may map it at once and mark it in the segment map: the old entry is
   * cleared before, never after (clearing it after erased a new block's
   * entry, which then passed for "not allocated by tessera"). */
  _tess_segmap_set((uintptr_t)seg, TESS_SEGMAP_NONE);
  if (_tess_prim_remap(seg, old, total, dest, true) != 0) {
    _tess_segmap_set((uintptr_t)seg, TESS_SEGMAP_HUGE);
    _tess_os_unmap(dest, total);
    return NULL;
  }
  _tess_segmap_set((uintptr_t)dest, TESS_SEGMAP_HUGE);
  /* The old range is gone, its pages now live at dest. */
  atomic_fetch_sub_explicit(&_tess_os.mapped, old, memory_order_relaxed);
  return dest;
}

/* huge_remap, with the committed bytes kept in step: the header is then
 * set up by the caller. */
static tess_segment_t* huge_resize(tess_segment_t* seg, size_t total) {
  size_t old = seg->mapped;
  tess_segment_t* dest = huge_remap(seg, total);
  if (dest == NULL) return NULL;
  if (total > old) _tess_os_committed_add(total - old);
  else _tess_os_committed_sub(old - total);
  dest->mapped = total;
  return dest;
}

static void huge_unmap(tess_segment_t* seg) {
  size_t offset = (size_t)(seg->slices[0].start - (uint8_t*)seg);
  if (offset >= TESS_SEGMENT_SIZE) _tess_segmap_set((uintptr_t)seg->slices[0].start, TESS_SEGMAP_NONE);
  _tess_segmap_set((uintptr_t)seg, TESS_SEGMAP_NONE);
  _tess_os_committed_sub(seg->mapped);
  _tess_os_unmap(seg->map_base, seg->mapped);
}

/* Add a free huge segment to the cache (the caller made room).  Its page
 * says FREE, whatever resizing it went through on the way, so that a
 * second free of the block is refused rather than caching it twice. */
static void cache_put(tess_segment_t* seg, uint64_t freed_at) {
  seg->slices[0].kind = TESS_PAGE_FREE;
  size_t i = cache.count;
  tess_racy_store(cache.count, i + 1);
  while (i > 0 && cache.freed_at[i - 1] > freed_at) { /* keep oldest first */
    cache.seg[i] = cache.seg[i - 1];
    cache.freed_at[i] = cache.freed_at[i - 1];
    i--;
  }
  cache.seg[i] = seg;
  cache.freed_at[i] = freed_at;
  cache.bytes += seg->mapped;
}

static void cache_take(size_t i) {
  cache.bytes -= cache.seg[i]->mapped;
  tess_racy_store(cache.count, cache.count - 1);
  memmove(&cache.seg[i], &cache.seg[i + 1], (cache.count - i) * sizeof cache.seg[0]);
  memmove(&cache.freed_at[i], &cache.freed_at[i + 1], (cache.count - i) * sizeof cache.freed_at[0]);
}

/* Zero whole OS pages by giving them back (read as zeros after), or by
 * writing them if the OS refuses. */
static void pages_drop(uint8_t* p, size_t n) {
  if (_tess_prim_purge(p, n) != 0) memset(p, 0, n);
}

/* A cached huge segment for a block of `total` bytes: the smallest that
 * fits, else the largest, grown with mremap.  One that fits is reused whole
 * (its usable size is then larger than asked), so a program cycling buffers
 * of varying sizes keeps their pages resident for the next big one instead
 * of faulting them in again (shrinking every reused block made the suite's
 * large, 5-25 MiB buffers in rotation, 18x slower).  But no block keeps
 * more than 32 MiB it was not asked for: one more than that bigger is
 * shrunk in place first, so its resident tail goes back to the OS instead
 * of staying pinned behind a long-lived smaller block (sort frees its 100
 * MB buffer and then allocates 26 MB merge buffers: reused whole, the
 * first kept 38 MB more resident than glibc for the whole merge).
 * *reused says how many bytes of the block were the cached block's (what
 * mremap added after them is fresh, and zero). */
static void* huge_from_cache(size_t total, size_t offset, size_t* reused) {
  if (tess_racy_load(cache.count) == 0) return NULL; /* a hint */
  _tess_lock(&cache.lock);
  if (cache.count == 0) {
    _tess_unlock(&cache.lock);
    return NULL;
  }
  size_t best = SIZE_MAX, largest = 0;
  for (size_t i = 0; i < cache.count; i++) {
    size_t m = cache.seg[i]->mapped;
    if (m >= total && (best == SIZE_MAX || m < cache.seg[best]->mapped)) best = i;
    if (m > cache.seg[largest]->mapped) largest = i;
  }
  size_t i = best != SIZE_MAX ? best : largest;
  tess_segment_t* seg = cache.seg[i];
  cache_take(i);
  _tess_unlock(&cache.lock);
  if (tess_unlikely(!_tess_freed_seal_intact(seg->slices[0].start))) _tess_freed_overwritten(seg->slices[0].start);
  size_t old = seg->mapped;
  size_t was_at = (size_t)(seg->slices[0].start - (uint8_t*)seg); /* the cached block's offset */
  *reused = old - offset; /* old > offset: the block was bigger than a large one */
  if (old < total || old - total > TESS_HUGE_CACHE_MAX / 2) {
    tess_segment_t* dest = huge_resize(seg, total);
    if (dest == NULL) {
      huge_unmap(seg);
      return NULL;
    }
    seg = dest;
  } else {
    total = old; /* the rest stays with the block */
  }
  huge_setup(seg, total, offset);
  /* A block placed further in (an alignment) leaves the cached block's
   * first pages before it, in no block: give them back, or each such block
   * pins them (x264's memalign(2 MiB) on ffmpeg's freed 2.7 MB frames:
   * 2 MiB each, 80 MB in all). */
  if (offset > was_at) {
    uint8_t* from = (uint8_t*)seg + ((was_at + TESS_OS_PAGE_SIZE - 1) & ~(size_t)(TESS_OS_PAGE_SIZE - 1));
    uint8_t* to = (uint8_t*)seg + (offset & ~(size_t)(TESS_OS_PAGE_SIZE - 1));
    if (to > from) pages_drop(from, (size_t)(to - from));
  }
  atomic_fetch_add_explicit(&_tess_os.huge_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_tess_os.huge_bytes, total, memory_order_relaxed);
  return seg->slices[0].start;
}

/* Does a huge block at `offset` with `usable` bytes go through the cache?
 * Its header must be in its first 4 MiB (then a cached segment, 4 MiB
 * aligned, holds any such alignment), and it must be huge for its size, not
 * only for an alignment beyond 64 KiB: a 200 KB block taking a 30 MiB
 * cached one whole would pin it all, and caching such small ones would
 * crowd the big ones out. */
static bool huge_cacheable(size_t offset, size_t usable) {
  return offset < TESS_SEGMENT_SIZE && usable > TESS_LARGE_MAX;
}

/* calloc on reused memory: clear the n bytes at p, but write only the
 * pages that are resident and drop the others (MADV_DONTNEED: a page
 * swapped out would otherwise come back with its old bytes).  So a
 * program that callocs a big table and touches little of it, again and
 * again (mimalloc's test_perf3: 16 GiB five times), neither pays for nor
 * keeps resident what it never touched. */
static void huge_clear(uint8_t* p, size_t n) {
  enum { CHUNK_PAGES = 4096 }; /* 16 MiB per residency query */
  unsigned char vec[CHUNK_PAGES];
  uint8_t* end = p + n;
  uint8_t* first = (uint8_t*)(((uintptr_t)p + TESS_OS_PAGE_SIZE - 1) & ~(uintptr_t)(TESS_OS_PAGE_SIZE - 1));
  uint8_t* last = (uint8_t*)((uintptr_t)end & ~(uintptr_t)(TESS_OS_PAGE_SIZE - 1));
  if (first >= last) {
    memset(p, 0, n);
    return;
  }
  memset(p, 0, (size_t)(first - p)); /* the partial pages at both ends */
  memset(last, 0, (size_t)(end - last));
  for (uint8_t* c = first; c < last; c += (size_t)CHUNK_PAGES * TESS_OS_PAGE_SIZE) {
    size_t pages = (size_t)(last - c) / TESS_OS_PAGE_SIZE;
    if (pages > CHUNK_PAGES) pages = CHUNK_PAGES;
    if (_tess_prim_resident(c, pages * TESS_OS_PAGE_SIZE, vec) != 0) {
      memset(c, 0, pages * TESS_OS_PAGE_SIZE);
      continue;
    }
    for (size_t i = 0; i < pages;) {
      size_t j = i + 1;
      while (j < pages && (vec[j] & 1) == (vec[i] & 1)) j++;
      uint8_t* run = c + i * TESS_OS_PAGE_SIZE;
      size_t len = (j - i) * TESS_OS_PAGE_SIZE;
      if ((vec[i] & 1) != 0) memset(run, 0, len);
      else pages_drop(run, len);
      i = j;
    }
  }
}

void* _tess_huge_alloc(size_t size, size_t alignment, bool zero) {
  /* A block of 0 bytes still needs one inside its mapping: at `offset` with
   * nothing after it, it would start where the mapping ends, on memory
   * that is not its own (and its segment-map byte, with an alignment of 4
   * MiB or more, on the next segment's). */
  if (size == 0) size = 1;
  size_t offset = alignment > TESS_HUGE_OFFSET ? alignment : TESS_HUGE_OFFSET;
  size_t back = offset >> TESS_SEGMENT_SHIFT; /* segments from header to block: 0 or 2^k */
  if (size > PTRDIFF_MAX - offset - TESS_OS_PAGE_SIZE) return NULL;
  /* Not rounded up to whole huge pages: the kernel backs only the 2 MiB
   * ranges wholly inside the mapping with huge pages, so the partial one at
   * the end faults 4 KiB at a time, and is resident only as far as it is
   * used (a 3 MiB buffer takes 3 MiB, not 4). */
  size_t total = huge_total(offset, size);
  _tess_purger_start();
  if (!_tess_purger_running()) _tess_huge_cache_purge(false); /* expire inline */
  /* calloc takes a cached block too and clears it: that beats faulting
   * in a fresh mapping page by page (twice for a page read before it is
   * written), and it spares the mmap and munmap that stall every other
   * thread's page faults.  Only the cached part needs it, and only its
   * resident pages (huge_clear). */
  if (huge_cacheable(offset, size)) {
    size_t reused;
    uint8_t* p = huge_from_cache(total, offset, &reused);
    if (p != NULL && zero) {
      /* The block may be bigger than asked (a cached one reused whole):
       * clear all of it, as glibc's fresh mapping would be, but give the
       * whole pages past the request back instead of writing them. */
      size_t usable = ((tess_segment_t*)(p - offset))->huge_size;
      size_t cached = usable < reused ? usable : reused;
      size_t asked = huge_total(offset, size) - offset; /* to the end of its last OS page */
      if (asked > cached) asked = cached;
      huge_clear(p, asked);
      if (cached > asked) pages_drop(p + asked, cached - asked);
    }
    if (p != NULL) {
      ((tess_segment_t*)(p - offset))->huge_asked = size;
      return p;
    }
  }
  size_t align = alignment > TESS_SEGMENT_SIZE ? alignment : TESS_SEGMENT_SIZE;
  uint8_t* base;
  size_t mapped;
  tess_segment_t* seg = _tess_os_map_aligned(total, align, &base, &mapped);
  if (seg == NULL && _tess_release_all()) seg = _tess_os_map_aligned(total, align, &base, &mapped);
  if (seg == NULL) return NULL;
  /* Mapped anew soon after the cache gave one back for its age: the purge
   * delay may be too short for this program (see _tess_purge_delay). */
  if (_tess_prim_clock_ms() - atomic_load_explicit(&cache.expired_at, memory_order_relaxed) < 1000) {
    _tess_arena_note_refault(mapped);
  }
  /* Advise before the header is written, or its 2 MiB would be small pages.
   * Writing the header makes that first huge page resident at once, used or
   * not, so a block spanning fewer than two (barnes' 3 MiB cell pool, with
   * its spare capacity) keeps small pages: resident as far as it is used. */
  if (_tess_options.hugepages && total >= 2 * TESS_THP_SIZE) _tess_prim_hugepages(seg, total, true);
  huge_setup(seg, total, offset);
  seg->huge_asked = size;
  _tess_segmap_set((uintptr_t)seg, TESS_SEGMAP_HUGE);
  if (back > 0) {
    _tess_segmap_set((uintptr_t)seg->slices[0].start, (uint8_t)(TESS_SEGMAP_HUGE_BACK + __builtin_ctzl(back)));
  }
  atomic_fetch_add_explicit(&_tess_os.huge_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_tess_os.huge_bytes, mapped, memory_order_relaxed);
  _tess_os_committed_add(mapped);
  return seg->slices[0].start;
}

/* The huge segment (live or cached) whose block may start in the 4 MiB of
 * p, given the segment-map byte there; NULL if there is none. */
static tess_segment_t* huge_header_of(const void* p, uint8_t map_value) {
  tess_segment_t* seg = _tess_segment_of(p);
  if (map_value >= TESS_SEGMAP_HUGE_BACK) {
    size_t back_shift = (size_t)(map_value - TESS_SEGMAP_HUGE_BACK) + TESS_SEGMENT_SHIFT;
    if (back_shift >= TESS_ADDRESS_BITS || (uintptr_t)seg < ((uintptr_t)1 << back_shift)) return NULL;
    seg = (tess_segment_t*)((uint8_t*)seg - ((size_t)1 << back_shift));
    if (_tess_segmap_get((uintptr_t)seg) != TESS_SEGMAP_HUGE) return NULL;
  }
  return seg;
}

/* The live huge block's segment for p; NULL if p cannot be a huge block's
 * start. */
tess_segment_t* _tess_huge_segment_of(const void* p, uint8_t map_value) {
  tess_segment_t* seg = huge_header_of(p, map_value);
  if (seg == NULL || seg->slices[0].kind != TESS_PAGE_HUGE) return NULL;
  return seg;
}

/* Was p a huge block that is now freed and cached (so freeing it again is
 * a double free)? */
bool _tess_huge_was_freed(const void* p, uint8_t map_value) {
  tess_segment_t* seg = huge_header_of(p, map_value);
  return seg != NULL && seg->slices[0].kind == TESS_PAGE_FREE && seg->slices[0].start == p;
}

/* How many bytes of freed huge blocks the cache may hold: none under an
 * address-space limit (the program's own mmaps may need it), else
 * TESS_HUGE_CACHE_MAX, or a quarter of the huge blocks in use if more, when
 * the purger runs.  The purger unmaps them once the delay has passed, so
 * there the bound on an idle program is time, and a program that keeps
 * many big buffers in flight (40 of 1-40 MiB, four threads) reuses their
 * memory instead of mapping and faulting in a fresh one for most of them:
 * a third of the page faults and 40% of the time, at about the same RSS.
 * Without the purger (a single-threaded program) later allocator calls
 * expire them, so a program that frees big buffers and then stops calling
 * the allocator keeps up to TESS_HUGE_CACHE_MAX mapped, as glibc keeps up
 * to 64 MiB of free heap top untrimmed once its mmap threshold has risen. */
static size_t huge_cache_cap(void) {
  if (_tess_address_space_limited()) return 0;
  if (!_tess_purger_running()) return TESS_HUGE_CACHE_MAX;
  size_t share = atomic_load_explicit(&_tess_os.huge_bytes, memory_order_relaxed) / 4;
  return share > TESS_HUGE_CACHE_MAX ? share : TESS_HUGE_CACHE_MAX;
}

void _tess_huge_free(tess_segment_t* seg) {
  tess_page_t* page = &seg->slices[0];
  size_t offset = (size_t)(page->start - (uint8_t*)seg);
  page->kind = TESS_PAGE_FREE; /* a second free now finds no huge block */
  atomic_fetch_sub_explicit(&_tess_os.huge_count, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&_tess_os.huge_bytes, seg->mapped, memory_order_relaxed);
  size_t cap = huge_cacheable(offset, seg->huge_size) ? huge_cache_cap() : 0;
  if (cap != 0 && seg->mapped > cap) {
    /* A block bigger than the cap keeps its head (shrinking stays in
     * place): the next big buffer then faults in only the rest. */
    tess_segment_t* kept = huge_resize(seg, cap);
    if (kept != NULL) {
      seg = kept;
      huge_setup(seg, cap, TESS_HUGE_OFFSET);
    } else {
      cap = 0; /* seg is intact: unmapped below */
    }
  }
  if (cap != 0) {
    /* Sealed before another thread can take it (see _tess_freed_seal_write);
     * the first OS page of a cached block is never given back. */
    _tess_freed_seal_write(seg->slices[0].start);
    tess_segment_t* evict[TESS_HUGE_CACHE_SLOTS];
    size_t nevict = 0;
    _tess_lock(&cache.lock);
    bool was_empty = cache.count == 0;
    /* make room: the oldest go */
    while (cache.count > 0 && (cache.count == TESS_HUGE_CACHE_SLOTS || cache.bytes + seg->mapped > cap)) {
      evict[nevict++] = cache.seg[0];
      cache_take(0);
    }
    cache_put(seg, _tess_prim_clock_ms());
    _tess_unlock(&cache.lock);
    for (size_t i = 0; i < nevict; i++) huge_unmap(evict[i]);
    if (was_empty) _tess_purger_notify();
    return;
  }
  huge_unmap(seg);
}

/* Unmap cached blocks, the oldest first, while `more` says so of the
 * oldest left (its freed_at) and the bytes already taken; how many. */
static size_t cache_unmap_oldest(bool (*more)(uint64_t freed_at, size_t taken, const void* arg), const void* arg) {
  if (tess_racy_load(cache.count) == 0) return 0; /* a hint */
  tess_segment_t* out[TESS_HUGE_CACHE_SLOTS];
  size_t n = 0, taken = 0;
  _tess_lock(&cache.lock);
  while (cache.count > 0 && more(cache.freed_at[0], taken, arg)) {
    taken += cache.seg[0]->mapped;
    out[n++] = cache.seg[0];
    cache_take(0);
  }
  _tess_unlock(&cache.lock);
  for (size_t i = 0; i < n; i++) huge_unmap(out[i]);
  return n;
}

typedef struct { bool force; uint64_t now, delay; } expiry_t;

static bool expired(uint64_t freed_at, size_t taken, const void* arg) {
  (void)taken;
  const expiry_t* e = arg;
  return e->force || e->now - freed_at >= e->delay;
}

/* Unmap cached huge blocks that have waited out the delay (all with force);
 * twenty delays without the purger. */
void _tess_huge_cache_purge(bool force) {
  if (tess_racy_load(cache.count) == 0) return; /* a hint */
  /* Without the purger this runs only inside allocator calls, so the
   * cache's bound for an idle program is its size, not the delay: expiring
   * it after the usual delay only unmapped, while the program was busy,
   * buffers it was about to reuse (python3: 97,000 page faults -> 59,000
   * with twenty delays, 1 s by default). */
  expiry_t e = {force, _tess_prim_clock_ms(),
                _tess_purge_delay() * (_tess_purger_running() ? 1 : 20)};
  if (cache_unmap_oldest(expired, &e) > 0 && !force) atomic_store_explicit(&cache.expired_at, e.now, memory_order_relaxed);
}

static bool short_of(uint64_t freed_at, size_t taken, const void* arg) {
  (void)freed_at;
  return taken < *(const size_t*)arg;
}

/* The arena is mapping `bytes` of fresh memory: the program's other memory
 * grows while cached blocks wait.  Cached blocks as big, the oldest first,
 * are given back in exchange, so that the cache does not add to the
 * program's peak: a Fortran program whose three 2.4 MB matrices were
 * cached when it went on to build its small nodes peaked at 22.5 MB
 * against glibc's 13.5; now 17.  A program cycling big buffers maps no
 * segment between them, and keeps its cache. */
void _tess_huge_cache_release(size_t bytes) { (void)cache_unmap_oldest(short_of, &bytes); }

bool _tess_huge_cache_nonempty(void) { return tess_racy_load(cache.count) != 0; }

/* Resize a huge block (offset 256, the plain malloc kind) with mremap.
 * NULL if that fails (the block is intact).  A block that still has room
 * stays as it is when it grows, or shrinks by at most half: a block taken
 * whole from the cache is bigger than asked, and a program growing it step
 * by step (a vector doubling, a buffer read into) would otherwise have it
 * cut down to its first size, its resident pages given back, and then
 * grown again into fresh ones, faulted in page by page (ten times glibc's
 * time for a buffer rebuilt up to 8 MB, again and again). */
void* _tess_huge_realloc(tess_segment_t* seg, size_t size) {
  tess_page_t* page = &seg->slices[0];
  size_t offset = (size_t)(page->start - (uint8_t*)seg);
  if (offset != TESS_HUGE_OFFSET || size > PTRDIFF_MAX - 2 * TESS_OS_PAGE_SIZE) return NULL;
  if (size <= seg->huge_size && (size >= seg->huge_asked || size >= seg->huge_size / 2)) {
    seg->huge_asked = size;
    return page->start;
  }
  size_t total = huge_total(offset, size);
  size_t old = seg->mapped;
  tess_segment_t* dest = huge_resize(seg, total);
  if (dest == NULL) return NULL;
  atomic_fetch_add_explicit(&_tess_os.huge_bytes, total - old, memory_order_relaxed);
  huge_setup(dest, total, offset);
  dest->huge_asked = size;
  return dest->slices[0].start;
}

void _tess_huge_fork_child(void) {
  if (_tess_lock_is_held(&cache.lock)) memset(&cache, 0, sizeof cache); /* leak it */
}
