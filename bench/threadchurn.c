/* threadchurn.c - threads created and destroyed while their blocks live on.
 *
 * Models thread-per-task programs (a thread pool that is torn down and
 * rebuilt, a compiler driver spawning jobs; mimalloc-bench's "alloc-test"
 * and "glibc-thread" shapes): generation after generation, N short-lived
 * threads each free half of the blocks the previous generation's thread in
 * its lane left behind, allocate new ones (16 B - 4 KiB), churn a little
 * on private temporaries, and exit.  Each thread's heap is set up and torn
 * down while blocks it allocated stay in use elsewhere.
 *
 * Checks: every block's stamps when it is freed, and at the end.
 *
 * Options: --threads N, --generations G, --blocks B (kept, in total).
 */
#include <stdatomic.h>
#include "bench.h"

typedef struct { void** blk; long n; } lane_t;

static lane_t* lanes;
static long blocks, gen;
static _Atomic long n_ops;                     /* mallocs + frees, all threads */

static void* worker(void* arg) {
  long id = (long)arg;
  lane_t* l = &lanes[id];
  bench_rng_t rng;
  bench_seed(&rng, (uint64_t)(gen * 1000 + id));
  long ops = 64 * 32 * 2;
  for (long i = 0; i < l->n; i++)             /* half the inherited blocks go */
    if (l->blk[i] && (bench_rand(&rng) & 1)) { bench_scheck(l->blk[i]); free(l->blk[i]); l->blk[i] = NULL; ops++; }
  for (long i = 0; i < l->n; i++) {           /* and are replaced */
    if (l->blk[i]) continue;
    ops++;
    size_t n = bench_logsize(&rng, 16, 4096);
    l->blk[i] = bench_xmalloc(n);
    bench_sstamp(l->blk[i], n);
  }
  void* tmp[32];                              /* private temporaries */
  for (int r = 0; r < 64; r++) {
    for (int j = 0; j < 32; j++) { tmp[j] = bench_xmalloc(bench_logsize(&rng, 16, 1024)); ((char*)tmp[j])[0] = 1; }
    for (int j = 0; j < 32; j++) free(tmp[j]);
  }
  atomic_fetch_add(&n_ops, ops);
  return NULL;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long threads = bench_opt(argc, argv, "--threads", 4);
  long gens = bench_opt(argc, argv, "--generations", quick ? 150 : 1000);
  blocks = bench_opt(argc, argv, "--blocks", 4000) / threads;
  lanes = bench_xmalloc(sizeof(lane_t) * (size_t)threads);
  for (long t = 0; t < threads; t++) {
    lanes[t].n = blocks;
    lanes[t].blk = calloc((size_t)blocks, sizeof(void*));
    if (!lanes[t].blk) bench_fail("calloc");
  }
  double t0 = bench_now();
  for (gen = 0; gen < gens; gen++) bench_run_threads((int)threads, worker);
  double t = bench_now() - t0;
  for (long k = 0; k < threads; k++) {
    for (long i = 0; i < blocks; i++) { bench_scheck(lanes[k].blk[i]); free(lanes[k].blk[i]); }
    free(lanes[k].blk);
  }
  free(lanes);
  char extra[64];
  snprintf(extra, sizeof extra, "threads=%ld generations=%ld threads_per_s=%.0f", threads, gens, (double)(gens * threads) / t);
  bench_report("threadchurn", t, (double)atomic_load(&n_ops), extra);
  return 0;
}
