/* stress_ring.c - blocks migrate between threads; contents checked on
 * every hop.
 *
 * NTHREADS threads form a ring.  Each produces batches of blocks (sizes from
 * 1 byte to 6 MiB, mostly small), fills every block with a pattern derived
 * from its address, size and seed, and hands the batch to the next thread
 * through that thread's inbox (a mutex-protected list).  A thread receiving
 * a batch verifies every block, then frees some, reallocs some (checking the
 * kept bytes against the old pattern) and forwards the rest, so blocks are
 * freed by threads other than their allocator and pages see frees from many
 * threads at once.  A block dies after at most MAX_HOPS hops.
 *
 * Deterministic per-thread seeds; the amount of work is fixed (no timing).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "tessera.h"

#define NTHREADS 4
#define BATCHES_PER_THREAD 200
#define BLOCKS_PER_BATCH 48
#define MAX_HOPS 4

typedef struct block_s {
  unsigned char* p;
  size_t size;
  uint64_t seed;
  int hops;
} block_t;

typedef struct batch_s {
  struct batch_s* next;
  int count;
  block_t b[BLOCKS_PER_BATCH];
} batch_t;

typedef struct inbox_s {
  pthread_mutex_t lock;
  batch_t* head;
} inbox_t;

static inbox_t inbox[NTHREADS];
static atomic_long in_flight;   /* batches queued or being processed */
static atomic_int producing;    /* threads still producing */
static atomic_long bad_blocks;  /* pattern mismatches seen */
static atomic_long alloc_fail;  /* unexpected NULL results */
static atomic_long blocks_made, blocks_checked, reallocs_done;

static void push(int to, batch_t* bt) {
  pthread_mutex_lock(&inbox[to].lock);
  bt->next = inbox[to].head;
  inbox[to].head = bt;
  pthread_mutex_unlock(&inbox[to].lock);
}

static batch_t* take_all(int me) {
  pthread_mutex_lock(&inbox[me].lock);
  batch_t* b = inbox[me].head;
  inbox[me].head = NULL;
  pthread_mutex_unlock(&inbox[me].lock);
  return b;
}

static size_t pick_size(uint64_t* rng) {
  uint64_t r = th_rand(rng), c = r % 1000;
  r >>= 10;
  if (c < 700) return r % 257;                           /* small */
  if (c < 900) return 257 + r % (8 * 1024);              /* small, up to 8 KiB */
  if (c < 985) return 8 * 1024 + r % (120 * 1024);       /* medium */
  if (c < 999) return 128 * 1024 + r % (1920 * 1024);    /* large, up to 2 MiB */
  return 2 * 1024 * 1024 + r % (4 * 1024 * 1024);        /* huge */
}

/* A new block of about `size` bytes by one of several entry points. */
static void make_block(block_t* b, uint64_t* rng) {
  size_t n = pick_size(rng);
  uint64_t how = th_rand(rng) % 16;
  unsigned char* p;
  if (how == 0) {
    p = calloc(1, n);
    if (p && th_first_nonzero(p, n) != n) atomic_fetch_add(&bad_blocks, 1);
  } else if (how == 1) {
    size_t al = (size_t)16 << (th_rand(rng) % 9); /* 16 .. 4096 */
    p = aligned_alloc(al, n);
    if (p && ((uintptr_t)p & (al - 1))) atomic_fetch_add(&bad_blocks, 1);
  } else if (how == 2) {
    void* q = NULL;
    p = posix_memalign(&q, 64, n) == 0 ? q : NULL;
  } else {
    p = malloc(n);
  }
  if (!p || ((uintptr_t)p & 15) || malloc_usable_size(p) < n) {
    atomic_fetch_add(&alloc_fail, 1);
    b->p = NULL;
    return;
  }
  b->p = p;
  b->size = n;
  b->seed = th_rand(rng);
  b->hops = 0;
  th_fill(p, n, (uintptr_t)p, n, b->seed);
  atomic_fetch_add(&blocks_made, 1);
}

static bool block_ok(const block_t* b) {
  return th_verify(b->p, b->size, (uintptr_t)b->p, b->size, b->seed) == b->size;
}

/* Check a received batch, free / realloc / forward its blocks. */
static void process(int me, batch_t* bt, uint64_t* rng) {
  batch_t* out = malloc(sizeof *out);
  if (!out) {
    atomic_fetch_add(&alloc_fail, 1);
    abort();
  }
  out->count = 0;
  for (int i = 0; i < bt->count; i++) {
    block_t b = bt->b[i];
    atomic_fetch_add(&blocks_checked, 1);
    if (!block_ok(&b)) {
      atomic_fetch_add(&bad_blocks, 1);
      free(b.p);
      continue;
    }
    uint64_t r = th_rand(rng) % 8;
    if (b.hops >= MAX_HOPS || r < 3) {
      free(b.p);
      continue;
    }
    if (r < 5) { /* realloc: grow or shrink, the kept bytes must survive */
      size_t n = pick_size(rng) + 1; /* realloc(p, 0) would free p */
      unsigned char* q = realloc(b.p, n);
      if (!q) {
        atomic_fetch_add(&alloc_fail, 1);
        free(b.p);
        continue;
      }
      size_t keep = n < b.size ? n : b.size;
      if (th_verify(q, keep, (uintptr_t)b.p, b.size, b.seed) != keep) atomic_fetch_add(&bad_blocks, 1);
      b.p = q;
      b.size = n;
      b.seed = th_rand(rng);
      th_fill(q, n, (uintptr_t)q, n, b.seed);
      atomic_fetch_add(&reallocs_done, 1);
    }
    b.hops++;
    out->b[out->count++] = b;
  }
  free(bt); /* the batch itself was allocated by another thread */
  if (out->count) {
    atomic_fetch_add(&in_flight, 1);
    push((me + 1) % NTHREADS, out);
  } else {
    free(out);
  }
  atomic_fetch_sub(&in_flight, 1);
}

static void* worker(void* arg) {
  int me = (int)(intptr_t)arg;
  uint64_t rng = 1000 + (uint64_t)me * 7777;
  int made = 0;
  for (;;) {
    bool worked = false;
    if (made < BATCHES_PER_THREAD) {
      batch_t* bt = malloc(sizeof *bt);
      if (!bt) abort();
      bt->count = 0;
      for (int i = 0; i < BLOCKS_PER_BATCH; i++) {
        make_block(&bt->b[bt->count], &rng);
        if (bt->b[bt->count].p) bt->count++;
      }
      atomic_fetch_add(&in_flight, 1);
      push((me + 1) % NTHREADS, bt);
      if (++made == BATCHES_PER_THREAD) atomic_fetch_sub(&producing, 1);
      worked = true;
    }
    for (batch_t* bt = take_all(me); bt;) {
      batch_t* next = bt->next;
      process(me, bt, &rng);
      bt = next;
      worked = true;
    }
    if (!worked) {
      if (atomic_load(&producing) == 0 && atomic_load(&in_flight) == 0) break;
      sched_yield();
    }
  }
  return NULL;
}

/* ---- phase 2: many threads free blocks of the same pages at once ----------
 * The main thread allocates blocks of one size (so they share pages);
 * FREERS threads free them concurrently, interleaved so every page gets
 * remote frees from every thread at the same moment, while the main thread
 * keeps allocating the same size from those pages.  Every block the main
 * thread holds is then checked: a lost or duplicated remote free shows up
 * as a block handed out twice (a pattern overwritten). */
#define FREERS 3
#define REMOTE_N 30000
#define REMOTE_ROUNDS 6

static unsigned char* remote_blocks[REMOTE_N];
static int remote_n; /* blocks this round: at most 64 MiB of them */
static atomic_int remote_go;
static atomic_int remote_done;

static void* freer(void* arg) {
  int me = (int)(intptr_t)arg;
  while (!atomic_load(&remote_go)) sched_yield();
  for (int i = me; i < remote_n; i += FREERS) {
    free(remote_blocks[i]);
    remote_blocks[i] = NULL;
  }
  atomic_fetch_add(&remote_done, 1);
  return NULL;
}

static void remote_free_phase(size_t size) {
  enum { KEEP_MAX = 20000 };
  static unsigned char* kept[KEEP_MAX];
  int nkept = 0;
  const size_t budget = (size_t)64 << 20;
  remote_n = budget / size < REMOTE_N ? (int)(budget / size) : REMOTE_N;
  const int KEEP = budget / size < KEEP_MAX ? (int)(budget / size) : KEEP_MAX;
  for (int round = 0; round < REMOTE_ROUNDS; round++) {
    for (int i = 0; i < remote_n; i++) {
      remote_blocks[i] = malloc(size);
      if (!remote_blocks[i]) atomic_fetch_add(&alloc_fail, 1);
    }
    atomic_store(&remote_go, 0);
    atomic_store(&remote_done, 0);
    pthread_t t[FREERS];
    for (int i = 0; i < FREERS; i++) pthread_create(&t[i], NULL, freer, (void*)(intptr_t)i);
    atomic_store(&remote_go, 1);
    /* allocate while the frees land: these come from the same pages */
    while (atomic_load(&remote_done) < FREERS) {
      if (nkept < KEEP) {
        unsigned char* p = malloc(size);
        if (!p) {
          atomic_fetch_add(&alloc_fail, 1);
          break;
        }
        th_fill(p, size, (uintptr_t)p, size, 77);
        kept[nkept++] = p;
      } else {
        sched_yield();
      }
    }
    for (int i = 0; i < FREERS; i++) pthread_join(t[i], NULL);
    /* and after them, reusing everything that was freed */
    for (int i = 0; i < 2000 && nkept < KEEP; i++) {
      unsigned char* p = malloc(size);
      if (!p) break;
      th_fill(p, size, (uintptr_t)p, size, 77);
      kept[nkept++] = p;
    }
  }
  long bad = 0;
  for (int i = 0; i < nkept; i++)
    if (th_verify(kept[i], size, (uintptr_t)kept[i], size, 77) != size) bad++;
  CHECK_MSG(bad == 0, "remote frees of %zu-byte blocks: %ld of %d blocks overwritten", size, bad,
            nkept);
  for (int i = 0; i < nkept; i++) free(kept[i]);
}

int main(void) {
  tess_stats_t s0, s1;
  tess_stats_get(&s0);
  atomic_store(&producing, NTHREADS);
  pthread_t t[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    pthread_mutex_init(&inbox[i].lock, NULL);
    CHECK(pthread_create(&t[i], NULL, worker, (void*)(intptr_t)i) == 0);
  }
  for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);

  CHECK_EQ(atomic_load(&bad_blocks), 0);
  CHECK_EQ(atomic_load(&alloc_fail), 0);
  CHECK_EQ(atomic_load(&in_flight), 0);
  CHECK(atomic_load(&blocks_made) == (long)NTHREADS * BATCHES_PER_THREAD * BLOCKS_PER_BATCH);
  CHECK(atomic_load(&blocks_checked) >= atomic_load(&blocks_made));
  CHECK(atomic_load(&reallocs_done) > 0);
  for (int i = 0; i < NTHREADS; i++) CHECK(inbox[i].head == NULL);
  /* every huge block was freed, so every huge mapping is gone */
  tess_stats_get(&s1);
  CHECK_MSG(s1.huge_count == s0.huge_count, "huge_count %zu at start, %zu at end", s0.huge_count,
            s1.huge_count);
  remote_free_phase(32);
  remote_free_phase(240);
  remote_free_phase(3000);
  remote_free_phase(40000);
  CHECK_EQ(atomic_load(&alloc_fail), 0);

  /* Everything is freed: tessera's bytes in use come back to where they
   * started (a lost remote free would keep its page in use for ever). */
  tess_trim();
  tess_stats_get(&s1);
  CHECK_MSG(s1.in_use <= s0.in_use + 8 * 1024 * 1024,
            "in_use %zu at start, %zu after every block was freed", s0.in_use, s1.in_use);
  fprintf(stderr, "stress_ring: %ld blocks made, %ld checks, %ld reallocs\n",
          atomic_load(&blocks_made), atomic_load(&blocks_checked), atomic_load(&reallocs_done));
  return th_done();
}
