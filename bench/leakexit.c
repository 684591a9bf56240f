/* leakexit.c - blocks left behind by exiting threads, freed later by another.
 *
 * Models worker threads that build a result and exit without freeing it
 * (a parser thread returning its tree, a request handler's reply), the
 * "abandoned heap" case of mimalloc and the "thread-cache flush at exit"
 * case of tcmalloc/jemalloc: each generation N threads allocate B blocks
 * (16 B - 64 KiB, log-uniform) and exit still owning all of them; only
 * after they are gone does a collector thread (a fresh one each
 * generation) check and free everything.  An allocator must take over the
 * dead threads' memory, and should give it back: the RSS after the final
 * free is printed as rss_end_mib.
 *
 * Checks: every block's stamps in the collector.
 *
 * Options: --threads N, --generations G, --blocks B (per generation, in total).
 */
#include "bench.h"

static void*** results;                        /* results[t] = blocks of thread t */
static long threads, blocks, gen;

static void* producer(void* arg) {
  long id = (long)arg;
  bench_rng_t rng;
  bench_seed(&rng, (uint64_t)(gen * 977 + id));
  void** r = bench_xmalloc(sizeof(void*) * (size_t)blocks);
  for (long i = 0; i < blocks; i++) {
    size_t n = bench_logsize(&rng, 16, 65536);
    r[i] = bench_xmalloc(n);
    bench_sstamp(r[i], n);
  }
  results[id] = r;
  return NULL;                                 /* exits owning everything */
}
static void* collector(void* arg) {
  for (long t = 0; t < threads; t++) {
    for (long i = 0; i < blocks; i++) { bench_scheck(results[t][i]); free(results[t][i]); }
    free(results[t]);
  }
  return arg;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  threads = bench_opt(argc, argv, "--threads", 4);
  long gens = bench_opt(argc, argv, "--generations", quick ? 12 : 80);
  blocks = bench_opt(argc, argv, "--blocks", 20000) / threads;
  results = bench_xmalloc(sizeof(void**) * (size_t)threads);
  double t0 = bench_now();
  for (gen = 0; gen < gens; gen++) {
    bench_run_threads((int)threads, producer);
    pthread_t c;
    if (pthread_create(&c, NULL, collector, NULL) != 0) bench_fail("pthread_create");
    pthread_join(c, NULL);
  }
  double t = bench_now() - t0;
  free(results);
  usleep(200000);                              /* let delayed purging act */
  char extra[96];
  snprintf(extra, sizeof extra, "threads=%ld rss_end_mib=%.1f", threads, (double)bench_rss() / (1 << 20));
  bench_report("leakexit", t, (double)(gens * threads * blocks), extra);
  return 0;
}
