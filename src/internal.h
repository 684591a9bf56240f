/* internal.h - declarations shared between tessera's files (`_tess_` names)
 * and the small inline helpers every layer uses: size classes, the segment
 * map, the lock, the thread's heap, debug assertions.
 *
 * Layers (each calls only those below it):
 *   override.c                standard names, C++ operators
 *   alloc.c free.c            public tess_ API; fast paths in alloc_inline.h
 *   page.c                    pages: carving, collecting, queues (slow path)
 *   heap.c                    thread heaps: create, adopt, abandon
 *   segment.c                 arena: segments, spans, coalescing, purge, huge
 *   os.c                      OS policy: aligned mappings, counters
 *   prim_linux.c              system calls
 * beside them: options.c, stats.c, error.c, init.c, debug.c.
 */
#ifndef TESS_INTERNAL_H
#define TESS_INTERNAL_H

#include "types.h"
#include "prim.h"

#include <tessera.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define tess_likely(x) __builtin_expect(!!(x), 1)
#define tess_unlikely(x) __builtin_expect(!!(x), 0)
#define TESS_NOINLINE __attribute__((noinline))
#define TESS_ALWAYS_INLINE inline __attribute__((always_inline))
#define TESS_COLD __attribute__((cold, noinline))
#define TESS_HIDDEN __attribute__((visibility("hidden")))

/* ---- fields read without the lock that guards their writes ---------------
 * Hints rechecked under the lock (a cache's count, a list's head, the
 * arena's dirty total), and a page's owner word and block bounds, which a
 * free from another thread reads while the owner may change the word's tag
 * bits or carve more blocks (each such change leaves any value a racing
 * reader sees usable: see the uses).  Both sides of each such race go
 * through these: relaxed atomic accesses of an aligned word, one plain
 * instruction each on x86-64, which the compiler may neither tear nor read
 * twice, and which ThreadSanitizer then does not report, so that it checks
 * everything else.  tess_racy_fast is for the free fast path: a plain read,
 * which gcc folds into the compare where an atomic load is emitted apart
 * (two instructions more a free under callgrind); an atomic one under
 * ThreadSanitizer, whose build is for checking, not for speed. */
#define tess_racy_load(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define tess_racy_store(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#if defined(__SANITIZE_THREAD__)
#define TESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TESS_TSAN 1
#endif
#endif
#ifdef TESS_TSAN
#define tess_racy_fast(x) tess_racy_load(x)
#else
#define tess_racy_fast(x) (x)
#endif

/* ---- debug assertions (compile away at TESS_DEBUG 0) -------------------- */

TESS_COLD __attribute__((noreturn)) void _tess_assert_fail(const char* expr, const char* file, int line);
#if TESS_DEBUG >= 1
#define tess_assert(x) ((x) ? (void)0 : _tess_assert_fail(#x, __FILE__, __LINE__))
#else
#define tess_assert(x) ((void)0)
#endif
#if TESS_DEBUG >= 2
#define tess_assert_expensive(x) tess_assert(x)
#else
#define tess_assert_expensive(x) ((void)0)
#endif

/* ---- error reporting (error.c) ------------------------------------------ */

/* Report misuse of `call` on pointer p and abort: "tessera: call(p): what". */
TESS_COLD __attribute__((noreturn)) void _tess_error(const char* call, const void* p, const char* what);
/* Report a start-up or option problem and go on. */
TESS_COLD void _tess_warning(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* snprintf-like formatting that never allocates (%s %d %u %zu %p %x %lu). */
int _tess_format(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- options (options.c) -------------------------------------------------- */

typedef struct tess_options_s {
  long purge_delay_ms;         /* TESSERA_PURGE_DELAY: free spans kept this long */
  long dirty_max_mib;          /* TESSERA_DIRTY_MAX: unpurged free memory cap    */
  long show_stats;             /* TESSERA_SHOW_STATS: print statistics at exit   */
  const char* stats_file;      /* TESSERA_STATS_FILE: append JSON at exit        */
  long verbose;                /* TESSERA_VERBOSE: report option values          */
  long background;             /* TESSERA_BACKGROUND: run the purger thread      */
  long hugepages;              /* TESSERA_HUGEPAGES: THP for huge blocks         */
} tess_options_t;

extern tess_options_t _tess_options;
void _tess_options_init(void);

/* ---- size classes ----------------------------------------------------------
 * bin(n): n <= 128: ceil(n/16) (bin 1 for n = 0);
 *         n > 128:  w = n-1, b = floor(log2 w), sub = (w >> (b-3)) & 7,
 *                   bin = 8*(b-6) + sub + 1.
 * size(bin): bin <= 8: 16*bin; else b = (bin-1)/8 + 6, sub = (bin-1)%8,
 *            size = 2^b + (sub+1) * 2^(b-3). */
static inline size_t _tess_bin(size_t n) {
  if (n <= 128) return n <= 16 ? 1 : (n + 15) >> 4;
  size_t w = n - 1;
  size_t b = 63 - (size_t)__builtin_clzl(w);
  return 8 * (b - 6) + ((w >> (b - 3)) & 7) + 1;
}

static inline size_t _tess_bin_size(size_t bin) {
  if (bin <= 8) return bin * 16;
  size_t b = (bin - 1) / 8 + 6, sub = (bin - 1) % 8;
  return ((size_t)1 << b) + (sub + 1) * ((size_t)1 << (b - 3));
}

/* ---- the segment map ------------------------------------------------------ */

/* One byte per 4 MiB of the address space (TESS_SEGMAP_*), mapped at
 * start-up (_tess_arena_init); until then `entries` is 1, so only the
 * first 4 MiB (NULL's) can be looked up.  Hidden, so the free fast path
 * loads both fields directly, no instruction more than a static array. */
typedef struct tess_segmap_s {
  size_t entries;        /* TESS_SEGMAP_ENTRIES once mapped */
  _Atomic(uint8_t)* map;
} tess_segmap_t;
extern TESS_HIDDEN tess_segmap_t _tess_segmap;
void _tess_arena_init(void); /* segment.c: the segment map and the span seal's key */

static inline uint8_t _tess_segmap_get(uintptr_t addr) {
  uintptr_t i = addr >> TESS_SEGMENT_SHIFT;
  if (tess_unlikely(i >= _tess_segmap.entries)) return TESS_SEGMAP_NONE;
  return atomic_load_explicit(&_tess_segmap.map[i], memory_order_relaxed);
}

/* Only for a segment just mapped, so the map is there (_tess_os_map_aligned). */
static inline void _tess_segmap_set(uintptr_t addr, uint8_t v) {
  atomic_store_explicit(&_tess_segmap.map[addr >> TESS_SEGMENT_SHIFT], v, memory_order_release);
}

static inline tess_segment_t* _tess_segment_of(const void* p) {
  return (tess_segment_t*)((uintptr_t)p & ~TESS_SEGMENT_MASK);
}

/* The descriptor of the slice holding p (p inside a normal segment): the
 * page itself for a one-slice (small) page.  A slice inside a longer span
 * has heap == 0, so the free fast path, which compares heap with the
 * thread's own, never takes one for a page. */
static inline tess_page_t* _tess_slice_of(tess_segment_t* seg, const void* p) {
  uintptr_t desc = (((uintptr_t)p & TESS_SEGMENT_MASK) >> TESS_SLICE_SHIFT) << TESS_PAGE_DESC_SHIFT;
  return (tess_page_t*)((uint8_t*)seg->slices + desc);
}

/* The span head of a slice descriptor. */
static inline tess_page_t* _tess_span_head(tess_page_t* slice) {
  return (tess_page_t*)((uint8_t*)slice - slice->slice_offset);
}

/* The span head of the slice holding p (p inside a normal segment). */
static inline tess_page_t* _tess_page_of(tess_segment_t* seg, const void* p) {
  return _tess_span_head(_tess_slice_of(seg, p));
}

static inline uint8_t* _tess_slice_start(tess_segment_t* seg, tess_page_t* slice) {
  return (uint8_t*)seg + ((size_t)(slice - seg->slices) << TESS_SLICE_SHIFT);
}

/* ---- block boundaries ----------------------------------------------------
 * With M = floor(2^64/d) + 1 for block size d (< 2^32), M*d = 2^64 + e for
 * some 1 <= e <= d.  For an offset x = k*d + s (0 <= s < d, x below 2^32),
 * x*M mod 2^64 is k*e when s == 0 and at least M otherwise; an offset
 * before the start wraps to at least M - e - x as well.  So x is the start
 * of one of the first `capacity` blocks iff x*M < capacity*e: one multiply
 * and one compare (_tess_is_block_start), kept in page->div_magic and
 * page->limit. */
static inline uint64_t _tess_div_magic(size_t d) {
  uint64_t m = UINT64_MAX / d + 1;
  return (d & (d - 1)) == 0 ? m + 1 : m; /* floor(2^64/d): one more for d = 2^k */
}

/* `capacity` of the page's blocks are carved.  Other threads' frees read
 * the two (racy) while the owner carves more: either value covers every
 * block handed out before it. */
static inline void _tess_page_set_capacity(tess_page_t* page, uint32_t capacity) {
  tess_racy_store(page->capacity, capacity);
  tess_racy_store(page->limit, capacity * (page->div_magic * page->block_size));
}

/* The page holds blocks of bsize bytes, `capacity` of them carved. */
static inline void _tess_page_set_blocks(tess_page_t* page, size_t bsize, uint32_t capacity) {
  page->block_size = (uint32_t)bsize;
  page->div_magic = _tess_div_magic(bsize);
  _tess_page_set_capacity(page, capacity);
}

/* Bytes of the carved blocks. */
static inline size_t _tess_page_area(const tess_page_t* page) {
  return (size_t)page->capacity * page->block_size;
}

/* ---- purging ---------------------------------------------------------------
 * Slices to purge when `dirty` free slices wait and the allowance is `cap`:
 * none up to the cap; over it, enough to get some way below it, so purges
 * are fewer and larger (spans that had time to merge) instead of one small
 * one per free.  Half the cap, but no more than 4 MiB below it: a program
 * whose allowance is a whole generation of its data (hundreds of MiB) and
 * overshoots it by a few slices must not give half of it back, only to
 * fault it all in again for the next generation (leakexit with one
 * producer: 330,000 page faults, 1.2 s, before; 95,000, 0.6 s, after). */
#define TESS_PURGE_SLACK (((size_t)4 << 20) >> TESS_SLICE_SHIFT)

static inline size_t _tess_purge_excess(size_t dirty, size_t cap) {
  if (dirty <= cap) return 0;
  size_t below = cap / 2 < TESS_PURGE_SLACK ? cap / 2 : TESS_PURGE_SLACK;
  return dirty - (cap - below);
}

/* The purge delay adapts to a program that churns through more memory
 * than it keeps.  Once a second, if the memory taken again within a second
 * of being purged for its age (`refaulted`, in slices: spans set up on it,
 * huge blocks mapped anew after the cache gave one back) came to more than
 * an eighth of what is in use (and 1 MiB), the delay doubles, up to 8
 * times the option but no more than TESS_DELAY_MOST ms; each second with
 * a sixteenth of that halves it back.  A program that frees blocks and
 * allocates others a little later, again and again, otherwise gives the
 * memory back and faults it in anew each time: 2,048 blocks of 0-12 MiB
 * replaced at random by one thread took 1.35M page faults and 17 s (glibc
 * 264,000 and 4.3 s), now about 800,000.  An idle program refaults
 * nothing, so the delay falls back, and even at its longest a burst freed
 * is purged within a second. */
#define TESS_DELAY_SHIFT_MAX 3
#define TESS_DELAY_MOST 400

static inline uint32_t _tess_delay_shift_next(uint32_t shift, size_t refaulted, size_t in_use_slices) {
  size_t churn = in_use_slices / 8 + 16;
  if (refaulted > churn) return shift < TESS_DELAY_SHIFT_MAX ? shift + 1 : shift;
  if (refaulted <= churn / 16 && shift > 0) return shift - 1;
  return shift;
}

static inline uint64_t _tess_delay_of(uint64_t option_ms, uint32_t shift) {
  if (shift == 0 || option_ms >= TESS_DELAY_MOST) return option_ms;
  uint64_t d = option_ms << shift;
  return d < TESS_DELAY_MOST ? d : TESS_DELAY_MOST;
}

/* ---- free blocks: links and seals ----------------------------------------
 * A free block holds the link to the next one and a seal, the link XORed
 * with its page's random key and a state (tess_block_t): on a free list,
 * or in flight to its owner.  The two words check each other: a program
 * that writes over either after the free breaks the seal, so a wild link is
 * never followed (it would have to guess the key).  malloc clears the seal,
 * so in use a block carries none, and one that does was very probably freed
 * already: only that case needs the slow check of a double free (a block in
 * use that holds a seal by chance, or by a copy, merely takes it).  The
 * key's top bit is set (next_key), so a cleared seal matches no state. */
#define TESS_SEAL_FREE 0       /* on a free list of its page                  */
#define TESS_SEAL_IN_FLIGHT 1  /* in a message to its owner                   */
#define TESS_SEAL_SUSPECT 3    /* in a message, but it had a seal when freed: */
                               /* freed twice, unless its owner disagrees     */

/* v ^ page->key.  On x86-64 an XOR with the key in memory: left to itself
 * gcc loads the key once into a register for the fast paths' two uses,
 * which takes one instruction more than two XORs from memory. */
static inline uintptr_t _tess_key_xor(const tess_page_t* page, uintptr_t v) {
#if defined(__x86_64__) && defined(__GNUC__)
  __asm__("xorq %1, %0" : "+r"(v) : "m"(page->key));
  return v;
#else
  return v ^ page->key;
#endif
}
/* The block's seal state (TESS_SEAL_*), or anything above 3 if it has none. */
static inline uintptr_t _tess_seal_of(const tess_page_t* page, const tess_block_t* b) {
  return _tess_key_xor(page, b->seal ^ (uintptr_t)b->next);
}
static inline bool _tess_block_sealed(const tess_page_t* page, const tess_block_t* b) {
  return _tess_seal_of(page, b) == TESS_SEAL_FREE;
}
static inline bool _tess_block_in_flight(const tess_page_t* page, const tess_block_t* b) {
  return (_tess_seal_of(page, b) | 2) == TESS_SEAL_SUSPECT; /* IN_FLIGHT or SUSPECT */
}
/* Link b to next, sealed in `state`. */
static inline void _tess_block_link_as(const tess_page_t* page, tess_block_t* b, tess_block_t* next, uintptr_t state) {
  b->next = next;
  b->seal = _tess_key_xor(page, (uintptr_t)next ^ state);
}
/* Link b to next on a free list of its page. */
static inline void _tess_block_link(const tess_page_t* page, tess_block_t* b, tess_block_t* next) {
  _tess_block_link_as(page, b, next, TESS_SEAL_FREE);
}
/* In the third word of a free medium block whose inside was given back. */
static inline uintptr_t _tess_mark_trimmed(const tess_page_t* page) { return page->key ^ 2; }
TESS_NOINLINE void _tess_page_trim_reused(tess_heap_t* heap, tess_page_t* page, void* p);
/* p, just handed out from page, had its inside given back: the trim cost a
 * fault for nothing, and the heap learns from it (page.c). */
static inline void _tess_page_note_trimmed(tess_heap_t* heap, tess_page_t* page, void* p) {
  if (page->bin > TESS_BIN_SMALL_LAST && tess_unlikely(((uintptr_t*)p)[2] == _tess_mark_trimmed(page))) {
    _tess_page_trim_reused(heap, page, p);
  }
}

/* A free block's seal is broken (found by `call`): reported. */
TESS_COLD __attribute__((noreturn)) void _tess_block_overwritten(const char* call, const tess_page_t* page,
                                                                 const tess_block_t* b);

/* Hand out b, the first block of page->free: its seal checked (one load,
 * one XOR and one compare more than taking the link), unlinked, counted,
 * and the seal cleared (a block in use must not carry it, or a second free
 * would not be caught). */
static inline tess_block_t* _tess_page_take(tess_page_t* page, tess_block_t* b) {
  tess_block_t* next = (tess_block_t*)_tess_key_xor(page, b->seal); /* taken from the seal: one load less */
  if (tess_unlikely(next != b->next)) _tess_block_overwritten("malloc", page, b);
  page->free = next;
  page->used++;
  b->seal = 0;
  return b;
}

/* Put b on the front of a free list of its page. */
static inline void _tess_block_push(const tess_page_t* page, tess_block_t** list, tess_block_t* b) {
  _tess_block_link(page, b, *list);
  *list = b;
}

/* The heap that owns a small or medium page, and the tagged value of
 * page->heap for an owner (types.h, TESS_HEAP_TAG_*). */
static inline tess_heap_t* _tess_page_owner(const tess_page_t* page) {
  return (tess_heap_t*)(tess_racy_load(page->heap) & ~TESS_HEAP_TAG_MASK);
}
bool _tess_purger_running(void); /* purger.c */
static inline uintptr_t _tess_page_heap_tagged(const tess_page_t* page, const void* heap, bool full) {
  bool trims = page->bin > TESS_BIN_SMALL_LAST && !_tess_purger_running(); /* see _tess_page_free_block */
  return (uintptr_t)heap | (trims ? TESS_HEAP_TAG_MEDIUM : 0) | (full ? TESS_HEAP_TAG_FULL : 0);
}

/* ---- a small lock (critical sections are short and make no system call) - */

typedef struct tess_lock_s {
  _Atomic(int) held;
} tess_lock_t;

static inline void _tess_lock(tess_lock_t* l) {
  for (int spins = 0;; spins++) {
    if (!atomic_exchange_explicit(&l->held, 1, memory_order_acquire)) return;
    while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
      if (spins++ < 64) __builtin_ia32_pause();
      else _tess_prim_yield();
    }
  }
}
static inline void _tess_unlock(tess_lock_t* l) {
  atomic_store_explicit(&l->held, 0, memory_order_release);
}
static inline bool _tess_lock_is_held(tess_lock_t* l) {
  return atomic_load_explicit(&l->held, memory_order_relaxed) != 0;
}

/* ---- the thread's heap ----------------------------------------------------- */

/* Every thread starts on the empty heap (all direct entries point to the
 * empty page), so the fast path needs no initialisation check: it fails over
 * to the slow path, which gives the thread a real heap. */
extern __thread tess_heap_t* _tess_heap_tls __attribute__((tls_model("initial-exec")));
extern tess_heap_t _tess_heap_empty;
extern tess_page_t _tess_page_empty;

static inline tess_heap_t* _tess_heap_get(void) { return _tess_heap_tls; }

/* heap.c */
tess_heap_t* _tess_heap_init_thread(void);      /* give this thread a heap */
void _tess_heap_thread_done(void* heap);        /* thread exit: abandon it */
bool _tess_heap_thread_exited(void);            /* this thread's heap was given back at its exit */
tess_heap_t* _tess_heap_lend(void);             /* after exit: a heap for one call, */
void _tess_heap_return(tess_heap_t* heap);      /*   given back after it          */
void _tess_heap_drain_remote(tess_heap_t* heap);
void _tess_heap_scavenge_abandoned(void);       /* clean one abandoned heap */
void _tess_heap_scavenge_all(bool pending_only); /* clean them all (trim) */
bool _tess_heap_abandoned_pending(void);        /* frees since their last clean */
void _tess_heap_note_abandoned_free(tess_heap_t* heap);
void _tess_heap_flush_remote(tess_heap_t* heap);  /* free.c */
void _tess_heap_flush_foreign(tess_heap_t* heap); /* free.c: kept blocks home */
void* _tess_heap_foreign_take(tess_heap_t* heap, size_t bin); /* free.c */
void _tess_heap_drain_inbox(tess_heap_t* heap);  /* free.c */
void _tess_heap_fork_child(void);
size_t _tess_heap_count(void);
size_t _tess_heap_active_count(void);
size_t _tess_heaps_bytes_in_use(void);          /* mallinfo */
size_t _tess_heap_in_use(tess_heap_t* heap, bool bytes); /* page.c, owner only */

/* page.c */
void* _tess_page_malloc_slow(tess_heap_t* heap, size_t size);
void _tess_page_collect(tess_page_t* page);
bool _tess_page_retire_queued(tess_heap_t* heap, tess_page_t* page);

/* A page's last block came back: keep the page or give it back to the arena
 * (false: given back).  The commonest case, a page alone in its queue (a
 * malloc/free loop that empties it every time), is decided inline. */
static inline bool _tess_page_alone(const tess_page_t* page) {
  return ((uintptr_t)page->prev | (uintptr_t)page->next) == 0; /* one load, one or */
}
static inline bool _tess_page_retire(tess_heap_t* heap, tess_page_t* page) {
  if (_tess_page_alone(page) && !page->in_full) return true;
  return _tess_page_retire_queued(heap, page);
}
void _tess_page_free_block(tess_heap_t* heap, tess_page_t* page, tess_block_t* b); /* owner's slow-path free */
void _tess_page_unfull(tess_heap_t* heap, tess_page_t* page);
void _tess_heap_release_pages(tess_heap_t* heap, bool all_empty);
void _tess_heap_park_pages(tess_heap_t* heap);
void _tess_heap_unpark_pages(tess_heap_t* heap);
void _tess_page_queue_remove(tess_heap_t* heap, tess_page_t* page);
tess_page_queue_t* _tess_page_queue_of(tess_heap_t* heap, tess_page_t* page);

/* segment.c: the arena; huge.c: huge blocks */
tess_page_t* _tess_arena_span_alloc(size_t slices, tess_page_kind_t kind, bool* is_zero);
void _tess_arena_span_free(tess_page_t* page);
/* A freed large or huge block gets a seal over its first 16 bytes: two
 * words from a random key and its address.  Taken again while its memory
 * is still resident, a changed seal means the program wrote the block after
 * freeing it (or overflowed into it): reported, as malloc reports a small
 * free block written over.  (Small and medium free blocks carry their own
 * seals, above.)  Purged memory reads as zeros and is not checked. */
extern TESS_HIDDEN uintptr_t _tess_freed_seal_key; /* segment.c, set at start-up */
static inline void _tess_freed_seal_write(void* block) {
  uintptr_t* w = block;
  w[0] = _tess_freed_seal_key ^ (uintptr_t)block;
  w[1] = ~w[0];
}
static inline bool _tess_freed_seal_intact(const void* block) {
  const uintptr_t* w = block;
  uintptr_t seal = _tess_freed_seal_key ^ (uintptr_t)block;
  return w[0] == seal && w[1] == ~seal;
}
TESS_NOINLINE void _tess_freed_overwritten(const void* block); /* error.c: reports and aborts */
void _tess_arena_seal_large(tess_page_t* page); /* a large block being freed: before _tess_arena_span_free */
bool _tess_arena_freed_large_at(const void* p);  /* p: a freed large block, seal intact */
void* _tess_arena_large_alloc(size_t size, size_t alignment); /* alignment: 0, or 128 KiB to 2 MiB */
bool _tess_arena_large_aligned_fits(size_t size, size_t alignment);
bool _tess_arena_large_resize(tess_page_t* page, size_t size);
void* _tess_huge_alloc(size_t size, size_t alignment, bool zero);
void _tess_huge_free(tess_segment_t* seg);
void _tess_huge_cache_purge(bool force);
void _tess_huge_cache_release(size_t bytes); /* give back at least `bytes` of it */
bool _tess_huge_cache_nonempty(void);
void _tess_huge_fork_child(void);
void* _tess_huge_realloc(tess_segment_t* seg, size_t size);
tess_segment_t* _tess_huge_segment_of(const void* p, uint8_t map_value);
bool _tess_huge_was_freed(const void* p, uint8_t map_value);
void _tess_arena_purge(bool force);
uint64_t _tess_purge_delay(void); /* TESSERA_PURGE_DELAY, longer while the program churns */
void _tess_arena_note_refault(size_t bytes); /* a huge block mapped soon after the cache expired one */
void _tess_arena_maybe_purge(void);
void _tess_arena_fork_child(void);

bool _tess_arena_has_dirty(void);
bool _tess_release_all(void);
bool _tess_arena_frugal(void); /* keep little free memory mapped (no purger, or RLIMIT_AS) */
bool _tess_arena_over_allowance(size_t bytes); /* freeing `bytes` more would purge at once */
bool _tess_address_space_limited(void); /* under RLIMIT_AS (checked every 100 ms) */

/* purger.c: the background purger thread (and _tess_purger_running above) */
void _tess_purger_notify(void); /* free memory appeared (any path)        */
void _tess_purger_start(void);  /* start one if asked (malloc paths only) */
void _tess_purger_fork_child(void);

/* os.c: mappings and the counters behind statistics */
typedef struct tess_os_counters_s {
  _Atomic(size_t) mapped;
  _Atomic(size_t) committed;
  _Atomic(size_t) committed_peak;
  _Atomic(size_t) purged;
  _Atomic(size_t) mmap_calls;
  _Atomic(size_t) munmap_calls;
  _Atomic(size_t) huge_count;
  _Atomic(size_t) huge_bytes;
  _Atomic(size_t) large_bytes;
  _Atomic(size_t) segments;
  _Atomic(size_t) pages_in_use_bytes;
  _Atomic(size_t) in_use_recent;   /* high-water mark of pages_in_use_bytes,
                                      halved every second (segment.c)      */
} tess_os_counters_t;
extern tess_os_counters_t _tess_os;

void* _tess_os_map_aligned(size_t size, size_t alignment, uint8_t** map_base, size_t* mapped);
void _tess_os_unmap(void* base, size_t size);
void _tess_os_purge(void* p, size_t size);
void _tess_os_purge_part(void* p, size_t size, size_t resident);
void _tess_os_committed_add(size_t n);
void _tess_os_committed_sub(size_t n);
void _tess_os_in_use_add(size_t n);

/* init.c */
extern _Atomic(int) _tess_init_state; /* 0 none, 1 running, 2 done */
void _tess_process_init(void);
void _tess_cxx_init(void); /* override.c: a C++ program's own operator new/delete */
void _tess_libc_init(void); /* override.c: a program's own realloc and free */

/* alloc.c / free.c internals used by override.c and each other */
void* _tess_malloc_generic(size_t size, bool zero);
void* _tess_aligned_generic(size_t alignment, size_t size, bool zero);
void _tess_free_generic(void* p, const char* call);
size_t _tess_usable_size_checked(const void* p, const char* call);
TESS_COLD void* _tess_fail_enomem(void);

/* stats.c */
void _tess_stats_print_fd(int fd, bool json);
void _tess_stats_append_json(const char* path);

/* debug.c */
bool _tess_heap_is_valid(tess_heap_t* heap);
bool _tess_page_is_valid(tess_page_t* page);
bool _tess_arena_is_valid(void);

#endif /* TESS_INTERNAL_H */
