/* api_conformance.c - the allocation API behaves as the C/POSIX/glibc
 * contracts and tessera.h say.
 *
 * One source, three programs (chosen at compile time):
 *   API_TESS      the tess_ names (linked against libtessera)
 *   API_STD       the standard names, linked against libtessera.so
 *   API_PRELOAD   the standard names, NOT linked against tessera; ctest runs
 *                 it under LD_PRELOAD=libtessera.so with --expect-tessera.
 *                 Run alone it tests glibc (tessera-only checks skipped).
 *
 * Every call goes through a table of function pointers read through a
 * volatile pointer, so the compiler cannot fold or drop an allocation.
 *
 * "Served by tessera" is checked with tess_stats_get: a huge block (8 MiB,
 * above the 2 MiB large limit) has its own mapping, so allocating one must
 * raise huge_count by one and freeing it lower it by one.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include <time.h>

#include "tessera.h"

#if defined(API_TESS) + defined(API_STD) + defined(API_PRELOAD) != 1
#error "define exactly one of API_TESS, API_STD, API_PRELOAD"
#endif

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define HUGE_PROBE (8 * MiB) /* certainly a huge block: its own mapping */

/* ---- the entry points under test ----------------------------------------- */

#if !defined(API_TESS)
/* Not in glibc 2.36's headers, or not in glibc at all (free_sized,
 * __posix_memalign), or only as a compat symbol (cfree): looked up at run
 * time with dlsym, so the program links against glibc alone too and sees
 * the preloaded library's definitions.  Under tessera they must resolve. */
static void (*free_sized_p)(void* p, size_t size);
static void (*free_aligned_sized_p)(void* p, size_t alignment, size_t size);
static void (*cfree_p)(void* p);
static void* (*libc_malloc_p)(size_t);
static void (*libc_free_p)(void*);
static void* (*libc_calloc_p)(size_t, size_t);
static void* (*libc_realloc_p)(void*, size_t);
static void* (*libc_memalign_p)(size_t, size_t);
static void* (*libc_valloc_p)(size_t);
static void* (*libc_pvalloc_p)(size_t);
static int (*posix_memalign2_p)(void**, size_t, size_t);

static void lookup_optional_names(void) {
  *(void**)&free_sized_p = dlsym(RTLD_DEFAULT, "free_sized");
  *(void**)&free_aligned_sized_p = dlsym(RTLD_DEFAULT, "free_aligned_sized");
  *(void**)&cfree_p = dlsym(RTLD_DEFAULT, "cfree");
  *(void**)&libc_malloc_p = dlsym(RTLD_DEFAULT, "__libc_malloc");
  *(void**)&libc_free_p = dlsym(RTLD_DEFAULT, "__libc_free");
  *(void**)&libc_calloc_p = dlsym(RTLD_DEFAULT, "__libc_calloc");
  *(void**)&libc_realloc_p = dlsym(RTLD_DEFAULT, "__libc_realloc");
  *(void**)&libc_memalign_p = dlsym(RTLD_DEFAULT, "__libc_memalign");
  *(void**)&libc_valloc_p = dlsym(RTLD_DEFAULT, "__libc_valloc");
  *(void**)&libc_pvalloc_p = dlsym(RTLD_DEFAULT, "__libc_pvalloc");
  *(void**)&posix_memalign2_p = dlsym(RTLD_DEFAULT, "__posix_memalign");
}
#if defined(API_STD)
/* Linked against libtessera: the names must also resolve at link time. */
extern void free_sized(void* p, size_t size);
extern void free_aligned_sized(void* p, size_t alignment, size_t size);
extern void cfree(void* p);
extern void* __libc_malloc(size_t);
extern int __posix_memalign(void**, size_t, size_t);
static void* volatile link_time_refs[] = {(void*)free_sized, (void*)free_aligned_sized,
                                          (void*)cfree, (void*)__libc_malloc,
                                          (void*)__posix_memalign};
#endif
#define __libc_malloc libc_malloc_p
#define __libc_free libc_free_p
#define __libc_calloc libc_calloc_p
#define __libc_realloc libc_realloc_p
#define __libc_memalign libc_memalign_p
#define __libc_valloc libc_valloc_p
#define __libc_pvalloc libc_pvalloc_p
#define __posix_memalign posix_memalign2_p
#endif

typedef struct api_s {
  const char* name;
  void* (*malloc)(size_t);
  void* (*calloc)(size_t, size_t);
  void* (*realloc)(void*, size_t);
  void* (*reallocarray)(void*, size_t, size_t);
  void (*free)(void*);
  void (*free_sized)(void*, size_t);
  void (*free_aligned_sized)(void*, size_t, size_t);
  void* (*aligned_alloc)(size_t, size_t);
  int (*posix_memalign)(void**, size_t, size_t);
  size_t (*usable_size)(void*);
  /* standard names only (NULL for the tess_ table) */
  void* (*memalign)(size_t, size_t);
  void* (*valloc)(size_t);
  void* (*pvalloc)(size_t);
  void (*cfree)(void*);
} api_t;

#if defined(API_TESS)
static size_t tess_usable_size_nc(void* p) { return tess_usable_size(p); }
static const api_t api_table = {
    "tess_", tess_malloc, tess_calloc, tess_realloc, tess_reallocarray, tess_free,
    tess_free_sized, tess_free_aligned_sized, tess_aligned_alloc, tess_posix_memalign,
    tess_usable_size_nc, NULL, NULL, NULL, NULL,
};
static const api_t* volatile A = &api_table;
#else
static api_t api_table = {
    "std", malloc, calloc, realloc, reallocarray, free, NULL, NULL,
    aligned_alloc, posix_memalign, malloc_usable_size, memalign, valloc, pvalloc, NULL,
};
static const api_t* volatile A = &api_table;
#endif

/* Is tessera expected to serve this program?  (Always, except API_PRELOAD
 * run without --expect-tessera, which is a run against glibc.) */
static bool expect_tessera;
static void (*stats_get)(tess_stats_t*);

static size_t page_size;

static bool aligned_to(const void* p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }
static size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

/* Write every usable byte, then check the usable size did not change. */
static void write_all_usable(void* p, size_t request, const char* what) {
  size_t u = A->usable_size(p);
  CHECK_MSG(u >= request, "%s: usable %zu < request %zu", what, u, request);
  memset(p, 0xA5, u);
  CHECK_MSG(A->usable_size(p) == u, "%s: usable size changed after writing", what);
}

/* ---- malloc(0), alignment, usable size, free(NULL) ----------------------- */

static void test_malloc_zero(void) {
  enum { N = 64 };
  void* p[N];
  for (int i = 0; i < N; i++) {
    p[i] = A->malloc(0);
    CHECK(p[i] != NULL);
    if (!p[i]) return;
    CHECK(aligned_to(p[i], 16));
    write_all_usable(p[i], 0, "malloc(0)");
    for (int j = 0; j < i; j++) CHECK_MSG(p[i] != p[j], "malloc(0) #%d == #%d", i, j);
  }
  for (int i = 0; i < N; i++) A->free(p[i]);
}

/* malloc(n) is 16-byte aligned and every usable byte of it is writable. */
static void check_malloc_aligned_usable(size_t n) {
  char what[64];
  void* p = A->malloc(n);
  CHECK_MSG(p != NULL, "malloc(%zu)", n);
  if (!p) return;
  CHECK_MSG(aligned_to(p, 16), "malloc(%zu) = %p", n, p);
  snprintf(what, sizeof what, "malloc(%zu)", n);
  write_all_usable(p, n, what);
  A->free(p);
}

static void test_alignment_and_usable(void) {
  static const size_t big[] = {1100, 2000, 4095, 4096, 4097, 8191, 8192, 8193, 12345, 65536,
                               100000, 131071, 131072, 131073, 262144, 1 * MiB, 2 * MiB - 1,
                               2 * MiB, 2 * MiB + 1, 3 * MiB, 4 * MiB, 4 * MiB + 1, 9 * MiB};
  for (size_t n = 0; n <= 1100; n++) check_malloc_aligned_usable(n);
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_malloc_aligned_usable(big[i]);
  CHECK_EQ(A->usable_size(NULL), 0);
  errno = EILSEQ;
  A->free(NULL);
  CHECK_ERRNO(EILSEQ);
}

/* Many live blocks of mixed sizes, each filled over its whole usable size
 * with its own pattern: blocks that overlap corrupt each other. */
static void test_no_overlap(void) {
  enum { N = 3000 };
  static void* p[N];
  static size_t sz[N];
  uint64_t rng = 42;
  for (int i = 0; i < N; i++) {
    uint64_t r = th_rand(&rng);
    size_t n = (r % 16 == 0) ? r % (600 * KiB) : (r % 4 == 0) ? r % (16 * KiB) : r % 600;
    if (i % 500 == 7) n = 5 * MiB + i;
    p[i] = A->malloc(n);
    CHECK_MSG(p[i] != NULL, "malloc(%zu)", n);
    if (!p[i]) return;
    CHECK(aligned_to(p[i], 16));
    sz[i] = A->usable_size(p[i]);
    CHECK_MSG(sz[i] >= n, "usable %zu < %zu", sz[i], n);
    th_fill(p[i], sz[i], (uintptr_t)i, sz[i], 7);
  }
  for (int i = 0; i < N; i++) {
    size_t bad = th_verify(p[i], sz[i], (uintptr_t)i, sz[i], 7);
    CHECK_MSG(bad == sz[i], "block %d (%p, %zu bytes) overwritten at byte %zu", i, p[i], sz[i], bad);
    CHECK_MSG(A->usable_size(p[i]) == sz[i], "block %d usable size changed", i);
  }
  for (int i = 0; i < N; i++) A->free(p[(i * 7919) % N]);
}

/* ---- calloc -------------------------------------------------------------- */

static void test_calloc(void) {
  static const size_t sizes[] = {0, 1, 8, 16, 24, 100, 1000, 1024, 4096, 8192, 8193, 50000,
                                 131072, 131073, 1 * MiB, 2 * MiB + 1, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    /* Dirty a block of this size first, so recycling has something to hide. */
    void* d = A->malloc(n);
    CHECK(d != NULL);
    if (d) {
      memset(d, 0xEE, A->usable_size(d));
      A->free(d);
    }
    int rounds = n >= MiB ? 4 : 40;
    for (int r = 0; r < rounds; r++) {
      unsigned char* p = r & 1 ? A->calloc(n, 1) : A->calloc(1, n);
      CHECK_MSG(p != NULL, "calloc(%zu)", n);
      if (!p) continue;
      CHECK(aligned_to(p, 16));
      /* All of the usable size, as glibc clears the whole chunk. */
      size_t u = A->usable_size(p), bad = th_first_nonzero(p, u);
      CHECK_MSG(bad == u, "calloc(%zu) round %d: byte %zu of %zu usable is 0x%02x", n, r, bad, u, bad < u ? p[bad] : 0);
      write_all_usable(p, n, "calloc");
      memset(p, 0xEE, A->usable_size(p)); /* dirty again for the next round */
      A->free(p);
    }
  }
  /* Interleaved with other sizes so recycled blocks come from busy pages. */
  void* keep[100];
  for (int i = 0; i < 100; i++) {
    keep[i] = A->malloc(48);
    if (keep[i]) memset(keep[i], 0x77, 48);
  }
  for (int i = 0; i < 100; i += 2) A->free(keep[i]);
  for (int i = 0; i < 100; i += 2) {
    keep[i] = A->calloc(3, 16);
    CHECK(keep[i] != NULL);
    if (keep[i]) CHECK(th_first_nonzero(keep[i], 48) == 48);
  }
  for (int i = 0; i < 100; i++) A->free(keep[i]);
  /* n * size products that do not overflow */
  unsigned char* p = A->calloc(1000, 1000);
  CHECK(p != NULL);
  if (p) CHECK(th_first_nonzero(p, 1000000) == 1000000);
  A->free(p);
}

/* Memory of one size class, dirtied and freed, comes back zeroed through
 * calloc of other classes (pages and spans recycled across classes). */
static void test_calloc_recycled_spans(void) {
  enum { N = 4096 };
  static unsigned char* blk[N];
  static const size_t dirty_sizes[] = {48, 1000, 6000, 40000, 300000, 5 * MiB, 12 * MiB};
  static const size_t clean_sizes[] = {64, 700, 3000, 9000, 100000, 1 * MiB, 3 * MiB, 5 * MiB, 9 * MiB};
  for (size_t d = 0; d < sizeof dirty_sizes / sizeof dirty_sizes[0]; d++) {
    size_t dn = dirty_sizes[d], count = (16 * MiB) / dn;
    if (count > N) count = N;
    for (size_t i = 0; i < count; i++) {
      blk[i] = A->malloc(dn);
      if (blk[i]) memset(blk[i], 0xDB, A->usable_size(blk[i]));
    }
    for (size_t i = 0; i < count; i++) A->free(blk[i]);
    for (size_t c = 0; c < sizeof clean_sizes / sizeof clean_sizes[0]; c++) {
      size_t cn = clean_sizes[c], ccount = (16 * MiB) / cn;
      if (ccount > N) ccount = N;
      size_t bad_blocks = 0;
      for (size_t i = 0; i < ccount; i++) {
        blk[i] = A->calloc(1, cn);
        CHECK_MSG(blk[i] != NULL, "calloc(1, %zu)", cn);
        if (blk[i] && th_first_nonzero(blk[i], cn) != cn) bad_blocks++;
      }
      CHECK_MSG(bad_blocks == 0, "%zu of %zu calloc(%zu) blocks not zero after %zu-byte blocks were "
                "dirtied and freed", bad_blocks, ccount, cn, dn);
      for (size_t i = 0; i < ccount; i++) {
        if (blk[i]) memset(blk[i], 0xDB, cn);
        A->free(blk[i]);
      }
    }
  }
}

/* calloc of a huge block that reuses a freed one: zero everywhere, over
 * pages the freed block wrote and pages it never touched, also when the
 * reused block must grow; and only what the program touches becomes
 * resident, so a program that callocs a big sparse table again and again
 * (mimalloc's test_perf3: calloc(16 GiB) five times) neither waits for nor
 * keeps all of it. */
static void test_calloc_huge_reuse(void) {
  size_t n = 24 * MiB;
  unsigned char* p = A->malloc(n);
  CHECK(p != NULL);
  if (!p) return;
  memset(p, 0xC5, n); /* dense */
  A->free(p);
  p = A->calloc(1, n - 5000); /* reuses the cached block whole: its slack is cleared too */
  CHECK(p != NULL);
  if (!p) return;
  size_t u = A->usable_size(p);
  CHECK_MSG(th_first_nonzero(p, u) == u, "calloc(24 MiB - 5000) after a written 24 MiB block: byte %zu of %zu not zero",
            th_first_nonzero(p, u), u);
  for (size_t i = 0; i + 100 < u; i += 16 * page_size) p[i + 100] = 0xC5; /* sparse */
  p[u - 1] = 0xC5;
  A->free(p);
  size_t grown = n + 40 * MiB;
  p = A->calloc(1, grown);
  CHECK(p != NULL);
  if (!p) return;
  CHECK_MSG(th_first_nonzero(p, grown) == grown, "calloc(64 MiB) after a sparsely written 24 MiB block: byte %zu not zero",
            th_first_nonzero(p, grown));
  A->free(p);

  size_t big = 1024 * MiB, rss0 = th_rss_bytes();
  for (int r = 0; r < 4; r++) {
    unsigned char* q = A->calloc(1, big);
    CHECK_MSG(q != NULL, "calloc(1 GiB) round %d", r);
    if (!q) break;
    size_t rss = th_rss_bytes();
    CHECK_MSG(rss < rss0 + 96 * MiB, "calloc(1 GiB) round %d, two bytes written in each before: RSS grew from %zu to %zu MiB",
              r, rss0 / MiB, rss / MiB);
    CHECK_MSG(q[5] == 0 && q[300 * MiB + 7] == 0 && q[big - 1] == 0, "calloc(1 GiB) round %d: not zero", r);
    q[5] = 9;
    q[300 * MiB + 7] = 7;
    A->free(q);
  }
}

/* ---- realloc --------------------------------------------------------------- */

static const size_t realloc_sizes[] = {
    1, 16, 100, 1000, 4000, 8 * KiB, 8 * KiB + 1, 50000, 128 * KiB, 128 * KiB + 1, 1 * MiB,
    2 * MiB, 2 * MiB + 1, 3 * MiB, 4 * MiB, 4 * MiB + 1, 9 * MiB,
};
#define N_REALLOC_SIZES (sizeof realloc_sizes / sizeof realloc_sizes[0])

static void test_realloc_pairs(void) {
  for (size_t i = 0; i < N_REALLOC_SIZES; i++) {
    for (size_t j = 0; j < N_REALLOC_SIZES; j++) {
      size_t a = realloc_sizes[i], b = realloc_sizes[j];
      uint64_t seed = i * 100 + j;
      void* p = A->malloc(a);
      CHECK_MSG(p != NULL, "malloc(%zu)", a);
      if (!p) continue;
      th_fill(p, a, 0, a, seed);
      void* q = A->realloc(p, b);
      CHECK_MSG(q != NULL, "realloc(%zu -> %zu)", a, b);
      if (!q) {
        A->free(p);
        continue;
      }
      CHECK_MSG(aligned_to(q, 16), "realloc(%zu -> %zu) = %p", a, b, q);
      CHECK_MSG(A->usable_size(q) >= b, "realloc(%zu -> %zu): usable %zu", a, b, A->usable_size(q));
      size_t keep = a < b ? a : b;
      size_t bad = th_verify(q, keep, 0, a, seed);
      CHECK_MSG(bad == keep, "realloc(%zu -> %zu) lost byte %zu", a, b, bad);
      write_all_usable(q, b, "realloc");
      A->free(q);
    }
  }
}

/* One block walked up through every size and back down, and the whole
 * usable size kept each time it grows. */
static void test_realloc_ladder(void) {
  size_t cur = realloc_sizes[0];
  void* p = A->malloc(cur);
  CHECK(p != NULL);
  if (!p) return;
  size_t u = A->usable_size(p);
  th_fill(p, u, 1, 0, 99);
  for (size_t step = 1; step < 2 * N_REALLOC_SIZES - 1; step++) {
    size_t k = step < N_REALLOC_SIZES ? step : 2 * N_REALLOC_SIZES - 2 - step;
    size_t next = realloc_sizes[k];
    void* q = A->realloc(p, next);
    CHECK_MSG(q != NULL, "realloc(%zu -> %zu)", cur, next);
    if (!q) break;
    size_t keep = u < next ? u : next;
    size_t bad = th_verify(q, keep, 1, 0, 99 + step - 1);
    CHECK_MSG(bad == keep, "ladder %zu -> %zu (old usable %zu): lost byte %zu", cur, next, u, bad);
    p = q;
    cur = next;
    u = A->usable_size(p);
    CHECK(u >= next);
    th_fill(p, u, 1, 0, 99 + step);
  }
  A->free(p);
}

/* Fill the whole usable size, grow, and find every old usable byte. */
static void test_realloc_keeps_usable(void) {
  static const size_t sizes[] = {0, 1, 17, 100, 129, 1000, 5000, 8 * KiB, 20000, 128 * KiB,
                                 200000, 1 * MiB, 2 * MiB, 3 * MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    for (int how = 0; how < 3; how++) {
      void* p = A->malloc(sizes[i]);
      CHECK(p != NULL);
      if (!p) continue;
      size_t u = A->usable_size(p);
      th_fill(p, u, 2, u, i);
      size_t grow = how == 0 ? u + 1 : how == 1 ? 2 * u + 16 : u + 3 * MiB;
      void* q = A->realloc(p, grow);
      CHECK(q != NULL);
      if (!q) {
        A->free(p);
        continue;
      }
      size_t bad = th_verify(q, u, 2, u, i);
      CHECK_MSG(bad == u, "malloc(%zu) usable %zu, realloc to %zu: lost byte %zu", sizes[i], u, grow, bad);
      A->free(q);
    }
  }
}

/* Random reallocs among many live blocks, each filled over its whole usable
 * size: a block grown or shrunk in place over its neighbour, or moved
 * without its contents, shows up as a pattern mismatch. */
static void test_realloc_random(void) {
  enum { N = 1500, OPS = 40000 };
  static unsigned char* p[N];
  static size_t u[N];
  static uint64_t seed[N];
  uint64_t rng = 2026;
  size_t bad = 0, fails = 0;
  for (int i = 0; i < N; i++) {
    p[i] = NULL;
    u[i] = 0;
  }
  for (int op = 0; op < OPS; op++) {
    int i = (int)(th_rand(&rng) % N);
    uint64_t r = th_rand(&rng);
    size_t n;
    switch (r % 64) {
      case 0: n = 128 * KiB + (r >> 8) % (2 * MiB); break;   /* large */
      case 1: case 2: case 3: n = 8 * KiB + (r >> 8) % (120 * KiB); break; /* medium */
      default: n = (r >> 8) % (r % 2 ? 600 : 8 * KiB); break;  /* small */
    }
    if (n == 0) n = 1;
    if (p[i] && th_verify(p[i], u[i], (uintptr_t)i, 0, seed[i]) != u[i]) bad++;
    unsigned char* q = A->realloc(p[i], n);
    if (!q) {
      fails++;
      continue;
    }
    size_t keep = u[i] < n ? u[i] : n;
    if (p[i] && th_verify(q, keep, (uintptr_t)i, 0, seed[i]) != keep) bad++;
    p[i] = q;
    u[i] = A->usable_size(q);
    if (u[i] < n) bad++;
    seed[i] = r;
    th_fill(q, u[i], (uintptr_t)i, 0, seed[i]);
  }
  for (int i = 0; i < N; i++) {
    if (p[i] && th_verify(p[i], u[i], (uintptr_t)i, 0, seed[i]) != u[i]) bad++;
    A->free(p[i]);
  }
  CHECK_MSG(fails == 0, "%zu reallocs failed", fails);
  CHECK_MSG(bad == 0, "%zu blocks damaged by random reallocs among live neighbours", bad);
}

static void test_realloc_null_and_zero(void) {
  void* p = A->realloc(NULL, 100);
  CHECK(p != NULL);
  if (p) {
    CHECK(aligned_to(p, 16));
    write_all_usable(p, 100, "realloc(NULL, 100)");
    A->free(p);
  }
  p = A->realloc(NULL, 0);
  CHECK(p != NULL); /* realloc(NULL, 0) is malloc(0) */
  A->free(p);
  static const size_t sizes[] = {1, 100, 10000, 200000, 3 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    p = A->malloc(sizes[i]);
    CHECK(p != NULL);
    CHECK_MSG(A->realloc(p, 0) == NULL, "realloc(p of %zu, 0) must free and return NULL", sizes[i]);
  }
}

/* ---- "free" really frees: a leak shows as growing memory ------------------ */

typedef void* (*alloc_fn)(size_t n);
typedef void (*release_fn)(void* p, size_t n);

/* Allocate, touch and release 256 MiB in blocks of n; report if more than
 * 64 MiB stays resident (or mapped, under tessera). */
static void leak_check(const char* what, alloc_fn get, release_fn put, size_t n) {
  size_t rounds = 256 * MiB / n;
  tess_stats_t s0 = {0}, s1 = {0};
  if (stats_get) stats_get(&s0);
  size_t rss0 = th_rss_bytes();
  for (size_t i = 0; i < rounds; i++) {
    unsigned char* p = get(n);
    if (!p) {
      CHECK_MSG(p != NULL, "%s: allocation %zu of %zu bytes failed", what, i, n);
      return;
    }
    for (size_t k = 0; k < n; k += 512) p[k] = (unsigned char)k; /* fault in */
    put(p, n);
  }
  size_t rss1 = th_rss_bytes();
  CHECK_MSG(rss1 < rss0 + 64 * MiB, "%s (%zu bytes x %zu): RSS grew from %zu to %zu", what, n,
            rounds, rss0, rss1);
  if (stats_get) {
    stats_get(&s1);
    CHECK_MSG(s1.mapped < s0.mapped + 64 * MiB, "%s: tessera mapped grew from %zu to %zu", what,
              s0.mapped, s1.mapped);
  }
}

static void* get_malloc(size_t n) { return A->malloc(n); }
static void* get_aligned(size_t n) { return A->aligned_alloc(256, n); }
static void put_free(void* p, size_t n) { A->free(p); }
static void put_free_sized(void* p, size_t n) { A->free_sized(p, n); }
static void put_free_aligned_sized(void* p, size_t n) { A->free_aligned_sized(p, 256, n); }
static void put_realloc_zero(void* p, size_t n) { CHECK(A->realloc(p, 0) == NULL); }
static void put_cfree(void* p, size_t n) { A->cfree(p); }

static void test_release_functions(void) {
  static const size_t sizes[] = {1000, 256 * KiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    leak_check("free", get_malloc, put_free, n);
    leak_check("realloc(p, 0)", get_malloc, put_realloc_zero, n);
    if (A->free_sized) leak_check("free_sized", get_malloc, put_free_sized, n);
    if (A->free_aligned_sized)
      leak_check("free_aligned_sized", get_aligned, put_free_aligned_sized, n);
    if (A->cfree) leak_check("cfree", get_malloc, put_cfree, n);
  }
}

static void test_free_sized(void) {
  if (expect_tessera) {
    CHECK_MSG(A->free_sized != NULL, "free_sized missing");
    CHECK_MSG(A->free_aligned_sized != NULL, "free_aligned_sized missing");
  }
  if (!A->free_sized || !A->free_aligned_sized) return;
  static const size_t sizes[] = {0, 1, 16, 100, 8 * KiB, 100 * KiB, 1 * MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    void* p = A->malloc(n);
    CHECK(p != NULL);
    errno = EILSEQ;
    A->free_sized(p, n);
    CHECK_ERRNO(EILSEQ);
    /* the usable size is also a size the block may be freed with */
    p = A->malloc(n);
    CHECK(p != NULL);
    A->free_sized(p, A->usable_size(p));
    for (size_t al = 16; al <= 2 * MiB; al <<= 3) {
      p = A->aligned_alloc(al, n);
      CHECK_MSG(p != NULL && aligned_to(p, al), "aligned_alloc(%zu, %zu) = %p", al, n, p);
      errno = EILSEQ;
      A->free_aligned_sized(p, al, n);
      CHECK_ERRNO(EILSEQ);
    }
  }
  A->free_sized(NULL, 0);
  A->free_sized(NULL, 100);
  A->free_aligned_sized(NULL, 64, 100);
}

/* ---- aligned allocation ---------------------------------------------------- */

static void test_posix_memalign_einval(void) {
  static const size_t bad[] = {0, 1, 2, 3, 4, 5, 6, 7, 12, 24, 40, 48, 96, 100, 4097, 3 * 4096,
                               ((size_t)1 << 40) + 8, SIZE_MAX, SIZE_MAX / 2, SIZE_MAX / 2 + 2};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void* sentinel = (void*)(uintptr_t)0xdeadbeef0;
    void* out = sentinel;
    int r = A->posix_memalign(&out, bad[i], 64);
    CHECK_MSG(r == EINVAL, "posix_memalign(align %zu) returned %d", bad[i], r);
    CHECK_MSG(out == sentinel, "posix_memalign(align %zu) changed *out to %p", bad[i], out);
    if (r == 0 && out != sentinel) A->free(out);
  }
  void* out = NULL;
  CHECK_EQ(A->posix_memalign(&out, sizeof(void*), 10), 0);
  CHECK(out != NULL && aligned_to(out, 16));
  A->free(out);
}

static void test_aligned_alloc_einval(void) {
  static const size_t bad[] = {0, 3, 5, 6, 7, 12, 24, 48, 100, 4095, 4097, ((size_t)1 << 40) + 16,
                               SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    void* p = A->aligned_alloc(bad[i], 64);
    CHECK_MSG(p == NULL, "aligned_alloc(%zu, 64) = %p", bad[i], p);
    CHECK_MSG(errno == EINVAL, "aligned_alloc(%zu, 64): errno %d, want EINVAL", bad[i], errno);
    A->free(p);
  }
  /* small powers of two are valid; the block is still 16-aligned */
  for (size_t a = 1; a <= 8; a <<= 1) {
    void* p = A->aligned_alloc(a, 40);
    CHECK_MSG(p != NULL && aligned_to(p, 16), "aligned_alloc(%zu, 40) = %p", a, p);
    A->free(p);
  }
}

/* alignment `al`, sizes around it: every block aligned and fully usable;
 * all live at once, so they also must not overlap. */
static void aligned_round(const char* fname, int which, size_t al) {
  size_t sizes[] = {1, 8, 16, 100, al / 2, al - 1, al, al + 1, 3 * al, 100000};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  void* p[NS];
  size_t u[NS];
  for (int i = 0; i < NS; i++) {
    size_t n = sizes[i];
    p[i] = NULL;
    if (which == 0) {
      void* sentinel = (void*)16;
      void* out = sentinel;
      int r = A->posix_memalign(&out, al, n);
      CHECK_MSG(r == 0, "posix_memalign(%zu, %zu) = %d", al, n, r);
      if (r == 0) p[i] = out;
    } else if (which == 1) {
      p[i] = A->aligned_alloc(al, n);
    } else {
      p[i] = A->memalign(al, n);
    }
    CHECK_MSG(p[i] != NULL, "%s(%zu, %zu) failed", fname, al, n);
    if (!p[i]) continue;
    CHECK_MSG(aligned_to(p[i], al), "%s(%zu, %zu) = %p misaligned", fname, al, n, p[i]);
    u[i] = A->usable_size(p[i]);
    CHECK_MSG(u[i] >= n, "%s(%zu, %zu): usable %zu", fname, al, n, u[i]);
    th_fill(p[i], u[i], (uintptr_t)p[i], n, al);
  }
  for (int i = 0; i < NS; i++) {
    if (!p[i]) continue;
    size_t bad = th_verify(p[i], u[i], (uintptr_t)p[i], sizes[i], al);
    CHECK_MSG(bad == u[i], "%s(%zu, %zu): byte %zu overwritten", fname, al, sizes[i], bad);
    CHECK(A->usable_size(p[i]) == u[i]);
    if (i % 2) {
      /* an aligned block grows like any other, keeping every usable byte */
      void* q = A->realloc(p[i], u[i] + 1000);
      CHECK_MSG(q != NULL, "realloc of %s(%zu, %zu) to %zu", fname, al, sizes[i], u[i] + 1000);
      if (q) {
        bad = th_verify(q, u[i], (uintptr_t)p[i], sizes[i], al);
        CHECK_MSG(bad == u[i], "realloc of %s(%zu, %zu) lost byte %zu of %zu", fname, al,
                  sizes[i], bad, u[i]);
        p[i] = q;
      }
    }
    A->free(p[i]);
  }
}

static void test_alignments(void) {
  for (size_t al = 16; al <= 4 * MiB; al <<= 1) {
    aligned_round("posix_memalign", 0, al);
    aligned_round("aligned_alloc", 1, al);
    if (A->memalign) aligned_round("memalign", 2, al);
  }
  /* alignment 8 = sizeof(void*) is valid for posix_memalign */
  void* out = NULL;
  CHECK_EQ(A->posix_memalign(&out, 8, 100), 0);
  A->free(out);
  /* beyond the segment size, up to 1 GiB (tessera.h: served) */
  for (size_t al = 8 * MiB; al <= 1024 * MiB; al <<= 1) {
    static const size_t sizes[] = {1, 100000, 5 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void* p = A->aligned_alloc(al, sizes[i]);
      CHECK_MSG(p != NULL && aligned_to(p, al), "aligned_alloc(%zu MiB, %zu) = %p", al / MiB,
                sizes[i], p);
      if (p) write_all_usable(p, sizes[i], "aligned_alloc (big alignment)");
      A->free(p);
      out = NULL;
      int r = A->posix_memalign(&out, al, sizes[i]);
      CHECK_MSG(r == 0 && aligned_to(out, al), "posix_memalign(%zu MiB, %zu) = %d, %p", al / MiB,
                sizes[i], r, out);
      if (r == 0) A->free(out);
    }
  }
}

/* Size 0 at every alignment, the big ones included (a block placed by its
 * own mapping): each is a distinct, aligned, freeable block, and making it
 * disturbs no other block.  (tessera once put a 0-byte block with 128 KiB
 * to 16 MiB alignment just past the end of its mapping, and with 4 MiB
 * marked the next segment as its own: freeing a live block there was then
 * refused as an invalid pointer.  jemalloc's posix_memalign test.) */
static void test_aligned_zero_size(void) {
  for (size_t al = 16; al <= 64 * MiB; al <<= 1) {
    void* small = A->malloc(64);
    void* big = A->aligned_alloc(al, MiB);
    CHECK(small != NULL && big != NULL);
    if (small) memset(small, 0x5A, 64);
    if (big) memset(big, 0x5A, MiB);
    void* z[3] = {NULL, NULL, NULL};
    z[0] = A->aligned_alloc(al, 0);
    int r = A->posix_memalign(&z[1], al, 0);
    CHECK_MSG(r == 0, "posix_memalign(%zu, 0) = %d", al, r);
    if (A->memalign) z[2] = A->memalign(al, 0);
    for (int i = 0; i < 3; i++) {
      if (i == 2 && !A->memalign) continue;
      CHECK_MSG(z[i] != NULL && aligned_to(z[i], al), "aligned allocation %d of 0 bytes at %zu: %p", i, al, z[i]);
      for (int j = 0; j < i; j++) CHECK_MSG(z[i] != z[j], "two 0-byte blocks at %zu share %p", al, z[i]);
      CHECK_MSG(z[i] != small && z[i] != big, "a 0-byte block at %zu is a live block's address", al);
    }
    CHECK_MSG(small && ((unsigned char*)small)[63] == 0x5A, "a 0-byte aligned allocation (%zu) changed a block", al);
    CHECK_MSG(big && ((unsigned char*)big)[MiB - 1] == 0x5A, "a 0-byte aligned allocation (%zu) changed a block", al);
    A->free(small); /* refused as invalid if the segment map was overwritten */
    A->free(big);
    for (int i = 0; i < 3; i++) A->free(z[i]);
  }
}

static void test_valloc_pvalloc(void) {
  if (!A->valloc) return;
  static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 100000, 3 * MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    void* p = A->valloc(n);
    CHECK_MSG(p != NULL && aligned_to(p, page_size), "valloc(%zu) = %p", n, p);
    if (p) write_all_usable(p, n, "valloc");
    A->free(p);

    p = A->pvalloc(n);
    CHECK_MSG(p != NULL && aligned_to(p, page_size), "pvalloc(%zu) = %p", n, p);
    if (!p) continue;
    size_t want = n == 0 ? page_size : round_up(n, page_size);
    size_t u = A->usable_size(p);
    CHECK_MSG(u >= want, "pvalloc(%zu): usable %zu < %zu", n, u, want);
    if (expect_tessera)
      CHECK_MSG(u % page_size == 0, "pvalloc(%zu): usable %zu not a page multiple", n, u);
    write_all_usable(p, want, "pvalloc");
    A->free(p);
  }
}

/* ---- errno and usable size over a block's life ----------------------------- */

static void test_free_preserves_errno(void) {
  static const size_t sizes[] = {0, 16, 1000, 10000, 100000, 1 * MiB, 3 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void* p = A->malloc(sizes[i]);
    CHECK(p != NULL);
    errno = EILSEQ;
    A->free(p);
    CHECK_MSG(errno == EILSEQ, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    p = A->aligned_alloc(4096, sizes[i] + 1);
    errno = ENOTTY;
    A->free(p);
    CHECK_MSG(errno == ENOTTY, "free of an aligned %zu-byte block changed errno", sizes[i]);
  }
  /* freeing the last block of a page (page retired) and a full page's block */
  void* blocks[4096];
  for (int i = 0; i < 4096; i++) blocks[i] = A->malloc(64);
  for (int i = 0; i < 4096; i++) {
    errno = ERANGE;
    A->free(blocks[i]);
    if (errno != ERANGE) {
      CHECK_MSG(errno == ERANGE, "free #%d of 64-byte blocks changed errno to %d", i, errno);
      break;
    }
  }
}

/* A big block freed (tessera caches its mapping), then a block aligned to
 * 2 MiB: placed 2 MiB into a reused mapping, it must not leave the freed
 * block's first pages resident in front of it (x264 under ffmpeg: 2 MiB per
 * frame buffer).  RSS grows by what is kept, not more. */
static void test_aligned_reuse_rss(void) {
  enum { N = 16 };
  size_t a = 2700000, b = 5074368;
  void* keep[N];
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* RSS in 4 KiB pages only */
  size_t rss0 = th_rss_bytes();
  for (int i = 0; i < N; i++) {
    char* p = A->malloc(a);
    CHECK(p != NULL);
    if (p) memset(p, 1, a);
    A->free(p);
    keep[i] = A->aligned_alloc(2 * MiB, b);
    CHECK(keep[i] != NULL && ((uintptr_t)keep[i] & (2 * MiB - 1)) == 0);
    if (keep[i]) memset(keep[i], 2, b);
  }
  size_t grew = th_rss_bytes() - rss0, kept = N * b;
  CHECK_MSG(grew < kept + 8 * MiB, "%d blocks of %zu bytes aligned to 2 MiB kept, after %zu-byte ones freed: RSS grew %zu MiB",
            N, b, a, grew / MiB);
  for (int i = 0; i < N; i++) A->free(keep[i]);
  prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
}

/* A huge block that must move to grow (a mapping of ours sits right after
 * its cached range, so growing it in place fails inside tessera): the
 * malloc succeeds, and errno is the program's still, as under glibc. */
static void test_success_preserves_errno(void) {
  size_t n = 256 * MiB, big = 1024 * MiB; /* address space, never touched */
  char* p = A->malloc(n);
  CHECK(p != NULL);
  if (!p) return;
  A->free(p); /* tessera keeps its mapping cached */
  void* guard = MAP_FAILED;
  uintptr_t at = ((uintptr_t)p + n + 4 * MiB - 1) & ~(uintptr_t)(4 * MiB - 1);
  for (int i = 0; i < 4 && guard == MAP_FAILED; i++, at += 4 * MiB) {
    guard = mmap((void*)at, 4 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  }
  errno = EILSEQ;
  char* q = A->malloc(big);
  CHECK_MSG(q != NULL, "malloc(1 GiB)");
  CHECK_MSG(errno == EILSEQ, "a successful malloc(1 GiB) changed errno to %d", errno);
  A->free(q);
  q = A->malloc(n);
  errno = EILSEQ;
  q = A->realloc(q, big / 2);
  CHECK(q != NULL);
  CHECK_MSG(errno == EILSEQ, "a successful realloc to 512 MiB changed errno to %d", errno);
  A->free(q);
  if (guard != MAP_FAILED) munmap(guard, 4 * MiB);
}

static void test_usable_size_constant(void) {
  static const size_t sizes[] = {1, 24, 200, 3000, 9000, 70000, 300000, 3 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void* p = A->malloc(sizes[i]);
    CHECK(p != NULL);
    if (!p) continue;
    size_t u = A->usable_size(p);
    void* others[64];
    for (int k = 0; k < 64; k++) {
      others[k] = A->malloc(sizes[i]);
      memset(p, k, u);
      CHECK_MSG(A->usable_size(p) == u, "usable size of a %zu block changed", sizes[i]);
    }
    for (int k = 0; k < 64; k += 2) A->free(others[k]);
    CHECK(A->usable_size(p) == u);
    for (int k = 1; k < 64; k += 2) A->free(others[k]);
    CHECK(A->usable_size(p) == u);
    A->free(p);
  }
}

/* ---- impossible requests ------------------------------------------------------ */

#define EXPECT_ENOMEM(call)                                               \
  do {                                                                    \
    errno = 0;                                                            \
    void* r_ = (call);                                                    \
    CHECK_MSG(r_ == NULL, "%s returned %p", #call, r_);                   \
    CHECK_MSG(errno == ENOMEM, "%s: errno %d (%s), want ENOMEM", #call, errno, strerror(errno)); \
    if (r_) A->free(r_);                                                  \
  } while (0)

/* Under the kernel's default overcommit policy (heuristic, 0), a request
 * beyond RAM + swap is refused at once, as glibc's malloc refuses it:
 * served, it would only get the program killed when touched. */
static void test_beyond_memory(void) {
  FILE* f = fopen("/proc/sys/vm/overcommit_memory", "r");
  int policy = -1;
  if (f != NULL) {
    if (fscanf(f, "%d", &policy) != 1) policy = -1;
    fclose(f);
  }
  struct sysinfo si;
  if (policy != 0 || sysinfo(&si) != 0) return; /* 1 serves anything, 2 counts all */
  size_t total = ((size_t)si.totalram + si.totalswap) * si.mem_unit;
  size_t n = 4 * total;
  EXPECT_ENOMEM(A->malloc(n));
  EXPECT_ENOMEM(A->calloc(4, total));
  EXPECT_ENOMEM(A->aligned_alloc(1 << 20, n));
  EXPECT_ENOMEM(A->realloc(NULL, n));
  void* p = A->malloc(100);
  errno = 0;
  void* q = A->realloc(p, n);
  CHECK_MSG(q == NULL && errno == ENOMEM, "realloc(100-byte block, 4 x RAM+swap) = %p, errno %d", q, errno);
  A->free(q != NULL ? q : p);
}

static void test_impossible(void) {
  const size_t pmax1 = (size_t)PTRDIFF_MAX + 1;
  EXPECT_ENOMEM(A->malloc(SIZE_MAX));
  EXPECT_ENOMEM(A->malloc(SIZE_MAX - 15));
  EXPECT_ENOMEM(A->malloc(SIZE_MAX - 4096));
  EXPECT_ENOMEM(A->malloc(pmax1));
  EXPECT_ENOMEM(A->malloc((size_t)PTRDIFF_MAX));
  EXPECT_ENOMEM(A->malloc((size_t)1 << 48)); /* more than the address space */
  EXPECT_ENOMEM(A->calloc(SIZE_MAX / 2, 3));
  EXPECT_ENOMEM(A->calloc((size_t)1 << 32, (size_t)1 << 32));
  EXPECT_ENOMEM(A->calloc(SIZE_MAX, SIZE_MAX));
  EXPECT_ENOMEM(A->calloc(1, SIZE_MAX));
  EXPECT_ENOMEM(A->calloc(pmax1, 1));
  EXPECT_ENOMEM(A->reallocarray(NULL, SIZE_MAX / 2, 3));
  EXPECT_ENOMEM(A->realloc(NULL, SIZE_MAX));
  EXPECT_ENOMEM(A->aligned_alloc(64, SIZE_MAX));
  EXPECT_ENOMEM(A->aligned_alloc(4096, pmax1));
  EXPECT_ENOMEM(A->aligned_alloc(1 * MiB, SIZE_MAX - MiB / 2));
  EXPECT_ENOMEM(A->aligned_alloc(4 * MiB, SIZE_MAX - 4 * MiB));
  if (A->memalign) {
    EXPECT_ENOMEM(A->memalign(64, SIZE_MAX));
    EXPECT_ENOMEM(A->memalign(4096, SIZE_MAX - 100));
    EXPECT_ENOMEM(A->valloc(SIZE_MAX));
    EXPECT_ENOMEM(A->valloc(SIZE_MAX - 100));
    EXPECT_ENOMEM(A->pvalloc(SIZE_MAX));      /* rounding up to a page overflows */
    EXPECT_ENOMEM(A->pvalloc(SIZE_MAX - 100));
  }
  /* posix_memalign reports ENOMEM as its result and leaves *out alone */
  {
    void* sentinel = (void*)(uintptr_t)0xabc0;
    void* out = sentinel;
    int r = A->posix_memalign(&out, 64, SIZE_MAX);
    CHECK_MSG(r == ENOMEM, "posix_memalign(64, SIZE_MAX) = %d", r);
    CHECK(out == sentinel);
    out = sentinel;
    r = A->posix_memalign(&out, 1 * MiB, pmax1);
    CHECK_MSG(r == ENOMEM, "posix_memalign(1 MiB, PTRDIFF_MAX+1) = %d", r);
    CHECK(out == sentinel);
  }
  /* an alignment that is a power of two but absurd: NULL, errno set */
  {
    errno = 0;
    void* p = A->aligned_alloc((size_t)1 << 62, 16);
    CHECK_MSG(p == NULL && (errno == ENOMEM || errno == EINVAL),
              "aligned_alloc(2^62, 16) = %p, errno %d", p, errno);
    A->free(p);
  }

  /* failed realloc / reallocarray: NULL, ENOMEM, old block intact */
  static const size_t sizes[] = {10, 5000, 100000, 1 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    void* p = A->malloc(n);
    CHECK(p != NULL);
    if (!p) continue;
    size_t u = A->usable_size(p);
    th_fill(p, u, 3, u, n);
    const size_t big[] = {SIZE_MAX, SIZE_MAX - 8, pmax1, (size_t)1 << 48};
    for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
      errno = 0;
      void* q = A->realloc(p, big[k]);
      CHECK_MSG(q == NULL, "realloc(%zu-byte block, %zu) = %p", n, big[k], q);
      CHECK_MSG(errno == ENOMEM, "realloc(%zu-byte block, %zu): errno %d", n, big[k], errno);
      if (q) { p = q; break; }
    }
    errno = 0;
    void* q = A->reallocarray(p, (size_t)1 << 33, (size_t)1 << 33);
    CHECK_MSG(q == NULL && errno == ENOMEM, "reallocarray overflow: %p errno %d", q, errno);
    if (q) p = q;
    errno = 0;
    q = A->reallocarray(p, SIZE_MAX / 4, 8);
    CHECK_MSG(q == NULL && errno == ENOMEM, "reallocarray overflow: %p errno %d", q, errno);
    if (q) p = q;
    CHECK(A->usable_size(p) == u);
    size_t bad = th_verify(p, u, 3, u, n);
    CHECK_MSG(bad == u, "failed realloc of a %zu-byte block damaged byte %zu", n, bad);
    /* the block is still alive and can still grow */
    q = A->reallocarray(p, 2, n);
    CHECK(q != NULL);
    if (q) {
      CHECK(th_verify(q, u < 2 * n ? u : 2 * n, 3, u, n) == (u < 2 * n ? u : 2 * n));
      p = q;
    }
    A->free(p);
  }
}

/* ---- giving memory back ------------------------------------------------------ */

#if defined(API_TESS)
static int do_trim(void) { return tess_trim(); }
#else
static int do_trim(void) { return malloc_trim(0); }
#endif

/* After 96 MiB of small and medium blocks are written and freed, trimming
 * returns 0 or 1 and leaves RSS (and tessera's committed bytes) at least
 * 48 MiB below the peak, whether the trim itself or an earlier purge gave
 * the memory back. */
static void test_trim_returns_memory(void) {
  enum { N = 24576 };
  static void* blk[N];
  for (int i = 0; i < N; i++) {
    size_t n = i % 4 == 0 ? 12000 : 3000; /* about 96 MiB in all */
    blk[i] = A->malloc(n);
    if (blk[i]) memset(blk[i], 0x11, n);
  }
  size_t rss_peak = th_rss_bytes();
  tess_stats_t s_peak = {0}, s_after = {0};
  if (stats_get) stats_get(&s_peak);
  for (int i = 0; i < N; i++) A->free(blk[(i * 7) % N]);
  int t = do_trim();
  CHECK_MSG(t == 0 || t == 1, "trim returned %d", t);
  size_t rss_after = th_rss_bytes();
  CHECK_MSG(rss_after + 48 * MiB <= rss_peak, "RSS %zu MiB at peak, %zu MiB after free + trim",
            rss_peak / MiB, rss_after / MiB);
  if (stats_get) {
    stats_get(&s_after);
    CHECK_MSG(s_after.committed + 48 * MiB <= s_peak.committed,
              "tessera committed %zu MiB at peak, %zu MiB after free + trim",
              s_peak.committed / MiB, s_after.committed / MiB);
  }
}

/* Grow a buffer with realloc to `top` bytes (half as much again each
 * time, every byte written), free it, `rounds` times; the page faults of
 * each round in faults[]. */
static void regrow_rounds(size_t top, int rounds, long* faults) {
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* faults in 4 KiB pages only */
  for (int round = 0; round < rounds; round++) {
    long f0 = th_minor_faults();
    char* v = NULL;
    size_t cap = 0, len = 0;
    while (len < top) {
      cap = cap ? cap + cap / 2 : 1024;
      char* n = A->realloc(v, cap);
      CHECK(n != NULL);
      if (n == NULL) break;
      CHECK_MSG(len == 0 || (n[0] == (char)round && n[len - 1] == (char)round), "realloc lost the data at %zu bytes", len);
      v = n;
      memset(v + len, round, cap - len);
      len = cap;
    }
    A->free(v);
    faults[round] = th_minor_faults() - f0;
  }
  prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
}

/* A buffer rebuilt again and again by growing it with realloc (a vector
 * doubling, a file read into a growing buffer): after the first round the
 * allocator has the memory, and later rounds should not fault it all in
 * afresh.  tessera reuses a freed huge block whole; realloc used to cut it
 * down to the first huge size and grow it again into fresh pages (2,650
 * faults a round for 8 MB, glibc 36). */
static void test_regrow_reuses_pages(void) {
  long faults[6] = {0};
  bool check = !(expect_tessera && th_keep_nothing());
  /* 11 MiB: the huge block taken whole from the cache keeps its room. */
  size_t top = 11 * MiB;
  long pages = (long)(top / 4096);
  regrow_rounds(top, 4, faults);
  for (int round = 1; round < 4 && check; round++) {
    CHECK_MSG(faults[round] < pages / 2, "round %d of growing a buffer to %zu MiB took %ld page faults (the first %ld)",
              round + 1, top / MiB, faults[round], faults[0]);
  }
  /* 3 MiB, in a program that keeps little free memory: the large blocks
   * of 1-2 MiB it grows through were purged as soon as they were freed,
   * every round (675 faults a round; glibc none after the second).  Once
   * it has needed them again a few times, they are kept. */
  top = 3 * MiB;
  pages = (long)(top / 4096);
  regrow_rounds(top, 6, faults);
  for (int round = 4; round < 6 && check; round++) {
    CHECK_MSG(faults[round] < pages / 4, "round %d of growing a buffer to %zu MiB took %ld page faults (the first %ld)",
              round + 1, top / MiB, faults[round], faults[0]);
  }
}

/* A big block moving to grow (past the largest size it can grow in place
 * to) gives its pages back as they are copied: the move must not hold
 * both copies at once.  glibc moves its mmapped chunks with mremap. */
static void test_move_peak(void) {
  if (!expect_tessera) return;
  size_t old = 1900 * 1024, grown = 2 * old;
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  do_trim(); /* no cached block: the new one is fresh memory */
  char* p = A->malloc(old);
  CHECK(p != NULL);
  void* wall = A->malloc(64 * 1024); /* so it cannot grow into the span after it */
  if (p != NULL) memset(p, 7, old);
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  bool reset = fd >= 0 && write(fd, "5", 1) == 1; /* VmHWM := VmRSS (Linux 4.0) */
  if (fd >= 0) close(fd);
  size_t rss0 = th_rss_bytes();
  char* q = p != NULL ? A->realloc(p, grown) : NULL;
  size_t peak = th_hwm_bytes();
  CHECK(p == NULL || q != NULL);
  if (q != NULL) {
    CHECK_MSG(q[0] == 7 && q[old / 2] == 7 && q[old - 1] == 7, "realloc lost the data");
    if (reset && peak > rss0) {
      CHECK_MSG(peak - rss0 < old / 2, "moving a %zu KiB block to %zu KiB raised the peak RSS by %zu KiB",
                old / 1024, grown / 1024, (peak - rss0) / 1024);
    }
  }
  A->free(q);
  A->free(wall);
  prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
}

/* Freed huge blocks may be kept for reuse, but in a program without the
 * background purger (this one has no threads) what is kept must stay within
 * 66 MiB plus a tenth of the live data (huge.c: 64 MiB for them; 2 MiB and
 * 1/64 of what is in use for unpurged arena memory), since nothing would
 * give it back to a program that stops calling the allocator.  Memory reused that way
 * is not zero, yet calloc must still return zeros. */
static void test_huge_reuse_bounded(void) {
  enum { N = 4 };
  void* big[N];
  size_t size = 40 * MiB;
  tess_stats_t s0 = {0}, s1 = {0};
  if (stats_get) stats_get(&s0);
  for (int i = 0; i < N; i++) {
    big[i] = A->malloc(size);
    CHECK_MSG(big[i] != NULL, "malloc(40 MiB) failed");
    if (big[i]) memset(big[i], 0xab, size);
  }
  for (int i = 0; i < N; i++) A->free(big[i]);
  if (stats_get && expect_tessera) {
    stats_get(&s1);
    size_t live = s1.in_use + s1.huge_bytes + s1.large_bytes;
    size_t kept = s1.committed > s0.committed ? s1.committed - s0.committed : 0;
    CHECK_MSG(kept <= 66 * MiB + live / 10, "%zu MiB of 160 MiB freed kept committed, live %zu MiB", kept / MiB,
              live / MiB);
  }
  for (size_t n = 5 * MiB; n <= 35 * MiB; n += 10 * MiB) {
    unsigned char* p = A->malloc(n); /* may be a reused block */
    CHECK_MSG(p != NULL, "malloc(%zu MiB) failed", n / MiB);
    if (p) {
      memset(p, 0x5c, n);
      A->free(p);
    }
    unsigned char* z = A->calloc(1, n);
    CHECK_MSG(z != NULL, "calloc(%zu MiB) failed", n / MiB);
    if (!z) continue;
    size_t bad = th_first_nonzero(z, n);
    CHECK_MSG(bad == n, "calloc(%zu MiB) after a freed huge block: byte %zu not zero", n / MiB, bad);
    A->free(z);
  }
}

/* Freed huge blocks wait in a cache for the next big request; when the
 * program goes on to need fresh memory for its other blocks instead, the
 * cache is given back in exchange, so that it does not add to the peak (a
 * Fortran program's three freed 2.4 MB matrices were kept while it built
 * its small nodes: 22.5 MB at the peak against glibc's 13.5). */
static void test_huge_cache_yields(void) {
  if (!stats_get || !expect_tessera) return;
  enum { N = 3, SMALL = 3000, NSMALL = 5000 }; /* 15 MB of small blocks */
  do_trim(); /* nothing cached, no free arena memory */
  void* big[N];
  for (int i = 0; i < N; i++) {
    big[i] = A->malloc(2400 * 1000);
    CHECK(big[i] != NULL);
    if (big[i]) memset(big[i], 1, 2400 * 1000);
  }
  for (int i = 0; i < N; i++) A->free(big[i]);
  tess_stats_t s1 = {0}, s2 = {0};
  stats_get(&s1);
  static void* small[NSMALL];
  for (int i = 0; i < NSMALL; i++) {
    small[i] = A->malloc(SMALL);
    CHECK(small[i] != NULL);
    if (small[i]) memset(small[i], 2, SMALL);
  }
  stats_get(&s2);
  size_t grew = s2.committed > s1.committed ? s2.committed - s1.committed : 0;
  CHECK_MSG(grew < (size_t)NSMALL * SMALL - 4 * MiB,
            "%zu KiB of small blocks raised the committed memory by %zu KiB: the cached blocks were kept",
            (size_t)NSMALL * SMALL / 1024, grew / 1024);
  for (int i = 0; i < NSMALL; i++) A->free(small[i]);
}

/* Without the purger (this program has no threads), a freed huge block is
 * kept longer than the purge delay for the next big request: expiring it
 * after 50 ms only made a busy program map and fault in a new one.  The
 * second block comes from the cache, with no new mapping. */
/* Leave a freed, written huge block of n bytes in tessera's cache (after
 * emptying it); false if this run does not test the cache. */
static bool huge_block_cached(size_t n, int fill) {
  if (!expect_tessera || !stats_get || getenv("TESSERA_PURGE_DELAY") != NULL) return false;
  do_trim();
  unsigned char* p = A->malloc(n);
  CHECK_MSG(p != NULL, "malloc(%zu MiB) failed", n / MiB);
  if (!p) return false;
  memset(p, fill, n);
  A->free(p);
  return true;
}

static void test_huge_cache_outlives_delay(void) {
  size_t n = 12 * MiB;
  if (!huge_block_cached(n, 0x6e)) return;
  struct timespec pause = {0, 150 * 1000 * 1000}; /* 3 delays; the cache keeps 20 */
  nanosleep(&pause, NULL);
  tess_stats_t s0 = {0}, s1 = {0};
  stats_get(&s0);
  unsigned char* q = A->malloc(n);
  stats_get(&s1);
  CHECK_MSG(q != NULL, "malloc(12 MiB) failed");
  CHECK_MSG(s1.mmap_calls == s0.mmap_calls, "a huge block freed 150 ms earlier was not reused (%zu new mappings)",
            s1.mmap_calls - s0.mmap_calls);
  A->free(q);
}

/* A freed big block kept for reuse serves a smaller request, but keeps at
 * most 32 MiB more than asked, so the rest of its resident pages goes back
 * instead of staying behind a block that does not use them (sort frees a
 * 100 MB buffer, then asks for 26 MB ones). */
static void test_huge_reuse_trimmed(void) {
  if (!expect_tessera) return; /* another allocator may do as it likes */
  do_trim();
  unsigned char* big = A->malloc(60 * MiB);
  CHECK_MSG(big != NULL, "malloc(60 MiB) failed");
  if (!big) return;
  memset(big, 0x3c, 60 * MiB);
  A->free(big);
  size_t n = 20 * MiB;
  unsigned char* p = A->malloc(n);
  CHECK_MSG(p != NULL, "malloc(20 MiB) failed");
  if (!p) return;
  size_t usable = A->usable_size(p);
  CHECK_MSG(usable >= n && usable <= n + 32 * MiB + 4096, "20 MiB block after a freed 60 MiB one: usable %zu MiB",
            usable / MiB);
  memset(p, 0x5d, n);
  A->free(p);
}

/* calloc and aligned allocations take freed huge blocks from the cache
 * too, with no new mapping: calloc clears the reused memory (it held
 * 0x7a), and an aligned block sits at its alignment inside the reused
 * segment; a freed aligned block serves the next plain one in turn. */
static void test_huge_reuse_calloc_aligned(void) {
  size_t n = 12 * MiB;
  if (!huge_block_cached(n, 0x7a)) return;
  tess_stats_t s0 = {0}, s1 = {0};
  stats_get(&s0);
  unsigned char* z = A->calloc(1, n - 4096);
  CHECK_MSG(z != NULL, "calloc(12 MiB - 4 KiB) failed");
  if (!z) return;
  size_t bad = th_first_nonzero(z, n - 4096);
  CHECK_MSG(bad == n - 4096, "calloc reusing a freed huge block: byte %zu is 0x%02x, not 0", bad,
            bad < n - 4096 ? z[bad] : 0);
  memset(z, 0x7b, n - 4096);
  A->free(z);
  unsigned char* a = A->aligned_alloc(1 * MiB, 8 * MiB);
  CHECK_MSG(a != NULL && ((uintptr_t)a & (MiB - 1)) == 0, "aligned_alloc(1 MiB, 8 MiB) = %p", (void*)a);
  if (!a) return;
  memset(a, 0x7c, 8 * MiB);
  A->free(a);
  unsigned char* b = A->malloc(n);
  CHECK_MSG(b != NULL, "malloc(12 MiB) failed");
  if (b) memset(b, 0x7d, n);
  stats_get(&s1);
  CHECK_MSG(s1.mmap_calls == s0.mmap_calls,
            "calloc, aligned_alloc and malloc after a freed huge block made %zu new mappings, not 0",
            s1.mmap_calls - s0.mmap_calls);
  A->free(b);
}

/* Shrinking an aligned huge block below half its size moves it (mremap is
 * for plain ones): the copy must stop at the new block's end.  It once
 * copied the new size's class size, 143 KB past a 3 MB block's mapping. */
static void test_realloc_shrink_aligned_huge(void) {
  size_t n = 10 * MiB, m = 3000000;
  void* v = NULL;
  CHECK(A->posix_memalign(&v, 4096, n) == 0 && v != NULL);
  if (!v) return;
  memset(v, 0x11, n);
  unsigned char* q = A->realloc(v, m);
  CHECK_MSG(q != NULL, "realloc(aligned 10 MiB, 3 MB) failed");
  if (!q) return;
  size_t bad = th_first_not(q, m, 0x11);
  CHECK_MSG(bad == m, "realloc shrinking an aligned huge block lost byte %zu", bad);
  CHECK(A->usable_size(q) >= m);
  A->free(q);
}

/* A block huge only for its alignment (beyond 64 KiB) can have the usable
 * size of a large one; realloc must not resize it as one (it once took
 * the huge header for an arena segment and crashed). */
static void test_realloc_aligned_huge_large_sizes(void) {
  size_t sizes[] = {200000, 300000, 150000, 1500000, 140000};
  for (size_t al = 128 * 1024; al <= 4 * MiB; al *= 2) {
    void* v = NULL;
    CHECK(A->posix_memalign(&v, al, sizes[0]) == 0 && v != NULL && ((uintptr_t)v & (al - 1)) == 0);
    if (!v) return;
    unsigned char* p = v;
    memset(p, 0x2e, sizes[0]);
    size_t live = sizes[0];
    for (size_t k = 1; k < sizeof sizes / sizeof *sizes; k++) {
      unsigned char* q = A->realloc(p, sizes[k]);
      CHECK_MSG(q != NULL, "realloc(%zu-aligned, %zu) failed", al, sizes[k]);
      if (!q) break;
      size_t keep = live < sizes[k] ? live : sizes[k];
      CHECK_MSG(q[0] == 0x2e && q[keep / 2] == 0x2e && q[keep - 1] == 0x2e,
                "realloc of a %zu-aligned block to %zu lost its contents", al, sizes[k]);
      CHECK(A->usable_size(q) >= sizes[k]);
      memset(q, 0x2e, sizes[k]);
      p = q;
      live = sizes[k];
    }
    A->free(p);
  }
}

/* Blocks aligned to 128 KiB-2 MiB whose size fits in a segment beside the
 * alignment are large blocks on aligned slices of a segment: blocks held
 * at once are distinct, aligned and keep their contents, and a loop of
 * them maps nothing new (each used to be a mapping of its own: an mmap and
 * a munmap a call, 150 times tcmalloc's time). */
static void test_aligned_large_from_segments(void) {
  enum { LIVE = 24, NSIZES = 5 };
  static const size_t sizes[NSIZES] = {1, 64, 5000, 100000, 700000};
  for (size_t al = 128 * 1024; al <= 2 * MiB; al *= 2) {
    unsigned char* live[LIVE] = {0};
    for (int i = 0; i < LIVE; i++) {
      size_t n = sizes[i % NSIZES];
      void* v = NULL;
      int r = A->posix_memalign(&v, al, n);
      CHECK_MSG(r == 0 && v != NULL && aligned_to(v, al), "posix_memalign(%zu KiB, %zu) = %d, %p", al / 1024, n,
                r, v);
      if (r != 0 || v == NULL) break;
      CHECK(A->usable_size(v) >= n);
      memset(v, i + 1, n);
      live[i] = v;
    }
    for (int i = 0; i < LIVE; i++) {
      if (live[i] == NULL) continue;
      size_t n = sizes[i % NSIZES];
      size_t bad = th_first_not(live[i], n, (unsigned char)(i + 1));
      CHECK_MSG(bad == n, "block %d (%zu KiB aligned, %zu bytes) changed at byte %zu", i, al / 1024, n, bad);
      A->free(live[i]);
    }
  }
  /* With TESSERA_PURGE_DELAY=0 the segment may go back between rounds. */
  if (!stats_get || !expect_tessera || getenv("TESSERA_PURGE_DELAY") != NULL) return;
  void* keep = A->malloc(64); /* something in use, as in any program */
  tess_stats_t s1 = {0}, s2 = {0};
  stats_get(&s1);
  for (int i = 0; i < 1000; i++) {
    void* v = NULL;
    CHECK(A->posix_memalign(&v, MiB, 64) == 0 && v != NULL && aligned_to(v, MiB));
    if (v == NULL) break;
    memset(v, 7, 64);
    A->free(v);
  }
  stats_get(&s2);
  CHECK_MSG(s2.mmap_calls - s1.mmap_calls <= 2, "1,000 rounds of posix_memalign(1 MiB, 64) and free made %zu mmap calls",
            s2.mmap_calls - s1.mmap_calls);
  A->free(keep);
}

/* Does the mapping holding p carry the "hg" (MADV_HUGEPAGE) flag in
 * /proc/self/smaps?  -1 if the mapping is not found. */
static int mapping_has_hugepage_advice(const void* p) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return -1;
  char line[512];
  int in = 0, found = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " hg") != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* Huge blocks ask for transparent huge pages only when they span at least
 * two: the header makes the first resident at once, which must not cost a
 * 3 MiB buffer 2 MiB it may never use. */
static void test_huge_page_advice(void) {
  if (!expect_tessera || access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) return;
  const char* opt = getenv("TESSERA_HUGEPAGES");
  int on = opt != NULL && strcmp(opt, "0") != 0; /* off by default */
  do_trim(); /* no cached bigger block may serve the 3 MiB request */
  void* small = A->malloc(3 * MiB);
  void* big = A->malloc(16 * MiB);
  CHECK(small != NULL && big != NULL);
  if (small && big) {
    CHECK_MSG(mapping_has_hugepage_advice(small) == 0, "a 3 MiB block's mapping is advised for huge pages");
    CHECK_MSG(mapping_has_hugepage_advice(big) == on, "16 MiB block: huge-page advice %d, expected %d",
              mapping_has_hugepage_advice(big), on);
  }
  A->free(small);
  A->free(big);
}

/* In a single-threaded program, medium pages that only a few live blocks
 * pin give the inside of their free blocks back: RSS drops with the data
 * even though no page is wholly free.  The live blocks keep their
 * contents, and the memory given back is handed out again, writable (and
 * zero through calloc). */
static void test_sparse_pages_return_memory(void) {
  enum { N = 256, KEEP = 6 };
  size_t size = 40 * KiB; /* a medium class */
  static unsigned char* blk[N];
  for (int i = 0; i < N; i++) {
    blk[i] = A->malloc(size);
    CHECK_MSG(blk[i] != NULL, "malloc(40 KiB) failed");
    if (blk[i]) memset(blk[i], (int)(i & 0xff), size);
  }
  size_t rss_full = th_rss_bytes();
  for (int i = 0; i < N; i++)
    if (i % KEEP != 0) A->free(blk[i]); /* every page keeps live blocks */
  size_t rss_sparse = th_rss_bytes();
  if (expect_tessera) {
    CHECK_MSG(rss_sparse + 4 * MiB <= rss_full, "RSS %zu KiB with 10 MiB of blocks, %zu KiB after freeing 5/6 of them",
              rss_full / KiB, rss_sparse / KiB);
  }
  for (int i = 0; i < N; i += KEEP) {
    bool same = blk[i] && blk[i][0] == (unsigned char)i && blk[i][size / 2] == (unsigned char)i && blk[i][size - 1] == (unsigned char)i;
    CHECK_MSG(same, "live block %d changed when its neighbours were freed", i);
  }
  for (int i = 0; i < N; i++) {
    if (i % KEEP == 0) continue;
    blk[i] = i % 2 ? A->calloc(1, size) : A->malloc(size);
    CHECK_MSG(blk[i] != NULL, "reallocating 40 KiB failed");
    if (!blk[i]) continue;
    if (i % 2) CHECK_MSG(blk[i][0] == 0 && blk[i][size / 2] == 0 && blk[i][size - 1] == 0, "calloc: block %d not zero", i);
    memset(blk[i], 0x77, size);
  }
  for (int i = 0; i < N; i++) {
    if (!blk[i]) continue;
    unsigned char want = i % KEEP == 0 ? (unsigned char)i : 0x77;
    CHECK_MSG(blk[i][size - 1] == want && blk[i][4096] == want, "block %d lost its contents", i);
    A->free(blk[i]);
  }
}

/* ---- served by tessera ------------------------------------------------------ */

/* A huge block raises huge_count by one while it lives. */
static void served(const char* what, void* (*get)(void), void (*put)(void*)) {
  if (!expect_tessera) return;
  CHECK_MSG(stats_get != NULL, "tess_stats_get not found: is tessera loaded?");
  if (!stats_get) return;
  tess_stats_t s0, s1, s2;
  stats_get(&s0);
  void* p = get();
  stats_get(&s1);
  CHECK_MSG(p != NULL, "%s(8 MiB) failed", what);
  CHECK_MSG(s1.huge_count == s0.huge_count + 1, "%s: huge_count %zu -> %zu: not served by tessera",
            what, s0.huge_count, s1.huge_count);
  if (p) memset(p, 1, HUGE_PROBE);
  put(p);
  stats_get(&s2);
  CHECK_MSG(s2.huge_count == s0.huge_count, "%s: huge_count after release %zu, before %zu", what,
            s2.huge_count, s0.huge_count);
}

static void* g_malloc(void) { return A->malloc(HUGE_PROBE); }
static void* g_calloc(void) { return A->calloc(HUGE_PROBE / 8, 8); }
static void* g_realloc(void) { return A->realloc(NULL, HUGE_PROBE); }
static void* g_reallocarray(void) { return A->reallocarray(NULL, 8, HUGE_PROBE / 8); }
static void* g_aligned_alloc(void) { return A->aligned_alloc(64 * KiB, HUGE_PROBE); }
static void* g_posix_memalign(void) {
  void* p = NULL;
  return A->posix_memalign(&p, 4096, HUGE_PROBE) == 0 ? p : NULL;
}
static void* g_memalign(void) { return A->memalign(4096, HUGE_PROBE); }
static void* g_valloc(void) { return A->valloc(HUGE_PROBE); }
static void* g_pvalloc(void) { return A->pvalloc(HUGE_PROBE); }
static void p_free(void* p) { A->free(p); }
static void p_realloc0(void* p) { A->realloc(p, 0); }
static void p_free_sized(void* p) { A->free_sized(p, HUGE_PROBE); }
static void p_free_aligned_sized(void* p) { A->free_aligned_sized(p, 64 * KiB, HUGE_PROBE); }
static void p_cfree(void* p) { A->cfree(p); }

#if !defined(API_TESS)
static void* g_libc_malloc(void) { return __libc_malloc(HUGE_PROBE); }
static void* g_libc_calloc(void) { return __libc_calloc(1, HUGE_PROBE); }
static void* g_libc_realloc(void) { return __libc_realloc(NULL, HUGE_PROBE); }
static void* g_libc_memalign(void) { return __libc_memalign(4096, HUGE_PROBE); }
static void* g_libc_valloc(void) { return __libc_valloc(HUGE_PROBE); }
static void* g_libc_pvalloc(void) { return __libc_pvalloc(HUGE_PROBE); }
static void* g___posix_memalign(void) {
  void* p = NULL;
  return __posix_memalign(&p, 64, HUGE_PROBE) == 0 ? p : NULL;
}
static void p_libc_free(void* p) { __libc_free(p); }
#endif

static void test_served_by_tessera(void) {
  served("malloc", g_malloc, p_free);
  served("calloc", g_calloc, p_free);
  served("realloc(NULL)", g_realloc, p_realloc0);
  served("reallocarray(NULL)", g_reallocarray, p_free);
  served("aligned_alloc", g_aligned_alloc, p_free);
  served("posix_memalign", g_posix_memalign, p_free);
  if (A->free_sized) served("malloc/free_sized", g_malloc, p_free_sized);
  if (A->free_aligned_sized) served("aligned_alloc/free_aligned_sized", g_aligned_alloc, p_free_aligned_sized);
  if (A->memalign) {
    served("memalign", g_memalign, p_free);
    served("valloc", g_valloc, p_free);
    served("pvalloc", g_pvalloc, p_free);
  }
  if (A->cfree) served("malloc/cfree", g_malloc, p_cfree);
}

/* ---- the rest of the glibc-compatible surface ------------------------------- */

#if !defined(API_TESS)
static void test_libc_names(void) {
  struct {
    const char* name;
    void* addr;
  } names[] = {
      {"__libc_malloc", (void*)__libc_malloc},   {"__libc_free", (void*)__libc_free},
      {"__libc_calloc", (void*)__libc_calloc},   {"__libc_realloc", (void*)__libc_realloc},
      {"__libc_memalign", (void*)__libc_memalign}, {"__libc_valloc", (void*)__libc_valloc},
      {"__libc_pvalloc", (void*)__libc_pvalloc}, {"__posix_memalign", (void*)__posix_memalign},
  };
  bool all = true;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!names[i].addr) all = false;
    if (expect_tessera) CHECK_MSG(names[i].addr != NULL, "%s is not defined", names[i].name);
  }
  if (!all) return;
  void* p = __libc_malloc(100);
  CHECK(p != NULL && aligned_to(p, 16) && A->usable_size(p) >= 100);
  p = __libc_realloc(p, 5000);
  CHECK(p != NULL && A->usable_size(p) >= 5000);
  A->free(p);
  unsigned char* c = __libc_calloc(10, 10);
  CHECK(c != NULL && th_first_nonzero(c, 100) == 100);
  __libc_free(c);
  p = __libc_memalign(1024, 10);
  CHECK(p != NULL && aligned_to(p, 1024));
  __libc_free(p);
  p = __libc_valloc(10);
  CHECK(p != NULL && aligned_to(p, page_size));
  __libc_free(p);
  p = __libc_pvalloc(10);
  CHECK(p != NULL && aligned_to(p, page_size) && A->usable_size(p) >= page_size);
  __libc_free(p);
  p = NULL;
  CHECK_EQ(__posix_memalign(&p, 512, 10), 0);
  CHECK(p != NULL && aligned_to(p, 512));
  __libc_free(p);
  void* sentinel = (void*)(uintptr_t)0x5550;
  p = sentinel;
  CHECK_EQ(__posix_memalign(&p, 24, 10), EINVAL);
  CHECK(p == sentinel);
  errno = 0;
  CHECK(__libc_malloc(SIZE_MAX) == NULL);
  CHECK_ERRNO(ENOMEM);

  served("__libc_malloc", g_libc_malloc, p_libc_free);
  served("__libc_calloc", g_libc_calloc, p_free);
  served("__libc_realloc", g_libc_realloc, p_libc_free);
  served("__libc_memalign", g_libc_memalign, p_libc_free);
  served("__libc_valloc", g_libc_valloc, p_libc_free);
  served("__libc_pvalloc", g_libc_pvalloc, p_libc_free);
  served("__posix_memalign", g___posix_memalign, p_libc_free);
}

/* The writable segments of the library that defines malloc stay small.
 * A conservative collector (Boehm's, under guile) takes every writable
 * segment of every loaded library as roots and reads all of it at each
 * collection: when tessera's 32 MiB segment map was .bss, that made it
 * resident (guile: 104 MB at its peak against glibc's 55). */
typedef struct {
  const void* target;
  size_t writable;
  const char* name;
} seg_search_t;

static int find_writable(struct dl_phdr_info* info, size_t size, void* arg) {
  seg_search_t* s = arg;
  bool mine = false;
  size_t writable = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if ((uintptr_t)s->target >= lo && (uintptr_t)s->target < hi) mine = true;
    if (ph->p_flags & PF_W) writable += ph->p_memsz;
  }
  if (!mine) return 0;
  s->writable = writable;
  s->name = info->dlpi_name;
  return 1;
}

static void test_writable_segments_small(void) {
  seg_search_t s = {(const void*)A->malloc, 0, NULL};
  dl_iterate_phdr(find_writable, &s);
  CHECK_MSG(s.name != NULL, "no loaded object contains malloc");
  if (s.name == NULL) return;
  CHECK_MSG(s.writable < ((size_t)1 << 20), "%s has %zu bytes of writable segments", s.name, s.writable);
}

/* Every standard entry point must be tessera's: one left to glibc sends
 * memory to another allocator. */
static void test_symbols_resolve_to_tessera(void) {
  if (!expect_tessera) return;
  static const char* const names[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "aligned_alloc", "posix_memalign",
      "memalign", "valloc", "pvalloc", "malloc_usable_size", "free_sized", "free_aligned_sized",
      "cfree", "mallopt", "mallinfo", "mallinfo2", "malloc_trim", "malloc_stats", "malloc_info",
      "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign",
      "__libc_valloc", "__libc_pvalloc", "__posix_memalign",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void* f = dlsym(RTLD_DEFAULT, names[i]);
    Dl_info info;
    memset(&info, 0, sizeof info);
    CHECK_MSG(f != NULL, "%s not found", names[i]);
    if (!f) continue;
    CHECK_MSG(dladdr(f, &info) && info.dli_fname && strstr(info.dli_fname, "libtessera"),
              "%s resolves to %s, not libtessera", names[i], info.dli_fname ? info.dli_fname : "?");
  }
}

/* Run fn with stderr redirected to a temporary file; return what it wrote. */
static size_t capture_stderr(void (*fn)(void), char* buf, size_t cap) {
  fflush(stderr);
  FILE* tmp = tmpfile();
  int saved = dup(2);
  if (!tmp || saved < 0) return 0;
  dup2(fileno(tmp), 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, cap - 1, tmp);
  buf[n] = 0;
  fclose(tmp);
  return n;
}

static void call_malloc_stats(void) { malloc_stats(); }

/* NULL if s is well-formed XML as far as tags go (every element closed, in
 * order; one root; attributes quoted), else what is wrong. */
static const char* xml_check(const char* s) {
  const char* stack[64];
  size_t lens[64];
  int depth = 0, roots = 0;
  while (*s) {
    if (*s != '<') {
      if (depth == 0 && *s != ' ' && *s != '\n' && *s != '\t' && *s != '\r') return "text outside the root";
      s++;
      continue;
    }
    if (s[1] == '?') { /* <?xml ...?> */
      s = strstr(s, "?>");
      if (!s) return "unterminated <?";
      s += 2;
      continue;
    }
    const char* end = strchr(s, '>');
    if (!end) return "unterminated tag";
    if (s[1] == '/') {
      size_t n = strcspn(s + 2, " >");
      if (depth == 0) return "closing tag without an open element";
      depth--;
      if (n != lens[depth] || strncmp(s + 2, stack[depth], n)) return "mismatched closing tag";
    } else {
      size_t n = strcspn(s + 1, " />");
      if (n == 0) return "empty tag name";
      int quotes = 0;
      for (const char* q = s; q < end; q++) quotes += *q == '"';
      if (quotes % 2) return "unbalanced quotes in a tag";
      if (end[-1] != '/') {
        if (depth == 0) roots++;
        if (depth == 64) return "nested too deep";
        stack[depth] = s + 1;
        lens[depth] = n;
        depth++;
      } else if (depth == 0) {
        roots++;
      }
    }
    s = end + 1;
  }
  if (depth) return "element left open";
  if (roots != 1) return "not exactly one root element";
  return NULL;
}

static void test_glibc_extras(void) {
  /* mallopt: 1 for the parameters glibc knows (values are glibc's defaults) */
  CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  CHECK_EQ(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
  CHECK_EQ(mallopt(M_TOP_PAD, 128 * 1024), 1);
  CHECK_EQ(mallopt(M_MMAP_MAX, 65536), 1);
  CHECK_EQ(mallopt(M_ARENA_MAX, 8), 1);
  CHECK_EQ(mallopt(M_ARENA_TEST, 8), 1);
  CHECK_EQ(mallopt(M_MXFAST, 128), 1);
  CHECK_EQ(mallopt(M_PERTURB, 0), 1);
  /* 0 for a value glibc refuses (above its fastbin maximum, 160) */
  CHECK_EQ(mallopt(M_MXFAST, 1000), 0);
  CHECK_EQ(mallopt(M_MXFAST, -1), 0);
  /* and for an unknown parameter (glibc says 1: the bug in its manual) */
  if (expect_tessera) CHECK_EQ(mallopt(-1000, 1), 0);

  /* mallinfo / mallinfo2: non-zero once something is allocated */
  enum { N = 4096 };
  static void* keep[N];
  for (int i = 0; i < N / 2; i++) keep[i] = A->malloc(1000);
  struct mallinfo2 m2 = mallinfo2();
  CHECK_MSG(m2.arena > 0, "mallinfo2().arena == 0");
  CHECK_MSG(m2.uordblks > 0, "mallinfo2().uordblks == 0");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
  CHECK_MSG(m1.arena > 0, "mallinfo().arena == 0");
  CHECK_MSG(m1.uordblks > 0, "mallinfo().uordblks == 0");
  /* 16 MiB more in small blocks shows in uordblks */
  for (int i = N / 2; i < N; i++) keep[i] = A->malloc(8000);
  struct mallinfo2 m3 = mallinfo2();
  CHECK_MSG(m3.uordblks >= m2.uordblks + 8 * MiB, "mallinfo2().uordblks %zu -> %zu after 16 MiB",
            m2.uordblks, m3.uordblks);
  for (int i = 0; i < N; i++) A->free(keep[i]);

  /* malloc_trim: 0 or 1, also right after freeing a lot */
  int t = malloc_trim(0);
  CHECK_MSG(t == 0 || t == 1, "malloc_trim(0) = %d", t);
  t = malloc_trim(1 * MiB);
  CHECK_MSG(t == 0 || t == 1, "malloc_trim(1 MiB) = %d", t);

  /* malloc_stats: something on stderr */
  static char buf[64 * 1024];
  size_t n = capture_stderr(call_malloc_stats, buf, sizeof buf);
  CHECK_MSG(n > 0, "malloc_stats printed nothing on stderr");

  /* malloc_info: XML on the FILE* */
  FILE* f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    CHECK_EQ(malloc_info(0, f), 0);
    fflush(f);
    rewind(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    const char* s = buf;
    while (*s == ' ' || *s == '\n') s++;
    CHECK_MSG(s[0] == '<', "malloc_info output does not start with '<': %.60s", s);
    CHECK_MSG(strstr(buf, "<malloc") != NULL, "malloc_info: no <malloc element");
    CHECK_MSG(strstr(buf, "</malloc>") != NULL, "malloc_info: no </malloc>");
    const char* xerr = xml_check(buf);
    CHECK_MSG(xerr == NULL, "malloc_info output is not well-formed XML: %s", xerr);
  }
}
#endif /* !API_TESS */

#if defined(API_TESS)
#include "json_check.h"

/* tess_stats_*, tess_trim */
static void test_tess_extras(void) {
  tess_stats_t s;
  void* big = tess_malloc(HUGE_PROBE);
  void* small[100];
  for (int i = 0; i < 100; i++) small[i] = tess_malloc(100);
  tess_stats_get(&s);
  CHECK(s.mapped > 0);
  CHECK(s.committed > 0);
  CHECK_MSG(s.committed <= s.mapped, "committed %zu > mapped %zu", s.committed, s.mapped);
  CHECK_MSG(s.resident_max >= s.committed, "resident_max %zu < committed %zu", s.resident_max,
            s.committed);
  CHECK_MSG(s.in_use > 0 && s.in_use <= s.mapped, "in_use %zu, mapped %zu", s.in_use, s.mapped);
  CHECK(s.huge_count >= 1);
  CHECK_MSG(s.huge_bytes >= HUGE_PROBE, "huge_bytes %zu", s.huge_bytes);
  CHECK(s.segments >= 1);
  CHECK(s.heaps >= 1);
  CHECK(s.mmap_calls >= 1 && s.mmap_calls >= s.munmap_calls);

  static char buf[64 * 1024];
  FILE* f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    tess_stats_print(f, 0);
    fflush(f);
    long text_len = ftell(f);
    CHECK_MSG(text_len > 0, "tess_stats_print(text) wrote nothing");
    fclose(f);
  }
  f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    tess_stats_print(f, 1);
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    const char* err = json_check_object(buf);
    CHECK_MSG(err == NULL, "tess_stats_print(json) is not one JSON object: %s: %.200s", err, buf);
    CHECK_MSG(strstr(buf, "\"mapped\"") != NULL, "JSON stats lack \"mapped\": %.200s", buf);
  }
  tess_free(big);
  for (int i = 0; i < 100; i++) tess_free(small[i]);
  int t = tess_trim();
  CHECK_MSG(t == 0 || t == 1, "tess_trim() = %d", t);
}
#endif

int main(int argc, char** argv) {
  page_size = (size_t)sysconf(_SC_PAGESIZE);
#if !defined(API_TESS)
  lookup_optional_names();
  api_table.free_sized = free_sized_p;
  api_table.free_aligned_sized = free_aligned_sized_p;
  api_table.cfree = cfree_p;
#endif
#if defined(API_STD)
  for (size_t i = 0; i < sizeof link_time_refs / sizeof link_time_refs[0]; i++)
    CHECK_MSG(link_time_refs[i] != NULL, "link-time reference %zu is NULL", i);
#endif
#if defined(API_PRELOAD)
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--expect-tessera")) expect_tessera = true;
  stats_get = (void (*)(tess_stats_t*))dlsym(RTLD_DEFAULT, "tess_stats_get");
  if (expect_tessera) CHECK_MSG(stats_get != NULL, "tessera is not loaded (LD_PRELOAD?)");
#else
  expect_tessera = true;
  stats_get = tess_stats_get;
#endif
  fprintf(stderr, "api_conformance: %s names, tessera %s\n", A->name,
          expect_tessera ? "expected" : "not expected (reference run)");

  test_move_peak(); /* first: regrowing big blocks (below) raises the allowance of free memory */
  test_malloc_zero();
  test_alignment_and_usable();
  test_no_overlap();
  test_calloc();
  test_calloc_recycled_spans();
  test_calloc_huge_reuse();
  test_realloc_pairs();
  test_realloc_ladder();
  test_realloc_keeps_usable();
  test_realloc_random();
  test_realloc_null_and_zero();
  test_release_functions();
  test_free_sized();
  test_posix_memalign_einval();
  test_aligned_alloc_einval();
  test_alignments();
  test_aligned_zero_size();
  test_valloc_pvalloc();
  test_free_preserves_errno();
  test_aligned_reuse_rss();
  test_success_preserves_errno();
  test_beyond_memory();
  test_usable_size_constant();
  test_trim_returns_memory();
  test_regrow_reuses_pages();
  test_huge_reuse_bounded();
  test_huge_cache_yields();
  test_huge_reuse_trimmed();
  test_huge_cache_outlives_delay();
  test_huge_reuse_calloc_aligned();
  test_realloc_shrink_aligned_huge();
  test_realloc_aligned_huge_large_sizes();
  test_aligned_large_from_segments();
  test_huge_page_advice();
  test_sparse_pages_return_memory();
  test_impossible();
  test_served_by_tessera();
#if !defined(API_TESS)
  test_libc_names();
  test_symbols_resolve_to_tessera();
  test_writable_segments_small();
  test_glibc_extras();
  if (expect_tessera) CHECK_MSG(A->cfree != NULL, "cfree is not defined");
#else
  test_tess_extras();
#endif
  return th_done();
}
