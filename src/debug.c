/* debug.c - invariant walkers for TESS_DEBUG 3: each checks a structure
 * end to end and returns false at the first broken invariant.  Run from
 * the slow paths at that level, and callable from a debugger. */
#include "internal.h"

bool _tess_page_is_valid(tess_page_t* page) {
  if (page->kind != TESS_PAGE_SMALL && page->kind != TESS_PAGE_MEDIUM) return false;
  if (page->capacity > page->reserved || page->used > page->capacity) return false;
  if (page->div_magic != _tess_div_magic(page->block_size) ||
      page->limit != page->capacity * (page->div_magic * page->block_size)) return false;
  if (_tess_bin_size(page->bin) != page->block_size) return false;
  uint32_t free_count = 0;
  tess_block_t* lists[2] = {page->free, page->local_free};
  for (int l = 0; l < 2; l++) {
    for (tess_block_t* b = lists[l]; b != NULL; b = b->next) {
      uintptr_t off = (uintptr_t)b - (uintptr_t)page->start;
      if (off >= _tess_page_area(page) || off % page->block_size != 0 || !_tess_block_sealed(page, b)) return false;
      if (++free_count > page->capacity) return false; /* a cycle */
    }
  }
  /* Blocks on the xthread list are counted in `used` until collected. */
  return free_count + page->used == page->capacity;
}

bool _tess_heap_is_valid(tess_heap_t* heap) {
  for (size_t bin = 1; bin <= TESS_BIN_MEDIUM_LAST; bin++) {
    tess_page_queue_t* q = &heap->queues[bin];
    tess_page_t* prev = NULL;
    for (tess_page_t* p = q->first; p != NULL; prev = p, p = p->next) {
      if (p->prev != prev || p->bin != bin || p->in_full || _tess_page_owner(p) != heap ||
          (p->heap & TESS_HEAP_TAG_FULL))
        return false;
      if (!_tess_page_is_valid(p)) return false;
    }
    if (q->last != prev) return false;
    if (_tess_bin_size(bin) <= TESS_DIRECT_MAX) {
      tess_page_t* want = q->first != NULL ? q->first : &_tess_page_empty;
      if (heap->direct[_tess_bin_size(bin) / TESS_ALIGN] != want) return false;
    }
  }
  for (tess_page_t* p = heap->full.first; p != NULL; p = p->next) {
    if (!p->in_full || _tess_page_owner(p) != heap || !(p->heap & TESS_HEAP_TAG_FULL)) return false;
    if (!_tess_page_is_valid(p)) return false;
  }
  return true;
}
