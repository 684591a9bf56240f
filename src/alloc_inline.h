/* alloc_inline.h - the malloc and free fast paths, inlined into both the
 * tess_ API (alloc.c, free.c) and the standard names (override.c), so that
 * neither pays a call to reach the other.
 *
 * Budgets, the return included (x86-64, gcc -O2; callgrind counts them
 * exactly, see bench/run --callgrind, which measures a malloc/free pair):
 *   malloc, size <= 1024, page has a free block:        18 instructions,
 *     of which 3 check the block's seal (a block written after its free is
 *     reported, its link not followed)
 *   free, block of this thread's one-slice page, page not empty:
 *                                                       34 instructions,
 *     of which 15 are the always-on checks (the segment map's bound and
 *     lookup, the block-boundary multiply-compare, the seal) that let a bad
 *     free be reported instead of corrupting the heap, and 2 write the
 *     seal; 3 more when the block was its page's last and the page is the
 *     only one of its class (kept: a malloc/free loop empties it each time).
 * Each has one branch to its slow path for everything else.
 */
#ifndef TESS_ALLOC_INLINE_H
#define TESS_ALLOC_INLINE_H

#include "internal.h"

/* The malloc fast path.  Everything else goes to slow(size, false), a
 * tail call: malloc's slow path, or operator new's, which also handles
 * running out of memory (so new's fast path is malloc's, instruction for
 * instruction). */
static TESS_ALWAYS_INLINE void* _tess_malloc_inline_with(size_t size, void* (*slow)(size_t, bool)) {
  tess_heap_t* heap = _tess_heap_get();
  if (tess_likely(size <= TESS_DIRECT_MAX)) {
    tess_page_t* page = heap->direct[(size + TESS_ALIGN - 1) / TESS_ALIGN];
    tess_block_t* block = page->free;
#if defined(__x86_64__) && defined(__GNUC__)
    /* In the return register from the start: gcc otherwise loads the block
     * elsewhere and copies it there at the end (one instruction more). */
    __asm__("" : "+a"(block));
#endif
    if (tess_likely(block != NULL)) return _tess_page_take(page, block);
  }
  return slow(size, false);
}

static TESS_ALWAYS_INLINE void* _tess_malloc_inline(size_t size) {
  return _tess_malloc_inline_with(size, _tess_malloc_generic);
}

/* Is p (at offset `off` from page->start) the start of a carved block?
 * (See _tess_div_magic.) */
static inline bool _tess_is_block_start(const tess_page_t* page, uintptr_t off) {
  return off * page->div_magic < tess_racy_fast(page->limit);
}

/* Only a block that carries a seal, free or in flight (see
 * _tess_seal_of), needs the slow check. */
static inline bool _tess_maybe_double_free(const tess_page_t* page, const tess_block_t* b) {
  return _tess_seal_of(page, b) <= TESS_SEAL_SUSPECT;
}

TESS_NOINLINE void _tess_free_local_checked(tess_page_t* page, tess_block_t* b, const char* call);
TESS_NOINLINE void _tess_free_page(tess_page_t* page, void* p, size_t size, const char* call);
TESS_NOINLINE void _tess_free_owned_page(tess_page_t* page, tess_block_t* b, size_t size, const char* call);
TESS_NOINLINE void _tess_free_sized_checked(void* p, size_t size, const char* call);

/* free, told by the caller (C++ sized delete, free_sized) that the block
 * holds `size` bytes, or 0 if it does not say (plain free: the size tests
 * fold away).  A size larger than the block is reported: a delete through
 * the wrong type, or a free of the wrong pointer.  On the fast path that
 * costs one compare with the page's block size. */
static TESS_ALWAYS_INLINE void _tess_free_inline_sized(void* p, size_t size, const char* call) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t i = a >> TESS_SEGMENT_SHIFT;
  /* A plain byte load (relaxed atomic on x86), so it folds into the compare. */
  if (tess_likely(i < _tess_segmap.entries &&
                  tess_racy_fast(((const uint8_t*)_tess_segmap.map)[i]) == TESS_SEGMAP_NORMAL)) {
    /* The index is free now: shifting it back is one instruction where
     * masking p (which the compiler would otherwise do) takes two. */
    __asm__("" : "+r"(i));
    tess_segment_t* seg = (tess_segment_t*)(i << TESS_SEGMENT_SHIFT);
    /* The slice's descriptor, not its span head: a page of this heap with
     * an untagged heap word is one slice long (see _tess_slice_of), and
     * the rest go to _tess_free_page. */
    tess_page_t* page = _tess_slice_of(seg, p);
    if (tess_likely(tess_racy_fast(page->heap) == (uintptr_t)_tess_heap_get())) {
      tess_block_t* b = (tess_block_t*)p;
      if (tess_likely(_tess_is_block_start(page, a - (uintptr_t)page->start) &&
                      !_tess_maybe_double_free(page, b) && size <= page->block_size)) {
        _tess_block_push(page, &page->local_free, b);
        if (tess_likely(--page->used != 0)) return;
        /* Empty: kept if alone in its queue (_tess_page_retire; a page
         * whose heap word matched is not on the full list). */
        if (_tess_page_alone(page)) return;
        _tess_page_retire_queued((tess_heap_t*)page->heap, page); /* == this heap */
        return;
      }
      if (size > page->block_size) _tess_free_sized_checked(p, size, call);
      else _tess_free_local_checked(page, b, call);
      return;
    }
    /* Another heap's page, or a full one of ours: a page with an owner is a
     * span head (the others have heap 0), so its fields are its own. */
    if (tess_likely(tess_racy_fast(page->heap) != 0 && _tess_is_block_start(page, a - (uintptr_t)page->start))) {
      _tess_free_owned_page(page, (tess_block_t*)p, size, call);
      return;
    }
    _tess_free_page(page, p, size, call); /* a longer span's later slice, a large block, or invalid */
    return;
  }
  if (size != 0) _tess_free_sized_checked(p, size, call);
  else _tess_free_generic(p, call);
}

static TESS_ALWAYS_INLINE void _tess_free_inline(void* p, const char* call) { _tess_free_inline_sized(p, 0, call); }

#endif /* TESS_ALLOC_INLINE_H */
