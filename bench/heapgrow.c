/* heapgrow.c - cost per operation as the live heap grows (1 MiB .. 1 GiB).
 *
 * Models a long-running program whose working set grows (a cache, an
 * in-memory database): the heap is first filled to --live-mib MiB with
 * blocks of 16 B - 1 KiB (log-uniform), then K steps each free a random live
 * block and allocate a replacement.  With a small heap everything stays in
 * cache; with a large one every free touches cold memory and the
 * allocator's metadata lookups (page maps, radix trees, headers) show.
 * Used by `bench/run --scaling`.
 *
 * Checks: each block's stamps when it is freed.
 *
 * Options: --live-mib M, --ops K.
 */
#include "bench.h"

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  size_t live = (size_t)bench_opt(argc, argv, "--live-mib", 64) << 20;
  long ops = bench_opt(argc, argv, "--ops", quick ? 1000000 : 4000000);
  bench_rng_t rng;
  bench_seed(&rng, 21);
  size_t cap = live / 64 + 16, n = 0, bytes = 0;
  void** blk = bench_xmalloc(cap * sizeof(void*));
  while (bytes < live) {
    if (n == cap) { cap *= 2; blk = realloc(blk, cap * sizeof(void*)); if (!blk) bench_fail("realloc"); }
    size_t s = bench_logsize(&rng, 16, 1024);
    blk[n] = bench_xmalloc(s);
    bench_sstamp(blk[n++], s);
    bytes += s;
  }
  double t0 = bench_now();
  for (long k = 0; k < ops; k++) {
    size_t i = (size_t)(bench_rand(&rng) % n);
    bench_scheck(blk[i]);
    free(blk[i]);
    size_t s = bench_logsize(&rng, 16, 1024);
    blk[i] = bench_xmalloc(s);
    bench_sstamp(blk[i], s);
  }
  double t = bench_now() - t0;
  for (size_t i = 0; i < n; i++) free(blk[i]);
  free(blk);
  char extra[96];
  snprintf(extra, sizeof extra, "live_mib=%zu blocks=%zu ns_per_op=%.1f", live >> 20, n, t / (double)ops * 1e9);
  bench_report("heapgrow", t, (double)ops, extra);
  return 0;
}
