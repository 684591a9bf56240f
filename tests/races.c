/* races.c - the allocator's shared state under ThreadSanitizer.
 *
 * Built and run in ./test's tsan configuration, where the library is
 * compiled with -fsanitize=thread: every access it makes is checked for
 * a data race, and a race is reported and fails the test (TSan's exit code).
 * The standard names there belong to TSan's own allocator (its runtime comes
 * first in the link), so this program calls the tess_ names only.  In the
 * other configurations it runs as one more multi-threaded stress test.
 *
 * Waves of worker threads share one table of slots.  A step puts a new
 * block (tess_malloc, tess_calloc or tess_aligned_alloc; 16 B to 6 MiB,
 * mostly small) into a random slot and takes out the block that was there,
 * most often another thread's, perhaps one whose thread has exited: it
 * checks the block's pattern (a block handed out twice, or its memory
 * reused while in use, shows as a mismatch), sometimes resizes it with
 * tess_realloc (checking the kept bytes) and frees it.  Some workers leave
 * their blocks in the table and exit at once, so their heaps are abandoned
 * with blocks in use and adopted by later threads; an observer thread reads
 * tess_stats_get and calls tess_trim throughout, beside the purger thread.
 *
 * Each block's first 16 bytes say its size and seed; the pattern covers
 * at most its first 4 KiB and last 64 bytes.  Deterministic seeds; the
 * amount of work is fixed (no timing).  Options: --waves N, --steps N.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "tessera.h"

#define SLOTS 2048
#define THREADS 4
#define HEAD 16

typedef struct {
  size_t size;
  uint64_t seed;
} head_t;

static _Atomic(void*) slots[SLOTS];
static long steps = 4000;
static atomic_bool observing;

static size_t pick_size(uint64_t* r) {
  uint64_t x = th_rand(r) % 1000;
  if (x < 700) return HEAD + th_rand(r) % 256;
  if (x < 930) return 256 + th_rand(r) % 16384;
  if (x < 995) return 16384 + th_rand(r) % (1536 << 10); /* medium and large */
  return (2u << 20) + th_rand(r) % (4u << 20);           /* huge */
}

/* The bytes of a block the pattern covers: [HEAD, front) and [back, size). */
static void spans(size_t size, size_t* front, size_t* back) {
  *front = size < 4096 ? size : 4096;
  *back = size > 4096 + 64 ? size - 64 : *front;
}

static void stamp(unsigned char* p, size_t size, uint64_t seed) {
  head_t h = {size, seed};
  memcpy(p, &h, sizeof h);
  size_t front, back;
  spans(size, &front, &back);
  th_fill(p + HEAD, front - HEAD, 0, size, seed);
  th_fill(p + back, size - back, 1, size, seed);
}

/* Check a block taken from the table; returns its size (0 if unreadable). */
static size_t check_block(const unsigned char* p) {
  size_t usable = tess_usable_size(p);
  head_t h;
  memcpy(&h, p, sizeof h);
  CHECK_MSG(h.size >= HEAD && h.size <= usable, "block %p says %zu bytes, usable %zu", (void*)p, h.size, usable);
  if (h.size < HEAD || h.size > usable) return 0;
  size_t front, back;
  spans(h.size, &front, &back);
  CHECK_MSG(th_verify(p + HEAD, front - HEAD, 0, h.size, h.seed) == front - HEAD, "block %p (%zu B): front changed",
            (void*)p, h.size);
  CHECK_MSG(th_verify(p + back, h.size - back, 1, h.size, h.seed) == h.size - back, "block %p (%zu B): tail changed",
            (void*)p, h.size);
  return h.size;
}

static void* worker(void* arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 7919 + 3;
  bool leaver = th_rand(&r) % 4 == 0; /* exits with its blocks still in the table */
  long n = leaver ? steps / 8 : steps;
  for (long k = 0; k < n; k++) {
    size_t size = pick_size(&r);
    uint64_t seed = th_rand(&r);
    unsigned char* p;
    switch (th_rand(&r) % 10) {
      case 0: p = tess_calloc(1, size); break;
      case 1: {
        size_t align = (size_t)16 << (th_rand(&r) % 10);
        size = (size + align - 1) & ~(align - 1);
        p = tess_aligned_alloc(align, size);
        break;
      }
      default: p = tess_malloc(size); break;
    }
    CHECK(p != NULL);
    if (p == NULL) continue;
    stamp(p, size, seed);
    unsigned char* old = atomic_exchange(&slots[th_rand(&r) % SLOTS], p);
    if (old == NULL) continue;
    size_t had = check_block(old);
    if (had >= HEAD && th_rand(&r) % 6 == 0) {
      size_t to = pick_size(&r);
      unsigned char* q = tess_realloc(old, to);
      CHECK(q != NULL);
      if (q == NULL) continue;
      size_t keep = had < to ? had : to, front, back;
      spans(had, &front, &back);
      if (keep > front) keep = front;
      if (keep > HEAD)
        CHECK_MSG(th_verify(q + HEAD, keep - HEAD, 0, had, ((head_t*)q)->seed) == keep - HEAD,
                  "realloc %zu -> %zu lost bytes", had, to);
      old = q;
    }
    tess_free(old);
  }
  return NULL;
}

static void* observer(void* arg) {
  (void)arg;
  while (atomic_load(&observing)) {
    tess_stats_t s;
    tess_stats_get(&s); /* read while the workers change the figures */
    int t = tess_trim();
    CHECK(t == 0 || t == 1);
  }
  return NULL;
}

int main(int argc, char** argv) {
  long waves = 6;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--waves") == 0) waves = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--steps") == 0) steps = atol(argv[i + 1]);
  }
  atomic_store(&observing, true);
  pthread_t obs;
  CHECK(pthread_create(&obs, NULL, observer, NULL) == 0);
  for (long w = 0; w < waves; w++) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void*)(w * THREADS + i + 1)) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  }
  atomic_store(&observing, false);
  pthread_join(obs, NULL);
  for (int i = 0; i < SLOTS; i++) {
    unsigned char* p = atomic_exchange(&slots[i], NULL);
    if (p != NULL) {
      check_block(p);
      tess_free(p);
    }
  }
  tess_stats_t s;
  tess_stats_get(&s);
  CHECK_EQ(s.huge_count, (size_t)0);
  return th_done();
}
