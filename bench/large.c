/* large.c - large blocks (5-25 MiB) allocated and freed in rotation.
 *
 * Models programs that cycle big buffers (image and video frames,
 * decompression windows, query result sets; the "big" allocation pattern of
 * mimalloc-bench's "malloc-large"): a ring of 4 blocks of random size in
 * 5-25 MiB; each step frees the oldest and allocates a new one, then writes
 * one byte in every 4 KiB page of it, as a program filling its buffer would.
 * Allocators that map and unmap each block pay for the system calls and the
 * page faults; those that keep freed large blocks pay in RSS.
 *
 * Checks: each block's head and tail stamps, and its page writes, before it
 * is freed.
 *
 * Options: --iters N.
 */
#include "bench.h"

#define RING 4

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long iters = bench_opt(argc, argv, "--iters", quick ? 100 : 800);
  bench_rng_t rng;
  bench_seed(&rng, 5);
  unsigned char* ring[RING] = {0};
  size_t size[RING] = {0};
  double t0 = bench_now();
  for (long k = 0; k < iters; k++) {
    int s = (int)(k % RING);
    if (ring[s]) {
      bench_check(ring[s], size[s], (uint64_t)s);
      for (size_t o = 4096; o + 8 < size[s]; o += 4096)
        if (ring[s][o] != (unsigned char)(o >> 12)) bench_fail("large block %p: page at %zu lost its write", (void*)ring[s], o);
      free(ring[s]);
    }
    size[s] = bench_range(&rng, 5u << 20, 25u << 20);
    ring[s] = bench_xmalloc(size[s]);
    for (size_t o = 4096; o + 8 < size[s]; o += 4096) ring[s][o] = (unsigned char)(o >> 12);
    bench_stamp(ring[s], size[s], (uint64_t)s);
  }
  for (int s = 0; s < RING; s++) free(ring[s]);
  double t = bench_now() - t0;
  bench_report("large", t, (double)iters, "");
  return 0;
}
