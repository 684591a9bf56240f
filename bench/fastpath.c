/* fastpath.c - a malloc/free pair of small sizes, for instruction counting.
 *
 * Not a timed workload: `bench/run --callgrind` runs it under
 * `valgrind --tool=callgrind` with two iteration counts and takes the
 * difference, so start-up and one-off costs cancel; running it with --empty
 * (the same loop calling two do-nothing functions instead of malloc and
 * free) gives the loop's own instructions, which are subtracted too.  What
 * is left is the allocator's instructions per malloc+free pair, including
 * the PLT jump every preloaded allocator pays.  Sizes cycle through
 * 16, 32, 48, 64, 80, 96, 112, 128 bytes; each block is freed at once, the
 * classic fast-path measurement (the block comes straight back).  Sixteen
 * blocks of each size stay allocated throughout, so no page ever becomes
 * empty and the pair measures the fast path, not page retirement.
 *
 * Options: --iters N, --empty.
 */
#include "bench.h"

void* volatile sink;
static char dummy[128];

__attribute__((noinline)) static void* no_malloc(size_t n) { __asm__ volatile("" ::"r"(n)); return dummy; }
__attribute__((noinline)) static void no_free(void* p) { __asm__ volatile("" ::"r"(p)); }

int main(int argc, char** argv) {
  long iters = bench_opt(argc, argv, "--iters", 1000000);
  int empty = bench_flag(argc, argv, "--empty");
  static const size_t sizes[8] = {16, 32, 48, 64, 80, 96, 112, 128};
  void* (*volatile m)(size_t) = empty ? no_malloc : malloc;   /* same call shape either way */
  void (*volatile f)(void*) = empty ? no_free : free;
  void* (*mal)(size_t) = m;
  void (*fre)(void*) = f;
  void* keep[8][16];                    /* live neighbours: no page ever empties */
  for (int k = 0; k < 8; k++)
    for (int j = 0; j < 16; j++) keep[k][j] = mal(sizes[k]);
  for (long i = 0; i < iters; i++) {
    void* p = mal(sizes[i & 7]);
    sink = p;
    fre(p);
  }
  for (int k = 0; k < 8; k++)
    for (int j = 0; j < 16; j++) fre(keep[k][j]);
  return 0;
}
