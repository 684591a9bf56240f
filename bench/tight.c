/* tight.c - a tight malloc/free loop of small sizes, one or many threads.
 *
 * Models the micro-benchmarks every allocator paper opens with (the
 * "malloc-test"/"glibc-simple" loops): nothing but the fast paths.  Each
 * thread, per round, does 64 malloc/free pairs (the same block comes back)
 * and then allocates 64 blocks and frees them, alternately in allocation
 * order and in reverse, so free lists are pushed and popped in both orders.
 * Sizes cycle through 16, 24, 32, 48, 64, 96, 128, 256 bytes.  Threads do not
 * share anything; with several threads this measures per-thread scaling.
 *
 * Checks: each batched block's stamp before it is freed.
 *
 * Options: --threads N, --rounds R (in total, shared among the threads).
 */
#include "bench.h"

static long rounds;
static const size_t sizes[8] = {16, 24, 32, 48, 64, 96, 128, 256};

static void* worker(void* arg) {
  void* b[64];
  for (long r = 0; r < rounds; r++) {
    size_t n = sizes[r & 7];
    for (int i = 0; i < 64; i++) {
      volatile char* p = bench_xmalloc(n);
      p[0] = 1;
      free((void*)p);
    }
    for (int i = 0; i < 64; i++) { b[i] = bench_xmalloc(n); bench_stamp(b[i], n, (uint64_t)i); }
    if (r & 1)
      for (int i = 0; i < 64; i++) { bench_check(b[i], n, (uint64_t)i); free(b[i]); }
    else
      for (int i = 63; i >= 0; i--) { bench_check(b[i], n, (uint64_t)i); free(b[i]); }
  }
  return arg;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long threads = bench_opt(argc, argv, "--threads", 1);
  rounds = bench_opt(argc, argv, "--rounds", quick ? 50000 : 400000) / threads;
  double t0 = bench_now();
  if (threads == 1) worker(NULL); else bench_run_threads((int)threads, worker);
  double t = bench_now() - t0;
  char extra[64];
  snprintf(extra, sizeof extra, "threads=%ld", threads);
  bench_report("tight", t, (double)(rounds * 128 * threads), extra);
  return 0;
}
