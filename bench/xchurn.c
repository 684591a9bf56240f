/* xchurn.c - random sizes from 8 B to 16 KiB, many threads, cross-thread frees.
 *
 * Models the general stress tests of allocator suites (mimalloc-bench's
 * "mstress"/"rptest" family): all threads share one table of slots; each
 * step allocates a block of random size (8 B - 16 KiB, log-uniform, so small
 * blocks dominate by count and large ones by bytes), swaps it into a random
 * slot and frees whatever block was there, which some other thread
 * allocated most of the time.  The heap stays at a steady size while every
 * size class sees local and remote frees.
 *
 * Checks: each block's size word and tail hash when it is freed.
 *
 * Options: --threads N, --slots S (in total), --ops K (in total).
 */
#include <stdatomic.h>
#include "bench.h"

static _Atomic(void*)* slots;
static size_t nslots;
static long ops;

static void* worker(void* arg) {
  bench_rng_t rng;
  bench_seed(&rng, (uint64_t)(long)arg + 11);
  for (long k = 0; k < ops; k++) {
    size_t n = bench_logsize(&rng, 8, 16384);
    void* p = bench_xmalloc(n);
    bench_sstamp(p, n);
    void* old = atomic_exchange(&slots[bench_rand(&rng) % nslots], p);
    if (old) { bench_scheck(old); free(old); }
  }
  return NULL;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long threads = bench_opt(argc, argv, "--threads", 4);
  nslots = (size_t)bench_opt(argc, argv, "--slots", 20000);
  ops = bench_opt(argc, argv, "--ops", quick ? 600000 : 3200000) / threads;
  slots = calloc(nslots, sizeof *slots);
  if (!slots) bench_fail("calloc");
  double t0 = bench_now();
  bench_run_threads((int)threads, worker);
  double t = bench_now() - t0;
  for (size_t i = 0; i < nslots; i++) {
    void* p = atomic_load(&slots[i]);
    if (p) { bench_scheck(p); free(p); }
  }
  free(slots);
  char extra[64];
  snprintf(extra, sizeof extra, "threads=%ld", threads);
  bench_report("xchurn", t, (double)(ops * threads), extra);
  return 0;
}
