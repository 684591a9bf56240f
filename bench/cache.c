/* cache.c - false sharing induced by the allocator, passive and active.
 *
 * Models "cache-scratch" and "cache-thrash" from the Hoard benchmark suite
 * (Berger et al., ASPLOS 2000).  Each thread repeatedly allocates a small
 * object, writes every byte of it many times, and frees it.
 *   --mode thrash (active):  the threads start from nothing; an allocator
 *     that hands neighbouring objects of one cache line to different threads
 *     makes the writes fight over that line.
 *   --mode scratch (passive): the main thread first allocates one object per
 *     thread (likely neighbours), hands them out, and each thread frees its
 *     object before looping; an allocator that reuses a freed object for the
 *     thread that freed it inherits the main thread's shared cache line.
 *
 * Checks: after its writes each object holds the expected byte values.
 *
 * Options: --mode, --threads N, --iters I (objects in total),
 *          --size S (object bytes), --writes W (passes over each object).
 */
#include "bench.h"

static long iters, writes;
static size_t objsize;
static char** handed;                      /* scratch mode: one object per thread */

static void* worker(void* arg) {
  long id = (long)arg;
  if (handed) free(handed[id]);
  for (long i = 0; i < iters; i++) {
    volatile unsigned char* p = bench_xmalloc(objsize);
    for (size_t j = 0; j < objsize; j++) p[j] = 0;
    for (long w = 0; w < writes; w++)
      for (size_t j = 0; j < objsize; j++) p[j]++;
    for (size_t j = 0; j < objsize; j++)
      if (p[j] != (unsigned char)writes) bench_fail("object %p byte %zu is %u, not %u",
                                                      (void*)p, j, p[j], (unsigned)(unsigned char)writes);
    free((void*)p);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  int scratch = strcmp(bench_str(argc, argv, "--mode", "thrash"), "scratch") == 0;
  long threads = bench_opt(argc, argv, "--threads", 4);
  iters = bench_opt(argc, argv, "--iters", quick ? 400000 : 3200000) / threads;
  objsize = (size_t)bench_opt(argc, argv, "--size", 8);
  writes = bench_opt(argc, argv, "--writes", 100);
  if (scratch) {
    handed = bench_xmalloc(sizeof(char*) * (size_t)threads);
    for (long i = 0; i < threads; i++) handed[i] = bench_xmalloc(objsize);
  }
  double t0 = bench_now();
  bench_run_threads((int)threads, worker);
  double t = bench_now() - t0;
  free(handed);
  char extra[64];
  snprintf(extra, sizeof extra, "mode=%s threads=%ld", scratch ? "scratch" : "thrash", threads);
  bench_report(scratch ? "cache-scratch" : "cache-thrash", t, (double)(iters * threads), extra);
  return 0;
}
