/* stress_mix.c - every allocation call at once, on blocks that threads
 * share and hand on, with thread churn, forks and statistics calls beside.
 *
 * The shape of the randomized runs that found the sixth session's huge-block
 * bugs (bench/RESULTS.md), kept as a test.  Waves of worker threads share
 * one table of blocks.  A step takes a random slot and either
 *   - puts a new block there: malloc, calloc, reallocarray, posix_memalign,
 *     aligned_alloc, memalign, valloc, or a small block grown by realloc;
 *     32 B to 8 MiB: mostly small, big blocks in a few slots of their own;
 *   - resizes the block there with realloc or reallocarray; or
 *   - empties it,
 * and the block it takes out is checked (alignment, usable size, its
 * pattern; for a resize, the bytes realloc had to keep) and freed with
 * free, free_sized or free_aligned_sized as its origin allows.  A new block
 * is checked too (calloc's zeros).  So blocks are freed and reallocated by
 * threads other than their allocator, often after it has exited; small,
 * medium, large, huge and aligned blocks change class through realloc.
 * An observer thread calls mallinfo2, malloc_info and malloc_trim
 * throughout; every few waves the main thread forks and the child checks
 * every block in the table, then allocates and frees its own.
 *
 * Each block carries its own description in its first 32 bytes; the rest
 * holds a pattern (the first 64 KiB and the last 64 bytes of big blocks).
 * Deterministic seeds; the amount of work is fixed (no timing).
 * Options: --waves N, --steps N (per thread and wave), --seed N.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* C23, not in glibc 2.36's headers; tessera exports them. */
void free_sized(void* p, size_t size);
void free_aligned_sized(void* p, size_t alignment, size_t size);

#define SLOTS 4096
#define BIG_SLOTS 16         /* the first slots hold the big blocks */
#define WIDTH 4              /* worker threads per wave */
#define HEAD 32              /* the description at the start of each block */
#define CHECKED (64 * 1024)  /* the patterned prefix of a big block */
#define TAIL 64              /* ... and its patterned end */
#define MiB ((size_t)1 << 20)

enum { PLAIN, ALIGNED, ALIGNED_ALLOC }; /* how a block may be freed */

typedef struct {
  size_t size;
  uint64_t seed;
  uint32_t align; /* 0: the default alignment */
  uint32_t kind;
  uint64_t pad;
} head_t;
_Static_assert(sizeof(head_t) == HEAD, "head_t is the first HEAD bytes");

static _Atomic(uintptr_t) slots[SLOTS];
static atomic_bool stop;
static uint64_t base_seed = 1;
static long steps = 4000;

/* The patterned ranges of a block of n bytes: [HEAD, a) and [b, n). */
static void ranges(size_t n, size_t* a, size_t* b) {
  *a = n < HEAD + CHECKED ? n : HEAD + CHECKED;
  *b = n > *a + TAIL ? n - TAIL : *a;
}

static void fill(unsigned char* p, const head_t* h) {
  size_t a, b;
  ranges(h->size, &a, &b);
  memcpy(p, h, sizeof *h);
  th_fill(p + HEAD, a - HEAD, 0, h->size, h->seed);
  th_fill(p + b, h->size - b, 1, h->size, h->seed);
}

/* Check the block at p, whose description is h, up to byte `upto` (the
 * bytes realloc had to keep; h->size for the block itself). */
static void check(const unsigned char* p, const head_t* h, size_t upto, const char* what) {
  size_t a, b;
  ranges(h->size, &a, &b);
  size_t end_a = a < upto ? a : upto;
  size_t bad = th_verify(p + HEAD, end_a - HEAD, 0, h->size, h->seed);
  CHECK_MSG(bad == end_a - HEAD, "%s %p (%zu bytes, align %u): byte %zu changed", what, (const void*)p,
            h->size, h->align, HEAD + bad);
  if (b < upto) {
    bad = th_verify(p + b, upto - b, 1, h->size, h->seed);
    CHECK_MSG(bad == upto - b, "%s %p (%zu bytes): byte %zu of the tail changed", what, (const void*)p,
              h->size, b + bad);
  }
}

/* The block taken out of a slot: still described by its head, aligned,
 * usable, patterned. */
static head_t check_taken(const unsigned char* p) {
  head_t h;
  memcpy(&h, p, sizeof h);
  CHECK_MSG(h.size >= HEAD && h.size <= 8 * MiB, "block %p: its head is corrupt (size %zu)", (const void*)p,
            h.size);
  if (h.size < HEAD || h.size > 8 * MiB) abort(); /* nothing below can be trusted */
  if (h.align) CHECK_MSG((uintptr_t)p % h.align == 0, "block %p lost its alignment %u", (const void*)p, h.align);
  CHECK_MSG(malloc_usable_size((void*)p) >= h.size, "block %p: usable %zu < %zu", (const void*)p,
            malloc_usable_size((void*)p), h.size);
  check(p, &h, h.size, "block");
  return h;
}

static void release(unsigned char* p, uint64_t* s) {
  head_t h = check_taken(p);
  int how = (int)(th_rand(s) % 3);
  if (how == 0 && h.kind == PLAIN) free_sized(p, h.size);
  else if (how == 0 && h.kind == ALIGNED_ALLOC) free_aligned_sized(p, h.align, h.size);
  else free(p);
}

/* Sizes for the many slots: mostly small, some medium, few large. */
static size_t pick_size(uint64_t* s) {
  uint64_t r = th_rand(s) % 1000;
  if (r < 600) return HEAD + th_rand(s) % 256;
  if (r < 850) return HEAD + th_rand(s) % 4096;
  if (r < 980) return HEAD + th_rand(s) % 100000;
  return HEAD + th_rand(s) % 400000;
}

/* Sizes for the few big slots, where blocks cross the large and huge
 * boundaries (128 KiB, 2 MiB, the 4 MiB segment) through realloc. */
static size_t pick_big_size(uint64_t* s) {
  uint64_t r = th_rand(s) % 10;
  if (r < 4) return 128 * 1024 + th_rand(s) % (2 * MiB);
  if (r < 8) return 2 * MiB + th_rand(s) % (4 * MiB);
  return HEAD + th_rand(s) % (128 * 1024);
}

static unsigned char* make(uint64_t* s, bool big) {
  head_t h = {big ? pick_big_size(s) : pick_size(s), th_rand(s), 0, PLAIN, 0};
  void* p = NULL;
  bool zeroed = false;
  switch (th_rand(s) % 12) {
  case 0: case 1: case 2: case 3:
    p = malloc(h.size);
    break;
  case 4:
    p = calloc(1, h.size);
    zeroed = true;
    break;
  case 5:
    p = reallocarray(NULL, h.size / 8 + 1, 8);
    h.size = (h.size / 8 + 1) * 8;
    break;
  case 6:
    h.align = 1u << (3 + th_rand(s) % 20); /* 8 B - 4 MiB */
    h.kind = ALIGNED;
    if (posix_memalign(&p, h.align, h.size) != 0) p = NULL;
    break;
  case 7:
    h.align = 1u << (4 + th_rand(s) % 12); /* 16 B - 32 KiB */
    h.kind = ALIGNED_ALLOC;
    h.size = (h.size + h.align - 1) / h.align * h.align;
    p = aligned_alloc(h.align, h.size);
    break;
  case 8:
    h.align = 1u << (3 + th_rand(s) % 20);
    h.kind = ALIGNED;
    p = memalign(h.align, h.size);
    break;
  case 9:
    h.align = 4096;
    h.kind = ALIGNED;
    p = valloc(h.size);
    break;
  default: { /* a small block grown (or kept) by realloc */
    size_t first = HEAD + th_rand(s) % 100;
    p = malloc(first);
    if (p != NULL) {
      memset(p, 0x5a, first);
      void* q = realloc(p, h.size);
      if (q == NULL) free(p);
      p = q;
      size_t kept = first < h.size ? first : h.size, bad = p ? th_first_not(p, kept, 0x5a) : kept;
      CHECK_MSG(bad == kept, "realloc(%zu -> %zu) = %p lost byte %zu", first, h.size, p, bad);
    }
    break;
  }
  }
  CHECK_MSG(p != NULL, "allocation of %zu bytes (align %u) failed", h.size, h.align);
  if (p == NULL) abort();
  if (zeroed) {
    size_t nz = th_first_nonzero(p, h.size);
    CHECK_MSG(nz == h.size, "calloc(1, %zu) = %p: byte %zu is not zero", h.size, p, nz);
  }
  if (h.align) CHECK_MSG((uintptr_t)p % h.align == 0, "%p is not aligned to %u", p, h.align);
  fill(p, &h);
  return p;
}

static unsigned char* resize(unsigned char* p, uint64_t* s, bool big) {
  head_t h = check_taken(p);
  size_t n = big ? pick_big_size(s) : pick_size(s);
  unsigned char* q = th_rand(s) % 2 ? realloc(p, n) : reallocarray(p, 1, n);
  CHECK_MSG(q != NULL, "realloc(%p, %zu) failed", (void*)p, n);
  if (q == NULL) abort();
  check(q, &h, h.size < n ? h.size : n, "realloc kept");
  head_t nh = {n, th_rand(s), 0, PLAIN, 0}; /* realloc keeps only the default alignment */
  fill(q, &nh);
  return q;
}

static void* worker(void* arg) {
  uint64_t s = th_mix(base_seed * 1000003u + (uintptr_t)arg);
  for (long i = 0; i < steps; i++) {
    bool big = th_rand(&s) % 16 == 0;
    _Atomic(uintptr_t)* slot = &slots[big ? th_rand(&s) % BIG_SLOTS : BIG_SLOTS + th_rand(&s) % (SLOTS - BIG_SLOTS)];
    uint64_t op = th_rand(&s) % 16;
    if (op < 9) {
      uintptr_t old = atomic_exchange(slot, (uintptr_t)make(&s, big));
      if (old) release((unsigned char*)old, &s);
    } else if (op < 13) {
      uintptr_t old = atomic_exchange(slot, 0);
      if (old) atomic_store(slot, (uintptr_t)resize((unsigned char*)old, &s, big));
    } else {
      uintptr_t old = atomic_exchange(slot, 0);
      if (old) release((unsigned char*)old, &s);
    }
  }
  return NULL;
}

static void* observer(void* arg) {
  (void)arg;
  FILE* devnull = fopen("/dev/null", "w");
  CHECK(devnull != NULL);
  long rounds = 0;
  while (!atomic_load(&stop)) {
    struct mallinfo2 mi = mallinfo2();
    CHECK_MSG(mi.arena > 0, "mallinfo2().arena == 0 with blocks live");
    if (devnull) CHECK_EQ(malloc_info(0, devnull), 0);
    malloc_trim(0);
    rounds++;
    usleep(5000);
  }
  if (devnull) fclose(devnull);
  return (void*)rounds;
}

/* In a child forked while the workers run: every block in the table is
 * whole, and the child's allocator works. */
static void child(void) {
  for (size_t i = 0; i < SLOTS; i++) {
    uintptr_t p = atomic_load(&slots[i]);
    if (p) check_taken((unsigned char*)p);
  }
  uint64_t s = base_seed + 77;
  for (int i = 0; i < 500; i++) release(make(&s, i % 16 == 0), &s);
  _exit(th_failures == 0 ? 0 : 1);
}

int main(int argc, char** argv) {
  long waves = 24;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--waves") == 0) waves = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--steps") == 0) steps = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--seed") == 0) base_seed = strtoull(argv[i + 1], NULL, 10);
  }
  pthread_t obs;
  CHECK_EQ(pthread_create(&obs, NULL, observer, NULL), 0);
  for (long w = 0; w < waves; w++) {
    pthread_t t[WIDTH];
    for (int k = 0; k < WIDTH; k++) CHECK_EQ(pthread_create(&t[k], NULL, worker, (void*)(w * WIDTH + k)), 0);
    if (w % 6 == 3) {
      pid_t pid = fork();
      if (pid == 0) child();
      int status = 0;
      CHECK_EQ(waitpid(pid, &status, 0), pid);
      CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: status %#x", status);
    }
    for (int k = 0; k < WIDTH; k++) pthread_join(t[k], NULL);
  }
  atomic_store(&stop, true);
  void* rounds = NULL;
  pthread_join(obs, &rounds);
  CHECK_MSG((long)rounds > 0, "the observer never ran");
  uint64_t s = 5;
  for (size_t i = 0; i < SLOTS; i++) {
    uintptr_t p = atomic_exchange(&slots[i], 0);
    if (p) release((unsigned char*)p, &s);
  }
  return th_done();
}
