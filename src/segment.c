/* segment.c - the arena: 4 MiB segments carved into spans of 64 KiB slices;
 * free spans kept in bins by length and coalesced with their neighbours;
 * free memory purged after a delay; whole free segments unmapped; large
 * blocks, each in a span of its own.  (Huge blocks, in segments of their
 * own, are in huge.c.)
 *
 * Locking: one lock, `arena.lock`, guards the bins, the purge list and every
 * span's kind/length fields.  It is a leaf: nothing else is locked inside it,
 * and no system call is made while it is held (mmap, madvise and munmap are
 * decided under the lock and done after it is released).
 *
 * Fork: the lock is not taken around fork (a thread that holds stdio's lock
 * and waits for ours would deadlock the forking thread).  Instead the child
 * checks it: if some thread held it at the instant of the fork, the arena's
 * lists may be half-updated, so the child starts a new arena generation and
 * leaves the old segments alone (their live blocks still work; freeing them
 * just leaks the span).
 */
#include "internal.h"

/* The segment map has a mapping of its own, not 32 MiB of .bss: a
 * conservative collector (Boehm's, under guile, w3m, Inkscape and others)
 * takes every writable segment of every loaded library as roots, and its
 * scans made all 32 MiB resident.  guile compiling one file held 104 MB at
 * its peak against glibc's 55 MB; now 56.  Before start-up maps it, the one
 * boot entry answers for the first 4 MiB (free(NULL)) and the bound sends
 * every other address to the slow path, which finds no segment there. */
static _Atomic(uint8_t) segmap_boot[1];
tess_segmap_t _tess_segmap = {1, segmap_boot};

/* Once, at start-up, before any other thread can use tessera.  If the
 * address space has no room for it, nothing is ever mapped for blocks
 * (_tess_os_map_aligned): every allocation fails, cleanly. */
static void segmap_init(void) {
  void* map;
  if (_tess_prim_map(NULL, TESS_SEGMAP_ENTRIES, &map) != 0) {
    _tess_warning("cannot map the segment map (%lu MiB of address space); every allocation will fail",
                  TESS_SEGMAP_ENTRIES >> 20);
    return;
  }
  _tess_prim_hugepages(map, TESS_SEGMAP_ENTRIES, false); /* 2 MiB for a byte, else: see segment_create */
  _tess_segmap.map = map;
  __atomic_store_n(&_tess_segmap.entries, TESS_SEGMAP_ENTRIES, __ATOMIC_RELEASE);
}

/* The seal of a freed large or huge block (internal.h): its key. */
uintptr_t _tess_freed_seal_key;

void _tess_arena_init(void) {
  segmap_init();
  _tess_freed_seal_key = _tess_prim_random() | ((uintptr_t)1 << 63);
}

/* Under no lock: the block is still the caller's until it is freed. */
void _tess_arena_seal_large(tess_page_t* page) {
  _tess_freed_seal_write(page->start);
  page->sealed = 1;
}

/* Is p the start of a freed large block whose seal is intact (so a free
 * of p is that block freed twice)?  Read without the lock, for a report:
 * p is in a segment of ours, so its memory is mapped. */
bool _tess_arena_freed_large_at(const void* p) {
  if (((uintptr_t)p & (TESS_SLICE_SIZE - 1)) != 0) return false;
  return _tess_slice_of(_tess_segment_of(p), p)->sealed && _tess_freed_seal_intact(p);
}

typedef struct tess_span_range_s {
  tess_segment_t* seg;
  uint32_t idx, count;
  bool all;                    /* purge every dirty slice, due or not */
} tess_span_range_t;

static struct {
  tess_lock_t lock;
  uint32_t generation;
  uint64_t nonempty;                         /* bit n: bins[n] has spans  */
  tess_page_t* bins[TESS_SLICES_PER_SEGMENT]; /* free spans by length     */
  tess_segment_t* purge_first;               /* segments with dirty free  */
  tess_segment_t* purge_last;                /*   slices, oldest first    */
  size_t dirty_slices;                       /* free, not purged, all     */
  tess_segment_t* cached;                    /* one wholly free segment   */
  uint64_t last_purge_check;
  uint64_t last_decay;                       /* of _tess_os.in_use_recent */
  uint64_t last_churn_decay;                 /* of over_purged and reuse_boost:  */
  uint64_t last_churn_decay_cpu;             /*   wall and process CPU ms        */
  uint64_t over_purge_at;                    /* frugal: last purge over the cap, */
  size_t over_purge_max;                     /*   its largest span (slices)      */
  size_t reuse_boost;                        /* slices added to the allowance   */
  uint64_t deep_given_at;                    /* frugal: memory last given back far
                                                below the recent peak (note_given) */
  size_t cycle_boost;                        /* slices added to the allowance by
                                                teardowns followed by rebuilds */
  size_t over_purged;                        /* frugal: slices purged over the cap,
                                                halved every CPU second (churning) */
  size_t refaulted;                          /* slices purged by the delay and taken
                                                again within a second, this second */
  uint32_t delay_shift;                      /* the delay is 2^this times the option */
} arena;

/* Slices [from, to) of seg became free and touched at `now`.  Under the lock. */
static void slices_dirty(tess_segment_t* seg, size_t from, size_t to, uint32_t now) {
  for (size_t i = from; i < to; i++) {
    seg->slices[i].dirty = 1;
    seg->slices[i].dirty_at = now;
  }
  seg->dirty_slices += (uint32_t)(to - from);
  tess_racy_store(arena.dirty_slices, arena.dirty_slices + (to - from));
}

/* ---- spans ---------------------------------------------------------------- */

/* Make slices [from, to) inner slices of the span headed by slice head. */
static void span_set_inner(tess_segment_t* seg, size_t head, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    tess_page_t* s = &seg->slices[i];
    s->slice_offset = (uint32_t)((i - head) * sizeof(tess_page_t));
    s->kind = TESS_PAGE_INNER;
    tess_racy_store(s->heap, 0);
  }
}

/* Make slices [idx, idx+count) one span of `kind` headed by slice idx. */
static tess_page_t* span_set(tess_segment_t* seg, size_t idx, size_t count, tess_page_kind_t kind) {
  tess_page_t* head = &seg->slices[idx];
  head->slice_count = (uint32_t)count;
  head->slice_offset = 0;
  head->kind = (uint8_t)kind;
  span_set_inner(seg, idx, idx + 1, idx + count);
  return head;
}

static size_t span_index(tess_segment_t* seg, tess_page_t* head) { return (size_t)(head - seg->slices); }

static void bin_insert(tess_page_t* span) {
  size_t n = span->slice_count;
  span->prev = NULL;
  span->next = arena.bins[n];
  if (span->next) span->next->prev = span;
  arena.bins[n] = span;
  arena.nonempty |= 1ULL << n;
}

static void bin_remove(tess_page_t* span) {
  size_t n = span->slice_count;
  if (span->prev) span->prev->next = span->next;
  else arena.bins[n] = span->next;
  if (span->next) span->next->prev = span->prev;
  if (arena.bins[n] == NULL) arena.nonempty &= ~(1ULL << n);
  span->next = span->prev = NULL;
}

static void purge_list_add(tess_segment_t* seg, uint64_t now) {
  if (seg->in_purge_list) return;
  seg->in_purge_list = 1;
  seg->dirty_since = now;
  seg->next = NULL;
  seg->prev = arena.purge_last;
  if (arena.purge_last) arena.purge_last->next = seg;
  else tess_racy_store(arena.purge_first, seg);
  arena.purge_last = seg;
}

static void purge_list_remove(tess_segment_t* seg) {
  if (!seg->in_purge_list) return;
  if (seg->prev) seg->prev->next = seg->next;
  else tess_racy_store(arena.purge_first, seg->next);
  if (seg->next) seg->next->prev = seg->prev;
  else arena.purge_last = seg->prev;
  seg->next = seg->prev = NULL;
  seg->in_purge_list = 0;
}

/* A span just labelled free, freed at `freed_at`: cleared of what it held
 * as a page, into the bins.  Under the lock. */
static void span_make_free(tess_page_t* span, uint32_t freed_at) {
  span->freed_at = freed_at;
  tess_racy_store(span->heap, 0);
  span->bin = 0;
  span->block_size = 0;
  tess_racy_store(span->limit, 0);
  bin_insert(span);
}

/* Put the free span [idx, idx+count) into the bins, merged with free
 * neighbours.  Under the lock. */
static tess_page_t* span_insert_free(tess_segment_t* seg, size_t idx, size_t count, uint32_t now) {
  size_t end = idx + count;
  if (end < TESS_SLICES_PER_SEGMENT && seg->slices[end].kind == TESS_PAGE_FREE) {
    tess_page_t* right = &seg->slices[end];
    bin_remove(right);
    end += right->slice_count;
  }
  tess_page_t* span = NULL;
  if (idx > 1) {
    tess_page_t* left_last = &seg->slices[idx - 1];
    tess_page_t* left = (tess_page_t*)((uint8_t*)left_last - left_last->slice_offset);
    if (left->kind == TESS_PAGE_FREE) {
      /* Its slices point to its head already: only ours and the right
       * neighbour's are set again (a block freed next to a segment's free
       * rest costs its own slices, not the segment's). */
      bin_remove(left);
      span = left;
      span->slice_count = (uint32_t)(end - span_index(seg, left));
      span_set_inner(seg, span_index(seg, left), idx, end);
    }
  }
  if (span == NULL) span = span_set(seg, idx, end - idx, TESS_PAGE_FREE);
  span_make_free(span, now); /* a merged span is as young as its newest part */
  return span;
}

/* Slices [idx, idx+count), free until now, go into use: they are no longer
 * free-and-dirty.  Returns how many were dirty (already resident); those
 * purged for their age less than a second ago count as refaulted (see
 * _tess_delay_shift_next).  A freed large block starting in them whose
 * seal was written over is left in *overwritten, to be reported once the
 * lock is released.  Under the lock. */
static size_t slices_take(tess_segment_t* seg, size_t idx, size_t count, void** overwritten) {
  size_t dirty = 0, purged = 0;
  uint32_t now = 0;
  for (size_t i = idx; i < idx + count; i++) {
    tess_page_t* s = &seg->slices[i];
    if (s->sealed) {
      s->sealed = 0;
      /* Purged memory reads as zeros: only resident memory still has it. */
      void* block = _tess_slice_start(seg, s);
      if (s->dirty && !_tess_freed_seal_intact(block)) *overwritten = block;
    }
    if (s->dirty) {
      dirty++;
    } else if (s->dirty_at != 0) { /* purged by the delay at dirty_at */
      if (now == 0) now = (uint32_t)_tess_prim_clock_ms();
      if (now - s->dirty_at < 1000) purged++;
    }
    s->dirty = 0;
    s->dirty_at = 0;
  }
  arena.refaulted += purged;
  seg->dirty_slices -= (uint32_t)dirty;
  tess_racy_store(arena.dirty_slices, arena.dirty_slices - dirty);
  if (seg->dirty_slices == 0) purge_list_remove(seg);
  seg->used_slices += (uint32_t)count;
  return dirty;
}

/* ---- segments ------------------------------------------------------------- */

static tess_segment_t* segment_create(void) {
  _tess_huge_cache_release(TESS_SEGMENT_SIZE); /* see there */
  uint8_t* base;
  size_t mapped;
  tess_segment_t* seg = _tess_os_map_aligned(TESS_SEGMENT_SIZE, TESS_SEGMENT_SIZE, &base, &mapped);
  if (seg == NULL && _tess_release_all()) seg = _tess_os_map_aligned(TESS_SEGMENT_SIZE, TESS_SEGMENT_SIZE, &base, &mapped);
  if (seg == NULL) return NULL;
  /* Before the header is written.  A segment's memory is made resident
   * and given back in 4 KiB pages; where the system's THP mode is
   * "always", the kernel would otherwise back it with 2 MiB pages on first
   * touch, and khugepaged would collapse what was purged back into them
   * (measured there: cfrac 5.7 MB resident instead of 1.6, espresso 11.6
   * instead of 5.7, idle 146 MiB held after the burst instead of 129). */
  _tess_prim_hugepages(seg, TESS_SEGMENT_SIZE, false);
  /* Fresh memory is zero: only the non-zero fields need setting. */
  seg->kind = TESS_SEGMENT_NORMAL;
  seg->mapped = mapped;
  seg->map_base = base;
  seg->slices[0].kind = TESS_PAGE_HEADER;
  seg->slices[0].slice_count = 1;
  atomic_fetch_add_explicit(&_tess_os.segments, 1, memory_order_relaxed);
  _tess_os_committed_add(TESS_SLICE_SIZE); /* the header slice, at most */
  return seg;
}

/* Give a wholly free segment (already out of the bins and lists) back. */
static void segment_unmap(tess_segment_t* seg) {
  _tess_segmap_set((uintptr_t)seg, TESS_SEGMAP_NONE);
  atomic_fetch_sub_explicit(&_tess_os.segments, 1, memory_order_relaxed);
  _tess_os_committed_sub(TESS_SLICE_SIZE);
  _tess_os_unmap(seg->map_base, seg->mapped);
}

/* A segment just became wholly free.  Keep one such segment for the next
 * burst (it is purged like any free memory); take any other out of the
 * arena and return true: the caller unmaps it after unlocking. */
static bool segment_is_surplus(tess_segment_t* seg, bool force) {
  if (!force && (arena.cached == NULL || arena.cached == seg)) {
    arena.cached = seg;
    return false;
  }
  if (arena.cached == seg) arena.cached = NULL;
  bin_remove(&seg->slices[1]);
  purge_list_remove(seg);
  tess_racy_store(arena.dirty_slices, arena.dirty_slices - seg->dirty_slices);
  _tess_os_committed_sub((size_t)seg->dirty_slices << TESS_SLICE_SHIFT);
  seg->dirty_slices = 0;
  return true;
}

/* ---- purging ---------------------------------------------------------------- */

/* The address space is limited (RLIMIT_AS): free memory we keep mapped may
 * be what the program's own next mmap needs.  Checked at most every 100 ms. */
bool _tess_address_space_limited(void) {
  static _Atomic(uint64_t) checked_at;
  static _Atomic(bool) limited;
  uint64_t now = _tess_prim_clock_ms();
  if (now - atomic_load_explicit(&checked_at, memory_order_relaxed) >= 100) {
    atomic_store_explicit(&checked_at, now, memory_order_relaxed);
    atomic_store_explicit(&limited, _tess_prim_address_space_limited(), memory_order_relaxed);
  }
  return atomic_load_explicit(&limited, memory_order_relaxed);
}

/* Keep free memory mapped generously only when time will give it back (the
 * purger runs) and nothing else may need the address space. */
bool _tess_arena_frugal(void) { return !_tess_purger_running() || _tess_address_space_limited(); }

#define TESS_REUSE_BOOST_MAX (((size_t)4 << 20) >> TESS_SLICE_SHIFT)
#define TESS_CHURN_FACTOR 8
#define TESS_CHURN_SHARE 4
/* Past this much in use, a single-threaded program keeps an eighth of the
 * rest free, not a sixty-fourth: 1,000 blocks of 32-512 KiB replaced at
 * random (270 MB in use) took 12 faults and 23-28 us an operation, 15
 * times tcmalloc's time, with 2 GB a second given back and faulted in
 * again; now 0.5 faults and 2.2-2.7 us, peak RSS 321 -> 341 MB (tcmalloc
 * 364).  A flat eighth, for any size, cost espresso (5 MB) a third more
 * at its peak.  What stays when such a program stops calling grows by as
 * much: the suite's idle holds 128.5 MiB after its burst, not 125.4 (its
 * target 130.2); a sixteenth past 64 MiB gave 126.9 but kept 5.1 us an
 * operation above. */
#define TESS_BIG_HEAP ((size_t)64 << 20)

/* The most the allowance learns (see note_reuse): 4 MiB, or while the
 * program churns a quarter of what is in use. */
static size_t reuse_ceiling(size_t in_use_slices) {
  size_t share = in_use_slices / TESS_CHURN_SHARE;
  return share > TESS_REUSE_BOOST_MAX ? share : TESS_REUSE_BOOST_MAX;
}

static size_t dirty_max_slices(void) {
  /* Keep at most TESSERA_DIRTY_MAX MiB (but no more than 1/8 of what is in
   * use), plus a share of what is in use, of free memory unpurged: enough
   * to absorb churn, little enough that RSS follows the live data down when
   * the program frees.  With the purger
   * thread, time takes care of an idle program, and memory freed and soon
   * reused adds nothing to the peak, so the share is what was in use
   * recently (a program that frees a generation of data and builds the
   * next must not fault it all in again); without it, what is unpurged at
   * the last call stays for good, so 1/64 of what is in use now and 1/8 of
   * what is in use past TESS_BIG_HEAP; under an address-space limit, 1/16. */
  size_t in_use = atomic_load_explicit(&_tess_os.pages_in_use_bytes, memory_order_relaxed);
  size_t recent = atomic_load_explicit(&_tess_os.in_use_recent, memory_order_relaxed);
  size_t share;
  if (!_tess_arena_frugal()) share = recent > in_use ? recent : in_use;
  else if (_tess_purger_running()) share = in_use / 16;
  else share = in_use / 64 + (in_use > TESS_BIG_HEAP ? (in_use - TESS_BIG_HEAP) / 8 : 0);
  size_t fixed = (size_t)_tess_options.dirty_max_mib << 20;
  if (fixed > in_use / 8) fixed = in_use / 8; /* a small program: a small allowance */
  /* What was learned while churning is bounded by what is in use now, so
   * a program that then frees most of its memory keeps little of it. */
  size_t boost = tess_racy_load(arena.reuse_boost), most = reuse_ceiling(in_use >> TESS_SLICE_SHIFT);
  /* What teardowns and rebuilds taught (frugal only: the purger's share
   * is the recent peak already) is bounded by the recent peak instead: it
   * is kept for the next rebuild (see note_reuse). */
  size_t cycle = _tess_arena_frugal() ? tess_racy_load(arena.cycle_boost) : 0, peak = recent >> TESS_SLICE_SHIFT;
  return ((fixed + share) >> TESS_SLICE_SHIFT) + (boost < most ? boost : most) + (cycle < peak ? cycle : peak);
}

/* Would `bytes` more of free memory go over the allowance, and so be
 * purged as soon as it is freed?  (A hint: read without the lock.) */
bool _tess_arena_over_allowance(size_t bytes) {
  size_t slices = (bytes + TESS_SLICE_SIZE - 1) >> TESS_SLICE_SHIFT;
  return tess_racy_load(arena.dirty_slices) + slices > dirty_max_slices();
}

static size_t in_use_slices(void) {
  return atomic_load_explicit(&_tess_os.pages_in_use_bytes, memory_order_relaxed) >> TESS_SLICE_SHIFT;
}

static size_t recent_slices(void) {
  return atomic_load_explicit(&_tess_os.in_use_recent, memory_order_relaxed) >> TESS_SLICE_SHIFT;
}

/* A frugal program gives memory back (over the allowance, or a wholly free
 * segment) with what is in use half or more, and 8 MiB or more, below its
 * recent peak: a teardown (see note_reuse).  Down to a quarter of the peak
 * missed a program tearing down 64 MB over 40 MB that stay; a quarter below
 * it took the swings of 100 blocks of 64 KiB-1 MiB replaced at random for
 * teardowns (29 MB kept when they were all freed, against 9).  Under the
 * lock. */
#define TESS_TEARDOWN_MIN (((size_t)8 << 20) >> TESS_SLICE_SHIFT)

static void note_given(uint64_t now) {
  size_t in_use = in_use_slices(), peak = recent_slices();
  if (peak > in_use && (peak - in_use) * 2 >= peak && peak - in_use >= TESS_TEARDOWN_MIN) arena.deep_given_at = now;
}

/* The purge delay in force (see _tess_delay_shift_next). */
uint64_t _tess_purge_delay(void) {
  return _tess_delay_of((uint64_t)_tess_options.purge_delay_ms, __atomic_load_n(&arena.delay_shift, __ATOMIC_RELAXED));
}

static _Atomic(size_t) huge_refaulted; /* slices: huge blocks mapped anew, cache expired */

void _tess_arena_note_refault(size_t bytes) {
  atomic_fetch_add_explicit(&huge_refaulted, bytes >> TESS_SLICE_SHIFT, memory_order_relaxed);
}

/* Once a second, under the lock. */
static void adapt_delay(void) {
  size_t huge = atomic_load_explicit(&_tess_os.huge_bytes, memory_order_relaxed) >> TESS_SLICE_SHIFT;
  arena.refaulted += atomic_exchange_explicit(&huge_refaulted, 0, memory_order_relaxed);
  __atomic_store_n(&arena.delay_shift, _tess_delay_shift_next(arena.delay_shift, arena.refaulted, in_use_slices() + huge),
                   __ATOMIC_RELAXED);
  arena.refaulted = 0;
}

#define TESS_PURGE_BATCH 64

static bool slice_purgeable(const tess_page_t* s, bool all, uint32_t now, uint32_t delay) {
  return s->dirty == 1 && (all || now - s->dirty_at >= delay);
}

/* Purge the dirty free spans of segments whose delay has passed (all of them
 * when `force`, or while the dirty total is over its cap). */
void _tess_arena_purge(bool force) {
  tess_span_range_t ranges[TESS_PURGE_BATCH];
  tess_segment_t* to_unmap[TESS_PURGE_BATCH];
  for (;;) {
    size_t n = 0, nunmap = 0;
    uint64_t now = _tess_prim_clock_ms();
    /* Read outside the lock (a system call), only when it may be needed. */
    uint64_t cpu = now - tess_racy_load(arena.last_decay) >= 1000 ? _tess_prim_cpu_ms() : 0;
    _tess_lock(&arena.lock);
    tess_racy_store(arena.last_purge_check, now);
    if (now - arena.last_decay >= 1000) { /* the recent high-water mark fades */
      tess_racy_store(arena.last_decay, now);
      atomic_store_explicit(&_tess_os.in_use_recent,
                            atomic_load_explicit(&_tess_os.in_use_recent, memory_order_relaxed) / 2,
                            memory_order_relaxed);
      adapt_delay();
      /* What the churn taught fades with the program's own work: a second
       * of its CPU time (or 8 seconds on the clock, for a program that
       * mostly waits).  By the clock alone, a program slowed down by a
       * loaded machine gave back as much in a second as it used, and took
       * the faults it would have taken before it learned (tests/churn:
       * 1.2M faults instead of 220,000 under load). */
      if (cpu != 0 && (cpu - arena.last_churn_decay_cpu >= 1000 || now - arena.last_churn_decay >= 8000)) {
        arena.last_churn_decay = now;
        arena.last_churn_decay_cpu = cpu;
        tess_racy_store(arena.reuse_boost, arena.reuse_boost / 2);
        tess_racy_store(arena.cycle_boost, arena.cycle_boost / 2);
        arena.over_purged /= 2;
      }
    }
    size_t excess = _tess_purge_excess(arena.dirty_slices, dirty_max_slices());
    uint32_t delay = (uint32_t)_tess_purge_delay();
    tess_segment_t* next_seg;
    for (tess_segment_t* seg = arena.purge_first; seg != NULL && n < TESS_PURGE_BATCH; seg = next_seg) {
      next_seg = seg->next;
      /* The list is ordered by dirty_since, a lower bound on the age of a
       * segment's dirty spans: past the first segment that cannot have a
       * due span, none can (unless forced or over the cap). */
      if (!force && excess == 0 && (uint32_t)((uint32_t)now - (uint32_t)seg->dirty_since) < delay) break;
      uint32_t oldest = 0; /* age of the oldest span left dirty */
      bool young_left = false;
      size_t idx = 1;
      while (idx < TESS_SLICES_PER_SEGMENT && n < TESS_PURGE_BATCH) {
        tess_page_t* span = &seg->slices[idx];
        size_t count = span->slice_count;
        if (span->kind == TESS_PAGE_FREE) {
          /* Each dirty slice is due once it has waited out the delay. */
          bool dirty = false, due = false, young = false;
          uint32_t young_oldest = 0;
          for (size_t j = idx; j < idx + count; j++) {
            if (!seg->slices[j].dirty) continue;
            dirty = true;
            uint32_t a = (uint32_t)now - seg->slices[j].dirty_at;
            if (a >= delay) {
              due = true;
            } else {
              young = true;
              if (a > young_oldest) young_oldest = a;
            }
          }
          uint32_t age = (uint32_t)now - span->freed_at;
          /* Due once it has waited out the delay; everything is due when
           * forced or while the dirty total is over its cap. */
          bool all = force || excess > 0;
          if (count == TESS_SPAN_MAX && (all || age >= delay) && nunmap < TESS_PURGE_BATCH &&
              segment_is_surplus(seg, force)) {
            /* wholly free, and one such segment is kept already: unmap */
            excess = excess > count ? excess - count : 0;
            to_unmap[nunmap++] = seg;
            idx = TESS_SLICES_PER_SEGMENT;
            young_left = false;
            break;
          }
          if (dirty && (all || due)) {
            bin_remove(span);
            span->kind = TESS_PAGE_PURGING;
            seg->used_slices += (uint32_t)count; /* pins the segment */
            ranges[n++] = (tess_span_range_t){seg, (uint32_t)idx, (uint32_t)count, all};
            if (!force && excess > 0 && _tess_arena_frugal()) { /* see note_reuse */
              note_given(now);
              arena.over_purge_at = now;
              if (count > arena.over_purge_max) arena.over_purge_max = count;
              arena.over_purged += count;
            }
            excess = excess > count ? excess - count : 0;
          }
          if (!all && young) { /* its young slices stay dirty */
            if (young_oldest > oldest) oldest = young_oldest;
            young_left = true;
          }
        }
        idx += count;
      }
      if (idx < TESS_SLICES_PER_SEGMENT) break; /* batch full: resume here */
      if (!seg->in_purge_list) continue;          /* taken out to be unmapped */
      purge_list_remove(seg);
      if (young_left) purge_list_add(seg, now - oldest); /* to the tail, dated by its oldest */
    }
    _tess_unlock(&arena.lock);
    for (size_t i = 0; i < nunmap; i++) segment_unmap(to_unmap[i]);
    if (n == 0) return;

    for (size_t i = 0; i < n; i++) {
      tess_segment_t* seg = ranges[i].seg;
      /* Only the dirty slices that are due need the system call (the span is
       * out of the bins, so its slices are ours without the lock); they are
       * marked 2 for the count below.  One call spans the clean slices
       * between two such runs: they have no page to drop, and one call
       * costs less than two.  On a virtual machine where the kernel's
       * flush of a single page is slow, much less: it flushes page by page
       * up to 33 pages dropped in a call and the whole TLB past that, and
       * the range of one call counts from its first dropped page to its
       * last (bench/RESULTS.md, the twenty-second session). */
      size_t j = ranges[i].idx, end = ranges[i].idx + ranges[i].count;
      while (j < end) {
        while (j < end && !slice_purgeable(&seg->slices[j], ranges[i].all, (uint32_t)now, delay)) j++;
        size_t k = j, last = j, due = 0;
        while (k < end) {
          if (slice_purgeable(&seg->slices[k], ranges[i].all, (uint32_t)now, delay)) {
            seg->slices[k++].dirty = 2;
            last = k;
            due++;
          } else if (seg->slices[k].dirty == 0) {
            k++; /* clean: bridged if another due run follows */
          } else {
            break; /* dirty but young: keeps its pages */
          }
        }
        if (due != 0) {
          _tess_os_purge_part((uint8_t*)seg + (j << TESS_SLICE_SHIFT), (last - j) << TESS_SLICE_SHIFT,
                              due << TESS_SLICE_SHIFT);
        }
        j = k;
      }
    }

    size_t unmaps = 0;
    _tess_lock(&arena.lock);
    for (size_t i = 0; i < n; i++) {
      tess_segment_t* seg = ranges[i].seg;
      size_t cleaned = 0;
      for (size_t j = ranges[i].idx; j < ranges[i].idx + ranges[i].count; j++) {
        if (seg->slices[j].dirty != 2) continue;
        cleaned++;
        seg->slices[j].dirty = 0;
        /* Purged for its age: taken again soon, it counts as refaulted. */
        seg->slices[j].dirty_at = ranges[i].all ? 0 : (uint32_t)now;
      }
      seg->dirty_slices -= (uint32_t)cleaned;
      tess_racy_store(arena.dirty_slices, arena.dirty_slices - cleaned);
      _tess_os_committed_sub(cleaned << TESS_SLICE_SHIFT);
      seg->used_slices -= ranges[i].count;
      if (seg->generation != arena.generation) continue; /* forked mid-purge */
      span_insert_free(seg, ranges[i].idx, ranges[i].count, (uint32_t)now);
      if (seg->used_slices == 0 && segment_is_surplus(seg, force)) to_unmap[unmaps++] = seg;
    }
    _tess_unlock(&arena.lock);
    for (size_t i = 0; i < unmaps; i++) segment_unmap(to_unmap[i]);
    if (n < TESS_PURGE_BATCH) return;
  }
}

/* Called on the slow paths: purge when a delay may have passed or the dirty
 * total is over its cap.  Cheap when there is nothing to do. */
void _tess_arena_maybe_purge(void) {
  if (!_tess_purger_running()) _tess_huge_cache_purge(false);
  if (tess_racy_load(arena.purge_first) == NULL) return; /* a hint only */
  bool over = tess_racy_load(arena.dirty_slices) > dirty_max_slices();
  /* With the background purger, time-based purging is its job. */
  if (!over && (_tess_purger_running() || _tess_prim_clock_ms() == tess_racy_load(arena.last_purge_check))) return;
  _tess_arena_purge(false);
}

/* The OS refused memory: give back every cached and free range we hold
 * (huge cache, wholly free segments), so a retry can succeed.  True if
 * anything was unmapped. */
bool _tess_release_all(void) {
  size_t before = atomic_load_explicit(&_tess_os.munmap_calls, memory_order_relaxed);
  _tess_huge_cache_purge(true);
  _tess_arena_purge(true); /* unmaps the wholly free segments it meets */
  _tess_lock(&arena.lock);
  tess_segment_t* seg = arena.cached;
  if (seg != NULL && seg->used_slices == 0 && seg->slices[1].kind == TESS_PAGE_FREE) {
    segment_is_surplus(seg, true); /* out of the bins and lists */
  } else {
    seg = NULL;
  }
  _tess_unlock(&arena.lock);
  if (seg != NULL) segment_unmap(seg);
  return atomic_load_explicit(&_tess_os.munmap_calls, memory_order_relaxed) != before;
}

bool _tess_arena_has_dirty(void) { return tess_racy_load(arena.purge_first) != NULL; /* a hint */ }

/* ---- span allocation ---------------------------------------------------------- */

/* A program that keeps little free memory (frugal: no purger, a small or
 * single-threaded program) purges a freed span as soon as the free goes
 * over its allowance.  If a span must then be set up on clean memory
 * (`clean` of its `slices`) within a second, the memory may have been
 * needed again, and the allowance grows by the clean part (up to 4 MiB,
 * halved every second of the process's CPU time: see _tess_arena_purge),
 * as glibc's trim threshold grows with the chunks a
 * program frees:
 * - for a large block, if a span at least as big was given back for the
 *   cap, up to twice the largest such block.  A single-threaded program
 *   rebuilding a 3 MB buffer with realloc 200 times took 136,000 faults
 *   and 0.32 s (glibc 1,800 and 0.01 s), now 3,100 and 0.08 s; one that
 *   mallocs and frees a 256 KiB buffer in a loop took 3 faults and a
 *   system call a buffer (40 times glibc's time), now none.  Unbounded,
 *   every reuse added up (espresso's hash tables, realloc's arrays) and
 *   kept 1-1.5 MB more free memory resident.  Counting only wholly clean
 *   blocks missed a program cycling through 300 KB, 600 KB and 1.2 MB
 *   buffers: each took the last one's pages and as many clean ones, and
 *   was purged whole when freed.
 * - for a page of small or medium blocks, only while the program churns:
 *   the cap gave back more than 8 times what is in use in the last CPU
 *   second or so (over_purged, halved every CPU second).  A program that mallocs 1,000
 *   blocks of 4 KiB and frees them, again and again, faulted every page in
 *   every round (1,700 ns an operation against tcmalloc's 12); now 21 ns.
 *   Counting every page, as large blocks are counted, cost espresso a third
 *   more at its peak; it gives back 4 times what it uses in a second.
 * While the program churns, the allowance may learn up to a quarter of
 * what is in use, not just 4 MiB: 100 blocks of 64 KiB-1 MiB replaced at
 * random (60 MB in use) took 129 us an operation, 20-60 times the peers,
 * with 1.5 GB a second given back and faulted in again; now 13 us.  What
 * it learned counts for no more than a quarter of what is in use now.
 * And a teardown (memory given back well below the recent peak of what
 * is in use, note_given) followed within a second by a rebuild (clean
 * memory set up below that peak) adds what the rebuild takes, up to the
 * recent peak and TESS_CYCLE_MAX, to cycle_boost, which counts whatever is
 * in use now: 250,000 blocks of 128 B malloc'd and freed round after round
 * faulted in 30 MB a round (96 ms; mimalloc 3.4.3 6 ms); now none (6 ms).
 * Called with the arena lock held. */

#define TESS_CYCLE_MAX (((size_t)64 << 20) >> TESS_SLICE_SHIFT)

static bool churning(void) { return arena.over_purged > TESS_CHURN_FACTOR * (in_use_slices() + 32); }

/* A rebuild after a teardown (see above): cycle_boost learns `clean`. */
static void note_rebuild(size_t clean, uint64_t now) {
  if (arena.deep_given_at == 0 || now - arena.deep_given_at >= 1000 || _tess_address_space_limited()) return;
  size_t peak = recent_slices(), most = peak < TESS_CYCLE_MAX ? peak : TESS_CYCLE_MAX;
  if (in_use_slices() >= peak || arena.cycle_boost >= most) return;
  tess_racy_store(arena.cycle_boost, arena.cycle_boost + clean < most ? arena.cycle_boost + clean : most);
}

static void note_reuse(size_t slices, size_t clean, bool large) {
  if ((arena.over_purge_at == 0 && arena.deep_given_at == 0) || !_tess_arena_frugal()) return;
  uint64_t now = _tess_prim_clock_ms();
  note_rebuild(clean, now);
  if (arena.over_purge_at == 0) return;
  if (now - arena.over_purge_at >= 1000) {
    arena.over_purge_max = 0; /* that purge is old news */
    return;
  }
  bool churn = churning();
  if (!churn && !(large && slices <= arena.over_purge_max)) return;
  size_t ceiling = churn ? reuse_ceiling(in_use_slices()) : TESS_REUSE_BOOST_MAX;
  size_t most = churn ? ceiling : 2 * slices;
  if (most < arena.reuse_boost) most = arena.reuse_boost;
  if (most > ceiling) most = ceiling;
  tess_racy_store(arena.reuse_boost, arena.reuse_boost + clean < most ? arena.reuse_boost + clean : most);
}

/* A free span that can give `slices` slices starting on a multiple of
 * `align` slices (1: anywhere; otherwise its address is then a multiple of
 * align * 64 KiB, segments being 4 MiB aligned), and in *at the last such
 * start in it: spans are carved from the tail, since the head of a free
 * span is often a block just freed (kept free longest, a second free of it
 * is still caught) and the slices after a large block stay free for it to
 * grow into.  Any span of align + slices - 1 slices or more has one, and
 * the smallest such is taken from the bins' mask; with an alignment,
 * shorter spans may have one too, and up to TESS_ALIGNED_SCAN of them are
 * looked at first, the smallest first.  NULL if none.  Under the lock. */
#define TESS_ALIGNED_SCAN 64

static size_t aligned_start(size_t head, size_t count, size_t slices, size_t align) {
  return (head + count - slices) / align * align; /* below head if none fits */
}

static tess_page_t* find_span(size_t slices, size_t align, size_t* at) {
  size_t sure = align + slices - 1, looked = 0;
  for (size_t n = slices; n < sure && looked < TESS_ALIGNED_SCAN; n++) {
    if ((arena.nonempty >> n & 1) == 0) continue;
    for (tess_page_t* span = arena.bins[n]; span != NULL && looked < TESS_ALIGNED_SCAN; span = span->next) {
      looked++;
      size_t head = span_index(_tess_segment_of(span), span);
      size_t a = aligned_start(head, n, slices, align);
      if (a >= head) {
        *at = a;
        return span;
      }
    }
  }
  uint64_t fits = arena.nonempty & ~((1ULL << sure) - 1);
  if (fits == 0) return NULL;
  size_t n = (size_t)__builtin_ctzll(fits);
  tess_page_t* span = arena.bins[n];
  *at = aligned_start(span_index(_tess_segment_of(span), span), n, slices, align);
  return span;
}

/* A span of `slices` slices for a page of `kind`, starting on a multiple of
 * `align` slices (1: anywhere; align + slices must fit in a segment);
 * *is_zero tells whether all of its memory is known to be zero (fresh or
 * purged).  NULL when the OS refuses memory. */
static tess_page_t* span_alloc(size_t slices, size_t align, tess_page_kind_t kind, bool* is_zero) {
  tess_assert(slices >= 1 && slices <= TESS_SPAN_MAX && align >= 1 && align + slices <= TESS_SLICES_PER_SEGMENT);
  _tess_purger_start(); /* only malloc takes spans: a safe place to start it */
  tess_segment_t* fresh = NULL;
  for (;;) {
    _tess_lock(&arena.lock);
    if (fresh != NULL) {
      fresh->generation = arena.generation;
      _tess_segmap_set((uintptr_t)fresh, TESS_SEGMAP_NORMAL);
      span_insert_free(fresh, 1, TESS_SPAN_MAX, 0);
      fresh = NULL;
    }
    size_t idx = 0;
    tess_page_t* span = find_span(slices, align, &idx);
    if (span != NULL) {
      tess_segment_t* seg = _tess_segment_of(span);
      size_t head = span_index(seg, span), end = head + span->slice_count;
      uint32_t freed_at = span->freed_at;
      bin_remove(span);
      /* The new span is marked in use first, or the rest would merge back. */
      tess_page_t* page = span_set(seg, idx, slices, kind);
      if (idx > head) { /* the part before stays free, its slices pointing to its head */
        span->slice_count = (uint32_t)(idx - head);
        bin_insert(span);
      }
      if (idx + slices < end) span_make_free(span_set(seg, idx + slices, end - idx - slices, TESS_PAGE_FREE), freed_at);
      void* overwritten = NULL;
      size_t dirty = slices_take(seg, idx, slices, &overwritten);
      if (arena.cached == seg) arena.cached = NULL;
      if (dirty < slices) note_reuse(slices, slices - dirty, kind == TESS_PAGE_LARGE);
      _tess_unlock(&arena.lock);
      if (tess_unlikely(overwritten != NULL)) _tess_freed_overwritten(overwritten);
      /* Clean slices become resident as the page is used. */
      _tess_os_committed_add((slices - dirty) << TESS_SLICE_SHIFT);
      *is_zero = (dirty == 0);
      return page;
    }
    _tess_unlock(&arena.lock);
    fresh = segment_create();
    if (fresh == NULL) return NULL;
  }
}

tess_page_t* _tess_arena_span_alloc(size_t slices, tess_page_kind_t kind, bool* is_zero) {
  return span_alloc(slices, 1, kind, is_zero);
}

/* Take the arena lock to work on seg.  False, and not locked, for a
 * segment of the parent's arena in a forked child: it is left alone. */
static bool arena_lock_segment(tess_segment_t* seg) {
  _tess_lock(&arena.lock);
  if (tess_likely(seg->generation == arena.generation)) return true;
  _tess_unlock(&arena.lock);
  return false;
}

/* Return the span of `page` (any kind but huge) to the arena. */
void _tess_arena_span_free(tess_page_t* page) {
  tess_segment_t* seg = _tess_segment_of(page);
  size_t idx = span_index(seg, page), count = page->slice_count;
  uint64_t now = _tess_prim_clock_ms();
  if (!arena_lock_segment(seg)) return;
  slices_dirty(seg, idx, idx + count, (uint32_t)now);
  seg->used_slices -= (uint32_t)count;
  span_insert_free(seg, idx, count, (uint32_t)now);
  bool first_dirty = arena.purge_first == NULL;
  purge_list_add(seg, now);
  /* With the purger, a wholly free segment stays, like any free memory,
   * until the purge delay passes (a program that frees everything and
   * starts again reuses it), and the purge then unmaps it.  Without it,
   * nothing would unmap it once the program stops calling us: one is kept,
   * the others go now.  The one kept is purged as any free memory is, over
   * the allowance (which, with nothing in use, is the little that the
   * program showed it needs again: note_reuse) or when the delay has
   * passed at a later call.  Purging it whole at once made a program that
   * mallocs and frees one big buffer in a loop fault it in every time. */
  tess_segment_t* unmap = NULL;
  bool over = arena.dirty_slices > dirty_max_slices();
  /* Kept too while the allowance holds it, if teardowns taught it to. */
  if (seg->used_slices == 0 && _tess_arena_frugal() && (over || arena.cycle_boost == 0) &&
      segment_is_surplus(seg, false)) {
    unmap = seg;
    note_given(now);
    over = arena.dirty_slices > dirty_max_slices();
  }
  bool due = !over && !_tess_purger_running() && now != arena.last_purge_check;
  _tess_unlock(&arena.lock);
  if (unmap != NULL) segment_unmap(unmap);
  if (over || due) _tess_arena_purge(false);
  if (first_dirty || (!_tess_purger_running() && !_tess_prim_single_threaded())) _tess_purger_notify();
}

/* ---- large blocks ------------------------------------------------------------- */

/* A large block: its own span, owned by no heap, freed from any thread.
 * With an alignment (128 KiB to 2 MiB; 0 for none), the span starts on a
 * slice whose address is a multiple of it: posix_memalign(1 MiB) of a few
 * bytes was a mapping of its own, an mmap and a munmap each time (12,200
 * ns against tcmalloc's 95).  The caller checks that the block and its
 * alignment fit in a segment (_tess_arena_large_aligned_fits). */
void* _tess_arena_large_alloc(size_t size, size_t alignment) {
  size_t bin = _tess_bin(size);
  size_t bsize = _tess_bin_size(bin);
  size_t slices = (bsize + TESS_SLICE_SIZE - 1) >> TESS_SLICE_SHIFT;
  size_t align = alignment > TESS_SLICE_SIZE ? alignment >> TESS_SLICE_SHIFT : 1;
  bool is_zero;
  tess_page_t* page = span_alloc(slices, align, TESS_PAGE_LARGE, &is_zero);
  if (page == NULL) return NULL;
  tess_segment_t* seg = _tess_segment_of(page);
  page->start = _tess_slice_start(seg, page);
  _tess_page_set_blocks(page, bsize, 1);
  page->bin = (uint8_t)bin;
  page->used = 1;
  page->reserved = 1;
  tess_racy_store(page->heap, 0);
  page->is_zero = is_zero;
  atomic_fetch_add_explicit(&_tess_os.large_bytes, bsize, memory_order_relaxed);
  _tess_os_in_use_add(slices << TESS_SLICE_SHIFT);
  return page->start;
}

bool _tess_arena_large_aligned_fits(size_t size, size_t alignment) {
  if (size > TESS_LARGE_MAX || alignment > TESS_SEGMENT_SIZE / 2) return false;
  size_t slices = (_tess_bin_size(_tess_bin(size)) + TESS_SLICE_SIZE - 1) >> TESS_SLICE_SHIFT;
  return (alignment >> TESS_SLICE_SHIFT) + slices <= TESS_SLICES_PER_SEGMENT;
}

/* Resize a large block in place to the class of `size` (also large): grow
 * into the free span right after it, or give back the slices it no longer
 * needs.  False when the neighbour is not free or too small. */
bool _tess_arena_large_resize(tess_page_t* page, size_t size) {
  size_t bin = _tess_bin(size);
  size_t bsize = _tess_bin_size(bin);
  size_t want = (bsize + TESS_SLICE_SIZE - 1) >> TESS_SLICE_SHIFT;
  tess_segment_t* seg = _tess_segment_of(page);
  size_t idx = span_index(seg, page), have = page->slice_count;
  uint64_t now = _tess_prim_clock_ms();
  if (!arena_lock_segment(seg)) return false;
  if (want > have) {
    size_t end = idx + have;
    tess_page_t* right = end < TESS_SLICES_PER_SEGMENT ? &seg->slices[end] : NULL;
    if (right == NULL || right->kind != TESS_PAGE_FREE || have + right->slice_count < want) {
      _tess_unlock(&arena.lock);
      return false;
    }
    size_t right_count = right->slice_count;
    bin_remove(right);
    void* overwritten = NULL;
    size_t dirty = slices_take(seg, end, want - have, &overwritten);
    span_set(seg, idx, want, TESS_PAGE_LARGE);
    if (have + right_count > want) span_insert_free(seg, idx + want, have + right_count - want, right->freed_at);
    _tess_unlock(&arena.lock);
    if (tess_unlikely(overwritten != NULL)) _tess_freed_overwritten(overwritten);
    _tess_os_committed_add((want - have - dirty) << TESS_SLICE_SHIFT);
    page->is_zero = false;
  } else if (want < have) {
    seg->used_slices -= (uint32_t)(have - want);
    span_set(seg, idx, want, TESS_PAGE_LARGE);
    slices_dirty(seg, idx + want, idx + have, (uint32_t)now);
    span_insert_free(seg, idx + want, have - want, (uint32_t)now);
    purge_list_add(seg, now);
    _tess_unlock(&arena.lock);
  } else {
    _tess_unlock(&arena.lock);
  }
  atomic_fetch_add_explicit(&_tess_os.large_bytes, bsize - page->block_size, memory_order_relaxed);
  atomic_fetch_add_explicit(&_tess_os.pages_in_use_bytes, (want - have) << TESS_SLICE_SHIFT, memory_order_relaxed);
  _tess_page_set_blocks(page, bsize, 1);
  page->bin = (uint8_t)bin;
  return true;
}

/* ---- fork ---------------------------------------------------------------------- */

void _tess_arena_fork_child(void) {
  if (!_tess_lock_is_held(&arena.lock)) return; /* consistent: keep it */
  uint32_t gen = arena.generation + 1;
  memset(&arena, 0, sizeof arena);
  arena.generation = gen;
}

/* ---- debug walker ---------------------------------------------------------------- */

bool _tess_arena_is_valid(void) {
  bool ok = true;
  _tess_lock(&arena.lock);
  size_t dirty = 0;
  for (size_t n = 1; n < TESS_SLICES_PER_SEGMENT; n++) {
    bool has = arena.bins[n] != NULL;
    if (has != ((arena.nonempty >> n) & 1)) ok = false;
    for (tess_page_t* s = arena.bins[n]; s != NULL; s = s->next) {
      if (s->kind != TESS_PAGE_FREE || s->slice_count != n) ok = false;
      tess_segment_t* seg = _tess_segment_of(s);
      if (_tess_segmap_get((uintptr_t)seg) != TESS_SEGMAP_NORMAL) ok = false;
      size_t idx = span_index(seg, s);
      if (idx < 1 || idx + n > TESS_SLICES_PER_SEGMENT) ok = false;
      for (size_t i = idx; i < idx + n && ok; i++) {
        if (seg->slices[i].dirty) dirty++;
        if (i > idx && (seg->slices[i].kind != TESS_PAGE_INNER ||
                        seg->slices[i].slice_offset != (i - idx) * sizeof(tess_page_t))) ok = false;
      }
    }
  }
  /* Spans being purged are out of the bins but still counted dirty. */
  if (dirty > arena.dirty_slices) ok = false;
  _tess_unlock(&arena.lock);
  return ok;
}
