/* os.c - OS policy: aligned mappings, purging, and the process-wide counters
 * behind the statistics.  Sits on prim_linux.c; used by the arena. */
#include "internal.h"

tess_os_counters_t _tess_os;

/* Linux places mappings top-down, so the range just below the last aligned
 * mapping is usually free and aligned: ask for it first, which saves the
 * over-map-and-trim dance (three system calls) on most segment mappings. */
static _Atomic(uintptr_t) tess_next_hint;

static void counters_mapped(size_t size) {
  atomic_fetch_add_explicit(&_tess_os.mapped, size, memory_order_relaxed);
  atomic_fetch_add_explicit(&_tess_os.mmap_calls, 1, memory_order_relaxed);
}

/* Map `size` bytes aligned to `alignment` (a power of two >= the OS page).
 * Returns NULL (errno untouched) when the OS refuses. */
void* _tess_os_map_aligned(size_t size, size_t alignment, uint8_t** map_base, size_t* mapped) {
  if (tess_unlikely(_tess_segmap.entries != TESS_SEGMAP_ENTRIES)) return NULL; /* see _tess_segmap_init */
  void* p = NULL;
  uintptr_t hint = atomic_load_explicit(&tess_next_hint, memory_order_relaxed);
  if (hint != 0 && hint > size && alignment <= TESS_SEGMENT_SIZE) {
    void* want = (void*)((hint - size) & ~(alignment - 1));
    if (_tess_prim_map(want, size, &p) == 0) {
      if (((uintptr_t)p & (alignment - 1)) == 0) goto done;
      _tess_prim_unmap(p, size);
      atomic_fetch_add_explicit(&_tess_os.munmap_calls, 1, memory_order_relaxed);
    }
  }
  if (size + alignment < size) return NULL;
  void* raw;
  if (_tess_prim_map(NULL, size + alignment, &raw) != 0) return NULL;
  uintptr_t start = ((uintptr_t)raw + alignment - 1) & ~(alignment - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = alignment - head;
  if (head > 0) _tess_prim_unmap(raw, head);
  if (tail > 0) _tess_prim_unmap((void*)(start + size), tail);
  p = (void*)start;
done:
  atomic_store_explicit(&tess_next_hint, (uintptr_t)p, memory_order_relaxed);
  counters_mapped(size);
  *map_base = (uint8_t*)p;
  *mapped = size;
  return p;
}

void _tess_os_unmap(void* base, size_t size) {
  _tess_prim_unmap(base, size);
  atomic_fetch_sub_explicit(&_tess_os.mapped, size, memory_order_relaxed);
  atomic_fetch_add_explicit(&_tess_os.munmap_calls, 1, memory_order_relaxed);
}

void _tess_os_purge(void* p, size_t size) { _tess_os_purge_part(p, size, size); }

/* Purge [p, p+size), of which only `resident` bytes may hold pages (the
 * rest was purged before): the statistics count those. */
void _tess_os_purge_part(void* p, size_t size, size_t resident) {
  if (_tess_prim_purge(p, size) == 0) {
    atomic_fetch_add_explicit(&_tess_os.purged, resident, memory_order_relaxed);
  }
}

void _tess_os_committed_add(size_t n) {
  size_t now = atomic_fetch_add_explicit(&_tess_os.committed, n, memory_order_relaxed) + n;
  size_t peak = atomic_load_explicit(&_tess_os.committed_peak, memory_order_relaxed);
  while (now > peak && !atomic_compare_exchange_weak_explicit(&_tess_os.committed_peak, &peak, now,
                                                              memory_order_relaxed, memory_order_relaxed)) {
  }
}

void _tess_os_committed_sub(size_t n) {
  atomic_fetch_sub_explicit(&_tess_os.committed, n, memory_order_relaxed);
}

/* Page bytes now in use grew: raise the recent high-water mark. */
void _tess_os_in_use_add(size_t n) {
  size_t now = atomic_fetch_add_explicit(&_tess_os.pages_in_use_bytes, n, memory_order_relaxed) + n;
  size_t recent = atomic_load_explicit(&_tess_os.in_use_recent, memory_order_relaxed);
  while (now > recent && !atomic_compare_exchange_weak_explicit(&_tess_os.in_use_recent, &recent, now,
                                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}
