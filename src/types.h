/* types.h - every noun of tessera, defined once.
 *
 * Glossary
 * --------
 * OS page     4 KiB, the unit the kernel maps, faults in and purges.
 * segment     a 4 MiB region of address space aligned to 4 MiB, mapped with
 *             one mmap.  Its first slice holds the segment header (this
 *             struct and the slice table).  `p & ~TESS_SEGMENT_MASK` finds the
 *             segment of any block inside it.
 * slice       a 64 KiB piece of a segment; slice i starts at seg + i*64 KiB.
 *             Every slice has a descriptor (a tess_page_t) in the header.
 * span        a run of consecutive slices handed out or kept free as one.  The
 *             descriptor of its first slice (the span head) describes it; the
 *             others only point back to the head (slice_offset).
 * page        a span in use for blocks of one size class, owned by one heap:
 *             small pages are 1 slice, medium pages 1 to 8 slices (room for
 *             about 8 blocks).  A large page is
 *             a span holding one large block and owned by no heap.
 * block       what malloc hands out.  No header precedes it: its page and
 *             size class follow from its address.
 * size class  (bin) one of TESS_BIN_COUNT block sizes; a request is rounded up
 *             to the smallest class that fits, found by arithmetic.
 * huge block  a request above TESS_LARGE_MAX: its own mapping (a huge
 *             segment), given back with munmap as soon as it is freed.
 * heap        the per-thread allocation state: a queue of pages per class.
 *             Only the thread that owns a heap touches its queues; a heap
 *             outlives its thread and is adopted by a later one.
 * arena       the process-wide pool of segments and free spans, under one
 *             lock; pages come from it and go back to it.
 * purge       giving free memory back to the OS with madvise(DONTNEED) while
 *             keeping the address range; done after a delay.
 * segment map one byte per 4 MiB of address space saying whether a segment
 *             header starts there: how free() knows a pointer is tessera's
 *             without touching the memory it points to.
 *
 * Memory layout of a segment (4 MiB, aligned to 4 MiB)
 * ----------------------------------------------------
 *
 *   seg                                                      seg + 4 MiB
 *   | slice 0        | slice 1 | slice 2 ... slice 9 | ...     | slice 63 |
 *   | header: struct |  small  |  medium page (8)    |  large  |  free    |
 *   | + slices[64]   |  page   |                     |  span   |  span    |
 *
 * A page of blocks (small: one slice):
 *
 *   page->start          start + capacity*size    start + reserved*size
 *   | block 0 | block 1 | block 2 | ... | block reserved-1 | tail waste |
 *   '---- carved (capacity) ------'-- not yet carved ------'
 *
 * A free block's second word is the link to the next free block and its
 * first a seal, the link XORed with the page's key: malloc checks that the
 * two still agree, then clears the seal; a block in use has no other
 * tessera data (tess_block_t).
 */
#ifndef TESS_TYPES_H
#define TESS_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- build-time configuration ------------------------------------------ */

#ifndef TESS_DEBUG
#define TESS_DEBUG 0
#endif
#if TESS_DEBUG < 0 || TESS_DEBUG > 3
#error "TESS_DEBUG must be 0..3"
#endif
#if !defined(__x86_64__) && !defined(__aarch64__)
#error "tessera is written for 64-bit Linux (x86-64, aarch64)"
#endif

/* ---- geometry ----------------------------------------------------------- */

#define TESS_INTPTR_SHIFT 3
#define TESS_ALIGN 16                       /* every block is aligned to this */
#define TESS_OS_PAGE_SIZE 4096

#define TESS_SLICE_SHIFT 16                 /* 64 KiB slices */
#define TESS_SLICE_SIZE (1UL << TESS_SLICE_SHIFT)
#define TESS_SEGMENT_SHIFT 22               /* 4 MiB segments */
#define TESS_SEGMENT_SIZE (1UL << TESS_SEGMENT_SHIFT)
#define TESS_SEGMENT_MASK (TESS_SEGMENT_SIZE - 1)
#define TESS_SLICES_PER_SEGMENT (TESS_SEGMENT_SIZE / TESS_SLICE_SIZE) /* 64 */
#define TESS_SPAN_MAX (TESS_SLICES_PER_SEGMENT - 1) /* slice 0 is the header */

#define TESS_MEDIUM_PAGE_SLICES 8           /* medium pages: at most 512 KiB */
#define TESS_MEDIUM_PAGE_BLOCKS 8           /*   sized for about 8 blocks    */

/* Address space covered by the segment map: 47-bit user space. */
#define TESS_ADDRESS_BITS 47
#define TESS_SEGMAP_ENTRIES (1UL << (TESS_ADDRESS_BITS - TESS_SEGMENT_SHIFT))

/* ---- size classes ------------------------------------------------------- */
/* Up to 128 bytes classes step by 16 (the alignment forbids finer steps);
 * above, each power of two is split into 8 classes, so a request wastes at
 * most 12.5% of its size (and at most 15 bytes below 128).  See bin.h. */

#define TESS_SMALL_MAX (8 * 1024)           /* in 64 KiB pages: >= 8 blocks */
#define TESS_MEDIUM_MAX (128 * 1024)        /* in 512 KiB pages: >= 4 blocks */
#define TESS_LARGE_MAX (2 * 1024 * 1024)    /* one block per span */
#define TESS_THP_SIZE (2 * 1024 * 1024)     /* a transparent huge page (x86-64) */
#define TESS_DIRECT_MAX 1024                /* sizes served from heap->direct */
#define TESS_DIRECT_COUNT (TESS_DIRECT_MAX / TESS_ALIGN + 1)
#define TESS_REMOTE_BATCH 64                /* remote frees buffered per thread */
#define TESS_REMOTE_CHAINS 4                /*   for at most this many heaps   */
#define TESS_TRIM_PENDING 128                /* sparse medium pages awaiting a trim */

#define TESS_BIN_SMALL_LAST 56              /* bin of 8 KiB */
#define TESS_BIN_MEDIUM_LAST 88             /* bin of 128 KiB */
#define TESS_BIN_COUNT 129                  /* bins 1..128; 128 is 2 MiB */

/* ---- page ---------------------------------------------------------------- */

/* A block's first two words while it is not in use (blocks are at least 16
 * bytes).  The seal makes both words checkable: a write over either breaks
 * it, so malloc never follows a link the program wrote; and it makes a
 * second free cheap to suspect: malloc clears it, so a block whose seal
 * holds was very probably freed already. */
typedef struct tess_block_s {
  uintptr_t seal;   /* on a free list: next ^ page->key; in flight to its
                       owner: next ^ page->key ^ 1; in use: 0, or whatever
                       the program wrote                                   */
  struct tess_block_s* next; /* the next free block (of the list, or of the
                       message in flight), or NULL                          */
} tess_block_t;

typedef enum tess_page_kind_e {
  TESS_PAGE_FREE = 0,     /* head of a free span in the arena */
  TESS_PAGE_SMALL,        /* 1 slice of small blocks, owned by a heap */
  TESS_PAGE_MEDIUM,       /* 8 slices of medium blocks, owned by a heap */
  TESS_PAGE_LARGE,        /* one large block, owned by no heap */
  TESS_PAGE_HUGE,         /* the one page of a huge segment */
  TESS_PAGE_PURGING,      /* free span taken out of the bins while purged */
  TESS_PAGE_HEADER,       /* slice 0: the segment header */
  TESS_PAGE_INNER,        /* a slice inside a span, not its head */
} tess_page_kind_t;

/* Low bits of page->xthread_free (blocks are 16-aligned, so 4 bits are free).
 * NORMAL: the page is in its heap's queue (or not yet full).
 * FULL: the owner moved the page to its full list; the next remote free must
 *       tell the heap (it sets NOTIFIED and pushes the page on remote_pages).
 * NOTIFIED: the page is on the heap's remote_pages stack. */
#define TESS_XFREE_NORMAL 0UL
#define TESS_XFREE_FULL 1UL
#define TESS_XFREE_NOTIFIED 2UL
#define TESS_XFREE_STATE_MASK 3UL

/* page->heap holds the owner heap pointer with tag bits that make the free
 * fast path (which compares page->heap with the thread's heap) send a free
 * to the slow path: FULL while the page is on the owner's full list, MEDIUM
 * on a medium page made while the purger was not running (its frees check
 * whether the page has become sparse, see _tess_page_free_block). */
#define TESS_HEAP_TAG_FULL 1UL
#define TESS_HEAP_TAG_MEDIUM 2UL
#define TESS_HEAP_TAG_MASK 3UL

struct tess_heap_s;

/* A slice descriptor; for the head of a span, the page.  The fields read by
 * the malloc and free fast paths come first, in one cache line. */
typedef struct tess_page_s {
  tess_block_t* free;          /* owner's allocation list; NULL when empty   */
  tess_block_t* local_free;    /* owner's frees since the last collect       */
  uintptr_t heap;              /* owner heap | TESS_HEAP_TAG_*; 0 if none     */
  uintptr_t key;               /* random; seals this page's free blocks      */
  uint8_t* start;              /* address of block 0                         */
  uint64_t div_magic;          /* floor(2^64 / block_size) + 1: see limit     */
  uint64_t limit;              /* capacity * (div_magic * block_size mod 2^64):
                                  x bytes from start is a carved block's start
                                  iff x * div_magic < limit (mod 2^64), one
                                  compare for both "a multiple of the block
                                  size" and "inside the carved blocks"
                                  (_tess_is_block_start)                     */
  uint32_t used;               /* blocks handed out, not yet back on the
                                  owner's lists (remote frees count as used
                                  until collected)                           */
  uint32_t slice_offset;       /* bytes back from this descriptor to its
                                  span head; 0 on the head                   */
  /* ---- second line: slow paths ---- */
  _Atomic(uintptr_t) xthread_free; /* other threads' frees | TESS_XFREE_*   */
  struct tess_page_s* next;    /* heap queue, full list or arena bin link    */
  struct tess_page_s* prev;
  struct tess_page_s* remote_next; /* link on heap->remote_pages            */
  uint32_t block_size;         /* bytes per block (the class size)           */
  uint32_t capacity;           /* blocks carved onto the lists so far        */
  uint32_t reserved;           /* blocks that fit in the page                */
  uint32_t slice_count;        /* slices in this span (head only)            */
  uint8_t kind;                /* tess_page_kind_t                           */
  uint8_t bin;                 /* size class; 0 for free spans               */
  uint8_t in_full;             /* on its heap's full list                    */
  uint8_t dirty;               /* slice: free and touched since last purge   */
  uint8_t is_zero;             /* page: its memory was all zero when handed
                                  out (fresh or purged)                      */
  uint8_t trim_pending;        /* medium page: on its heap's trim list       */
  uint8_t sealed;              /* slice: a freed large block starts here and
                                  its first 16 bytes hold the span seal
                                  (see _tess_arena_seal_large)              */
  uint8_t padding[1];
  uint32_t freed_at;           /* free span: ms clock when it last grew (its
                                  newest free memory)                        */
  uint32_t dirty_at;           /* slice: ms clock when it became dirty; the
                                  purge delay runs per slice, so a span that
                                  keeps growing does not keep its old part
                                  resident.  Once purged for its age, when
                                  that was (0: never, or purged over the
                                  cap), to count refaults (see
                                  _tess_delay_shift_next); 0 in use.
                                  (The descriptor is 128 bytes,
                                  so a slice index becomes its address with
                                  a shift.)                                 */
} tess_page_t;

_Static_assert(sizeof(tess_page_t) == 128, "slice descriptors are 128 bytes");
_Static_assert(offsetof(tess_page_t, slice_offset) + sizeof(uint32_t) <= 64,
               "the fast-path fields fit in the descriptor's first cache line");
#define TESS_PAGE_DESC_SHIFT 7

/* ---- segment ------------------------------------------------------------- */

typedef enum tess_segment_kind_e {
  TESS_SEGMENT_NORMAL = 1,     /* 64 slices, pages and spans                  */
  TESS_SEGMENT_HUGE,           /* one huge block                              */
} tess_segment_kind_t;

/* Values of a segment-map byte. */
#define TESS_SEGMAP_NONE 0      /* not tessera's                               */
#define TESS_SEGMAP_NORMAL 1    /* a normal segment header starts here         */
#define TESS_SEGMAP_HUGE 2      /* a huge segment header starts here           */
#define TESS_SEGMAP_HUGE_BACK 3 /* 3+k: the block of a huge segment whose
                                   header is 2^k segments lower starts in
                                   this 4 MiB (alignments of 4 MiB and up) */

typedef struct tess_segment_s {
  uint32_t kind;               /* tess_segment_kind_t                         */
  uint32_t generation;         /* arena generation it belongs to (fork)       */
  size_t mapped;               /* bytes mapped for it (huge: whole mapping)   */
  uint8_t* map_base;           /* start of its mapping (huge: may precede it) */
  uint32_t used_slices;        /* slices in spans handed out (normal)         */
  uint32_t dirty_slices;       /* free slices not purged (normal)             */
  struct tess_segment_s* next; /* arena's list of segments with dirty slices  */
  struct tess_segment_s* prev;
  uint8_t in_purge_list;
  uint64_t dirty_since;        /* ms: oldest free-and-dirty time              */
  size_t huge_size;            /* huge: usable bytes of the block             */
  size_t huge_asked;           /* huge: bytes last asked for (malloc, realloc) */
  /* normal; huge uses [0].  Cache-line aligned, so that each descriptor's
   * fast-path fields share one line (the fields above end at byte 72). */
  tess_page_t slices[TESS_SLICES_PER_SEGMENT] __attribute__((aligned(64)));
} tess_segment_t;

/* ---- heap ---------------------------------------------------------------- */

typedef struct tess_page_queue_s {
  tess_page_t* first;
  tess_page_t* last;
} tess_page_queue_t;

typedef enum tess_heap_state_e {
  TESS_HEAP_ACTIVE = 1,        /* owned by a live thread                      */
  TESS_HEAP_ABANDONED,         /* its thread exited; on the arena's pool      */
} tess_heap_state_t;

/* Blocks this thread freed into pages of one other heap, not yet sent.
 * A block in flight has the next block in its second word and the
 * in-flight seal in its first; sending splices the chain onto the front of
 * the owner's inbox, one list through the second words. */
typedef struct tess_remote_chain_s {
  struct tess_heap_s* owner;
  tess_block_t* head;
  tess_block_t* tail;
  uint32_t count;
} tess_remote_chain_t;

#define TESS_FOREIGN_WINDOW 256

typedef struct tess_heap_s {
  tess_page_t* direct[TESS_DIRECT_COUNT]; /* size/16 -> first page of its bin */
  tess_page_queue_t queues[TESS_BIN_COUNT]; /* pages that may have free blocks */
  tess_page_queue_t full;      /* pages with no free block                    */
  _Atomic(tess_page_t*) remote_pages; /* full pages other threads freed into  */
  uint64_t rng;                /* xorshift state for page keys                */
  uint32_t state;              /* tess_heap_state_t                           */
  uint32_t id;                 /* creation order, for statistics              */
  struct tess_heap_s* next;    /* on the abandoned pool                       */
  struct tess_heap_s* next_all; /* every heap ever made (heaps are never freed) */
  _Atomic(uint32_t) abandoned_frees; /* frees into it while abandoned      */
  _Atomic(uint32_t) abandoned_live; /* blocks its pages held when abandoned */
  _Atomic(uint32_t) abandoned_cleaned; /* abandoned_frees at its last clean */
  _Atomic(tess_block_t*) inbox; /* messages of blocks other threads freed
                                  into this heap's pages (see free.c)        */
  _Atomic(uint32_t) inbox_pending; /* blocks sent to inbox, not yet drained    */
  _Atomic(uint32_t) lag_since; /* ms clock (low 32 bits) when inbox_pending
                                  last passed TESS_FOREIGN_LAG (free.c)      */
  uint32_t remote_count;       /* chains in use in remote                     */
  uint32_t remote_blocks;      /* blocks in them                              */
  tess_remote_chain_t remote[TESS_REMOTE_CHAINS]; /* this thread's frees into
                                  other heaps' pages, a chain per owner heap */
  _Atomic(size_t) page_bytes;  /* bytes of the pages it owns (statistics;
                                  written by the owner, read by anyone)      */
  uint32_t trim_count;         /* sparse medium pages waiting to be trimmed,  */
  size_t trim_bytes;           /*   the free bytes they hold (an estimate),   */
  size_t trim_boost;           /* learned budget: trimmed blocks reused      */
  uint64_t trim_boost_at;      /* ms clock of its last halving               */
  struct {                     /*   oldest first (page.c, trim_note)         */
    tess_page_t* page;
    size_t bytes;
  } trim[TESS_TRIM_PENDING];
  uint32_t foreign_count;      /* blocks of lagging heaps kept for reuse,     */
  size_t foreign_bytes;        /*   their bytes, and a list per class (see    */
  tess_block_t* foreign[TESS_BIN_MEDIUM_LAST + 1]; /* foreign_keep, free.c) */
  uint32_t window_mallocs;     /* slow-path mallocs and remote frees in the   */
  uint32_t window_remote;      /*   current window of TESS_FOREIGN_WINDOW     */
  uint8_t keep_off;            /*   slow mallocs; keep_off: fewer remote frees
                                  than that in the last one (foreign_keep)   */
} tess_heap_t;

#endif /* TESS_TYPES_H */
