/* thread_exit.c - threads that exit with live blocks; thousands of
 * short-lived threads; memory must not keep growing.
 *
 * First, a few waves of WIDE threads all alive at once.  Then each round
 * starts THREADS_PER_ROUND threads.  Every thread
 *   - has a pthread key whose destructor frees, allocates and frees at
 *     exit (after tessera may already have retired the thread's heap),
 *   - frees the blocks left behind by a thread of the previous round (so
 *     blocks of dead threads are freed by other threads),
 *   - allocates a mix of sizes, frees most of them, and exits leaving
 *     KEEP blocks alive (filled with a checked pattern).
 * The main thread verifies and frees half of the leftovers itself.  (And
 * once, WIDE threads each leave one block: their pages must go back as
 * soon as the main thread frees those blocks.)  After
 * each round the process's RSS (and tessera's mapped / committed figures)
 * are recorded; rounds 10..ROUNDS-1 may use at most 2x round 5 + 32 MiB.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "tessera.h"

#define ROUNDS 21
#define THREADS_PER_ROUND 200
#define CONCURRENT 8 /* threads alive at once within a round */
#define KEEP 24
#define MiB ((size_t)1 << 20)

typedef struct leftover_s {
  void* p[KEEP];
  size_t n[KEEP];
  uint64_t seed;
} leftover_t;

static leftover_t prev[THREADS_PER_ROUND], next[THREADS_PER_ROUND];
static atomic_long bad;

typedef struct job_s {
  int index;
  int round;
} job_t;

static size_t size_for(uint64_t r) {
  switch (r % 20) {
    case 0: return 10000 + r % 100000;  /* medium */
    case 1: return r % 5 == 0 ? 1 * MiB : 200000; /* large */
    default: return 1 + (r >> 8) % 1000; /* small */
  }
}

static void check_and_free(leftover_t* l) {
  for (int k = 0; k < KEEP; k++) {
    if (!l->p[k]) continue;
    if (th_verify(l->p[k], l->n[k], (uintptr_t)l->p[k], l->n[k], l->seed) != l->n[k])
      atomic_fetch_add(&bad, 1);
    free(l->p[k]);
    l->p[k] = NULL;
  }
}

/* A thread-specific value whose destructor runs at thread exit, possibly
 * after tessera's own thread-exit hook: it frees the value, allocates and
 * frees more, and re-arms itself once (destructors run again). */
static pthread_key_t tls_key;
static atomic_long destructor_runs;

static void tls_destructor(void* v) {
  uint64_t* p = v;
  if (p[0] != (uint64_t)(uintptr_t)p) atomic_fetch_add(&bad, 1);
  int again = p[1] == 0;
  free(p);
  void* tmp[16];
  for (int i = 0; i < 16; i++) tmp[i] = malloc(16 + (size_t)i * 300);
  for (int i = 0; i < 16; i++) free(tmp[i]);
  if (again) {
    uint64_t* q = malloc(64);
    if (!q) {
      atomic_fetch_add(&bad, 1);
      return;
    }
    q[0] = (uint64_t)(uintptr_t)q;
    q[1] = 1;
    pthread_setspecific(tls_key, q);
  }
  atomic_fetch_add(&destructor_runs, 1);
}

static __thread void* tls_block; /* a block referenced from TLS only */

static void* thread_main(void* arg) {
  job_t* job = arg;
  uint64_t* tv = malloc(128);
  if (tv) {
    tv[0] = (uint64_t)(uintptr_t)tv;
    tv[1] = 0;
    pthread_setspecific(tls_key, tv);
  }
  tls_block = malloc(1000);
  free(tls_block);
  uint64_t rng = (uint64_t)job->round * 100000 + (uint64_t)job->index;
  /* blocks of a dead thread of the previous round: this thread frees them
   * (the main thread already took the odd ones) */
  if (job->index % 2 == 0) check_and_free(&prev[job->index]);

  void* tmp[200];
  for (int i = 0; i < 200; i++) {
    size_t n = size_for(th_rand(&rng));
    tmp[i] = malloc(n);
    if (!tmp[i]) atomic_fetch_add(&bad, 1);
    else memset(tmp[i], i, n < 64 ? n : 64);
  }
  for (int i = 0; i < 200; i += 1 + (i % 3 == 0)) {
    free(tmp[i]);
    tmp[i] = NULL;
  }
  for (int i = 0; i < 200; i++) free(tmp[i]);

  leftover_t* l = &next[job->index];
  l->seed = rng;
  for (int k = 0; k < KEEP; k++) {
    size_t n = size_for(th_rand(&rng));
    l->p[k] = malloc(n);
    l->n[k] = n;
    if (!l->p[k]) {
      atomic_fetch_add(&bad, 1);
      continue;
    }
    th_fill(l->p[k], n, (uintptr_t)l->p[k], n, l->seed);
  }
  return NULL; /* exits with KEEP blocks alive */
}

/* ---- many threads alive at once: heaps created, used and retired
 * concurrently (each thread waits at a barrier until all exist) ---------- */
#define WIDE 256
static pthread_barrier_t wide_barrier;
static void* wide_thread(void* arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  void* v[50];
  for (int i = 0; i < 50; i++) {
    size_t n = size_for(th_rand(&rng));
    v[i] = malloc(n);
    if (!v[i]) atomic_fetch_add(&bad, 1);
    else th_fill(v[i], n < 256 ? n : 256, (uintptr_t)v[i], n, 5);
  }
  pthread_barrier_wait(&wide_barrier);
  rng = (uint64_t)(uintptr_t)arg;
  for (int i = 0; i < 50; i++) {
    size_t n = size_for(th_rand(&rng));
    size_t k = n < 256 ? n : 256;
    if (v[i] && th_verify(v[i], k, (uintptr_t)v[i], n, 5) != k) atomic_fetch_add(&bad, 1);
    if (i % 2) free(v[i]);
  }
  /* the even blocks are freed by the main thread after this one exits */
  void** out = malloc(25 * sizeof(void*));
  if (!out) {
    atomic_fetch_add(&bad, 1);
    return NULL;
  }
  for (int i = 0; i < 25; i++) out[i] = v[2 * i];
  return out;
}

static void wide_rounds(void) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  for (int round = 0; round < 4; round++) {
    pthread_t t[WIDE];
    int started = 0;
    pthread_barrier_init(&wide_barrier, NULL, WIDE);
    for (int i = 0; i < WIDE; i++) {
      int e = pthread_create(&t[i], &attr, wide_thread, (void*)(uintptr_t)(round * WIDE + i + 1));
      CHECK_MSG(e == 0, "pthread_create #%d: %s", i, strerror(e));
      if (e) break;
      started++;
    }
    if (started < WIDE) { /* cannot meet at the barrier: give up loudly */
      fprintf(stderr, "thread_exit: only %d of %d threads started\n", started, WIDE);
      exit(1);
    }
    for (int i = 0; i < WIDE; i++) {
      void** out = NULL;
      pthread_join(t[i], (void**)&out);
      CHECK(out != NULL);
      if (!out) continue;
      for (int k = 0; k < 25; k++) free(out[k]);
      free(out);
    }
    pthread_barrier_destroy(&wide_barrier);
  }
  pthread_attr_destroy(&attr);
}

/* WIDE threads alive at once each leave one block behind and exit; the
 * main thread frees the blocks and allocates nothing after.  The pages
 * the exited threads' heaps held must go back as their blocks come home
 * (a heap is cleaned when its last block returns), not wait for new
 * threads to adopt those heaps: afterwards at most the heaps the main
 * thread's unsent remote frees are for (4) may still hold a page. */
static void* leave_one_thread(void* arg) {
  (void)arg;
  void* tmp[64]; /* pages of many classes, emptied again before exit */
  for (int i = 0; i < 64; i++) tmp[i] = malloc(16 + (size_t)(i * 37) % 3000);
  pthread_barrier_wait(&wide_barrier);
  for (int i = 0; i < 64; i++) free(tmp[i]);
  unsigned char* p = malloc(100);
  if (p) memset(p, 0x3C, 100);
  return p;
}

static void leave_one_each(void) {
  tess_trim(); /* start clean: every abandoned heap cleaned */
  tess_stats_t before, after;
  tess_stats_get(&before);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  pthread_t t[WIDE];
  pthread_barrier_init(&wide_barrier, NULL, WIDE);
  for (int i = 0; i < WIDE; i++) {
    int e = pthread_create(&t[i], &attr, leave_one_thread, NULL);
    if (e) {
      fprintf(stderr, "thread_exit: pthread_create #%d: %s\n", i, strerror(e));
      exit(1);
    }
  }
  static unsigned char* left[WIDE];
  for (int i = 0; i < WIDE; i++) pthread_join(t[i], (void**)&left[i]);
  for (int i = 0; i < WIDE; i++) { /* every thread is gone before any block is freed */
    CHECK(left[i] != NULL && left[i][0] == 0x3C && left[i][99] == 0x3C);
    free(left[i]);
  }
  pthread_barrier_destroy(&wide_barrier);
  pthread_attr_destroy(&attr);
  tess_stats_get(&after);
  CHECK_MSG(after.in_use <= before.in_use + MiB, "in_use %zu KiB before %d threads each left a block, %zu KiB "
            "after the blocks were freed (exited threads' pages not given back)", before.in_use >> 10, WIDE,
            after.in_use >> 10);
}

/* ---- calls after the thread's heap was given back: a key destructor
 * that re-arms itself for every round glibc runs (so its last round comes
 * after tessera's own destructor ran for the last time), allocating,
 * keeping a block for main and freeing in each; and glibc's clean-up of
 * strerror's per-thread buffer, which frees after every destructor round.
 * Such calls used to attach a heap to the dying thread for good: a heap
 * leaked per thread, and the blocks freed into its pages never came back
 * (2,000 threads: 2,001 heaps, and 1.5 GB still counted in use after every
 * block was freed).  Now the threads' heaps are reused one after another. */
#define LATE_THREADS 2000
#define LATE_ROUNDS 4 /* glibc's PTHREAD_DESTRUCTOR_ITERATIONS */
static pthread_key_t late_key;
static __thread int late_round;
static unsigned char* late_kept[LATE_THREADS][LATE_ROUNDS];
static atomic_long late_calls;

static void late_destructor(void* v) {
  int* who = v;
  int t = who[0], r = late_round++;
  unsigned char* keep = malloc(200 + (size_t)r * 3000); /* sizes of several classes */
  if (keep) memset(keep, t % 251, 16);
  late_kept[t][r] = keep;
  void* tmp = malloc(40000);
  free(tmp);
  if (r + 1 < LATE_ROUNDS) {
    int* again = malloc(sizeof(int));
    if (again) *again = t;
    pthread_setspecific(late_key, again); /* one round more */
  }
  free(v);
  atomic_fetch_add(&late_calls, 1);
}

static void* late_thread(void* arg) {
  int* who = malloc(sizeof(int));
  if (who) *who = (int)(intptr_t)arg;
  pthread_setspecific(late_key, who);
  void* tmp[8];
  for (int i = 0; i < 8; i++) tmp[i] = malloc(16 << i);
  for (int i = 0; i < 8; i++) free(tmp[i]);
  (void)strerror(100000 + (int)(intptr_t)arg); /* glibc keeps a buffer for the thread */
  return NULL;
}

static void after_exit(void) {
  tess_trim();
  tess_stats_t before, after;
  tess_stats_get(&before);
  CHECK(pthread_key_create(&late_key, late_destructor) == 0);
  for (int t = 0; t < LATE_THREADS; t++) {
    pthread_t th;
    int e = pthread_create(&th, NULL, late_thread, (void*)(intptr_t)t);
    CHECK_MSG(e == 0, "pthread_create: %s", strerror(e));
    if (e == 0) pthread_join(th, NULL);
  }
  CHECK_EQ(atomic_load(&late_calls), (long)LATE_THREADS * LATE_ROUNDS);
  long bad_kept = 0;
  for (int t = 0; t < LATE_THREADS; t++) {
    for (int r = 0; r < LATE_ROUNDS; r++) {
      unsigned char* p = late_kept[t][r];
      if (p == NULL || p[0] != t % 251 || p[15] != t % 251) bad_kept++;
      free(p);
    }
  }
  CHECK_EQ(bad_kept, 0);
  pthread_key_delete(late_key);
  tess_trim();
  tess_stats_get(&after);
  /* The purger may hold an abandoned heap at that moment (it cleans them
   * too), and tess_trim passes over a heap another thread holds: on a busy
   * machine it can be held a while.  Give it a second. */
  for (int i = 0; i < 50 && after.in_use > before.in_use + MiB; i++) {
    th_sleep_ms(20);
    tess_trim();
    tess_stats_get(&after);
  }
  CHECK_MSG(after.heaps <= before.heaps + 4, "%d threads that allocated and freed after their heap was given "
            "back: %zu heaps before, %zu after", LATE_THREADS, before.heaps, after.heaps);
  CHECK_MSG(after.in_use <= before.in_use + MiB, "in_use %zu KiB before, %zu KiB after every block of the "
            "threads was freed", before.in_use >> 10, after.in_use >> 10);
}

int main(int argc, char** argv) {
  /* --check-reclaim: also require tessera's in_use to come back to where it
   * started once every block is freed (registered as its own ctest) */
  int check_reclaim = argc > 1 && !strcmp(argv[1], "--check-reclaim");
  tess_stats_t start;
  tess_stats_get(&start);
  after_exit();
  wide_rounds();
  leave_one_each();
  size_t rss[ROUNDS], mapped[ROUNDS], committed[ROUNDS];
  static job_t jobs[THREADS_PER_ROUND];
  long threads_started = 0;
  CHECK(pthread_key_create(&tls_key, tls_destructor) == 0);
  for (int r = 0; r < ROUNDS; r++) {
    /* the main thread frees the odd leftovers of the previous round */
    for (int i = 1; i < THREADS_PER_ROUND; i += 2) check_and_free(&prev[i]);
    for (int base = 0; base < THREADS_PER_ROUND; base += CONCURRENT) {
      pthread_t t[CONCURRENT];
      int started = 0;
      for (int i = base; i < base + CONCURRENT && i < THREADS_PER_ROUND; i++) {
        jobs[i].index = i;
        jobs[i].round = r;
        int e = pthread_create(&t[started], NULL, thread_main, &jobs[i]);
        CHECK_MSG(e == 0, "pthread_create: %s", strerror(e));
        if (e == 0) started++;
      }
      for (int k = 0; k < started; k++) pthread_join(t[k], NULL);
      threads_started += started;
    }
    memcpy(prev, next, sizeof prev);
    memset(next, 0, sizeof next);
    tess_stats_t s;
    tess_stats_get(&s);
    rss[r] = th_rss_bytes();
    mapped[r] = s.mapped;
    committed[r] = s.committed;
  }
  for (int i = 0; i < THREADS_PER_ROUND; i++) check_and_free(&prev[i]);

  CHECK_EQ(atomic_load(&bad), 0);
  CHECK(threads_started == (long)ROUNDS * THREADS_PER_ROUND);
  /* each thread's destructor ran twice (it re-armed itself once) */
  CHECK_EQ(atomic_load(&destructor_runs), 2 * threads_started);
  fprintf(stderr, "round:   rss MiB  mapped MiB  committed MiB\n");
  for (int r = 0; r < ROUNDS; r++)
    fprintf(stderr, "%5d: %9.1f %11.1f %14.1f\n", r, rss[r] / 1048576.0, mapped[r] / 1048576.0,
            committed[r] / 1048576.0);
  for (int r = 10; r < ROUNDS; r++) {
    CHECK_MSG(rss[r] <= 2 * rss[5] + 32 * MiB, "round %d RSS %zu > 2 x round 5 (%zu) + 32 MiB", r,
              rss[r], rss[5]);
    CHECK_MSG(mapped[r] <= 2 * mapped[5] + 32 * MiB,
              "round %d tessera mapped %zu > 2 x round 5 (%zu) + 32 MiB", r, mapped[r], mapped[5]);
    CHECK_MSG(committed[r] <= 2 * committed[5] + 32 * MiB,
              "round %d tessera committed %zu > 2 x round 5 (%zu) + 32 MiB", r, committed[r],
              committed[5]);
  }
  /* every block is freed: in_use is back near where it started */
  tess_trim();
  tess_stats_t s;
  tess_stats_get(&s);
  fprintf(stderr, "thread_exit: %ld threads, tessera heaps created %zu; after every block was "
          "freed and tess_trim(): in_use %zu, committed %zu, RSS %zu\n", threads_started, s.heaps,
          s.in_use, s.committed, th_rss_bytes());
  if (check_reclaim)
    CHECK_MSG(s.in_use <= start.in_use + 8 * MiB,
              "in_use %zu at start, %zu after every block was freed (memory of exited threads "
              "not reclaimed)", start.in_use, s.in_use);
  return th_done();
}
