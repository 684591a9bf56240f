/* larson.c - server model: blocks outlive their threads and are freed by others.
 *
 * Models "larson" (Larson and Krishnan, "Memory allocation for long-running
 * server applications", ISMM 1998), as used by Hoard, mimalloc and others:
 * each of N lanes keeps a table of blocks of random size in [min, max]; its
 * thread replaces random entries (free the old block, allocate a new one) and
 * then hands the whole table to a new thread and exits.  So most blocks are
 * freed by a thread that did not allocate them, and threads come and go
 * while the heap stays full, as in a server with a thread per connection.
 * The tables are filled by the main thread.
 *
 * Checks: every block's head and tail stamps before it is freed.
 *
 * Options: --threads N, --slots S (per lane), --min, --max (bytes),
 *          --rounds R (threads per lane, one after another), --ops K (in total).
 */
#include <stdatomic.h>
#include "bench.h"

typedef struct {
  long lane, rounds_left, ops;
  void** blk; size_t* size; size_t slots;
  bench_rng_t rng;
} lane_t;

static size_t min_size, max_size;
static atomic_long total_ops;
static pthread_attr_t detached;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static long lanes_done;                    /* under done_lock */

static uint64_t tag_of(const lane_t* l, size_t i) { return ((uint64_t)l->lane << 32) | i; }

static void* worker(void* arg) {
  lane_t* l = arg;
  for (long k = 0; k < l->ops; k++) {
    size_t i = (size_t)(bench_rand(&l->rng) % l->slots);
    bench_check(l->blk[i], l->size[i], tag_of(l, i));
    free(l->blk[i]);
    size_t n = bench_range(&l->rng, min_size, max_size);
    l->blk[i] = bench_xmalloc(n);
    l->size[i] = n;
    bench_stamp(l->blk[i], n, tag_of(l, i));
  }
  atomic_fetch_add(&total_ops, l->ops);
  pthread_t next;
  if (--l->rounds_left > 0) {                /* hand the table on (creation orders the accesses) */
    if (pthread_create(&next, &detached, worker, l) != 0) bench_fail("pthread_create");
  } else {                                   /* the lane's last thread: tell main */
    pthread_mutex_lock(&done_lock);
    lanes_done++;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long threads = bench_opt(argc, argv, "--threads", 4);
  size_t slots = (size_t)bench_opt(argc, argv, "--slots", 1000);
  min_size = (size_t)bench_opt(argc, argv, "--min", 8);
  max_size = (size_t)bench_opt(argc, argv, "--max", 1000);
  long rounds = bench_opt(argc, argv, "--rounds", quick ? 20 : 100);
  long ops = bench_opt(argc, argv, "--ops", quick ? 4000000 : 40000000) / (threads * rounds);
  lane_t* lanes = bench_xmalloc(sizeof(lane_t) * (size_t)threads);
  for (long t = 0; t < threads; t++) {
    lane_t* l = &lanes[t];
    l->lane = t; l->rounds_left = rounds; l->ops = ops; l->slots = slots;
    l->blk = bench_xmalloc(sizeof(void*) * slots);
    l->size = bench_xmalloc(sizeof(size_t) * slots);
    bench_seed(&l->rng, (uint64_t)t + 1);
    for (size_t i = 0; i < slots; i++) {
      l->size[i] = bench_range(&l->rng, min_size, max_size);
      l->blk[i] = bench_xmalloc(l->size[i]);
      bench_stamp(l->blk[i], l->size[i], tag_of(l, i));
    }
  }
  pthread_attr_init(&detached);
  pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
  double t0 = bench_now();
  for (long t = 0; t < threads; t++) {
    pthread_t first;
    if (pthread_create(&first, &detached, worker, &lanes[t]) != 0) bench_fail("pthread_create");
  }
  pthread_mutex_lock(&done_lock);
  while (lanes_done < threads) pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  double t = bench_now() - t0;
  for (long k = 0; k < threads; k++) {
    lane_t* l = &lanes[k];
    for (size_t i = 0; i < slots; i++) { bench_check(l->blk[i], l->size[i], tag_of(l, i)); free(l->blk[i]); }
    free(l->blk); free(l->size);
  }
  free(lanes);
  char extra[64];
  snprintf(extra, sizeof extra, "threads=%ld", threads);
  bench_report("larson", t, (double)atomic_load(&total_ops), extra);
  return 0;
}
