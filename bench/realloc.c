/* realloc.c - growing strings and arrays with realloc.
 *
 * Models string builders and dynamic arrays in programs that do not keep a
 * capacity (naive string concatenation in C, interpreters appending to
 * buffers; the realloc-heavy part of mimalloc-bench's "glibc-simple" and
 * of real programs like gcc's obstacks): 64 strings are grown at once, a few
 * bytes at a time, each append a realloc to the exact new length; 64 arrays
 * of 24-byte records grow one record at a time; when a string passes its
 * target length it is checked, freed and restarted, so growth interleaves and
 * the neighbour of a block is rarely free for in-place growth.  Every 8th
 * array is shrunk back by half before it restarts.
 *
 * Checks: every byte of every string and array when it is retired.
 *
 * Options: --steps N (appends in total).
 */
#include "bench.h"

#define LIVE 64

typedef struct { uint64_t a, b, c; } rec_t;

static char pattern(long id, size_t i) { return (char)('a' + (id * 7 + (long)i) % 26); }

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long steps = bench_opt(argc, argv, "--steps", quick ? 500000 : 3000000);
  bench_rng_t rng;
  bench_seed(&rng, 9);
  char* str[LIVE] = {0}; size_t len[LIVE] = {0}, target[LIVE]; long sid[LIVE];
  rec_t* arr[LIVE] = {0}; size_t cnt[LIVE] = {0}, atarget[LIVE]; long aid[LIVE];
  long next_id = 0;
  for (int i = 0; i < LIVE; i++) {
    target[i] = bench_logsize(&rng, 16, 65536); sid[i] = next_id++;
    atarget[i] = bench_logsize(&rng, 4, 8192); aid[i] = next_id++;
  }
  long reallocs = 0;
  double t0 = bench_now();
  for (long k = 0; k < steps; k++) {
    int i = (int)(bench_rand(&rng) % LIVE);
    if (k & 1) {                                       /* append to a string */
      size_t add = bench_range(&rng, 1, 16);
      char* s = realloc(str[i], len[i] + add + 1);
      if (!s) bench_fail("realloc(%zu) failed", len[i] + add + 1);
      for (size_t j = 0; j < add; j++) s[len[i] + j] = pattern(sid[i], len[i] + j);
      len[i] += add; s[len[i]] = 0; str[i] = s; reallocs++;
      if (len[i] >= target[i]) {
        for (size_t j = 0; j < len[i]; j++)
          if (s[j] != pattern(sid[i], j)) bench_fail("string %ld byte %zu lost in realloc", sid[i], j);
        free(s); str[i] = NULL; len[i] = 0;
        target[i] = bench_logsize(&rng, 16, 65536); sid[i] = next_id++;
      }
    } else {                                           /* append a record */
      rec_t* a = realloc(arr[i], (cnt[i] + 1) * sizeof(rec_t));
      if (!a) bench_fail("realloc of an array failed");
      a[cnt[i]] = (rec_t){(uint64_t)aid[i], cnt[i], (uint64_t)aid[i] ^ cnt[i]};
      cnt[i]++; arr[i] = a; reallocs++;
      if (cnt[i] >= atarget[i]) {
        if (aid[i] % 8 == 0) {
          cnt[i] /= 2; reallocs++;
          a = realloc(a, cnt[i] * sizeof(rec_t) + 8);
          if (!a) bench_fail("shrinking realloc failed");
        }
        for (size_t j = 0; j < cnt[i]; j++)
          if (a[j].a != (uint64_t)aid[i] || a[j].b != j || a[j].c != ((uint64_t)aid[i] ^ j))
            bench_fail("array %ld record %zu lost in realloc", aid[i], j);
        free(a); arr[i] = NULL; cnt[i] = 0;
        atarget[i] = bench_logsize(&rng, 4, 8192); aid[i] = next_id++;
      }
    }
  }
  for (int i = 0; i < LIVE; i++) { free(str[i]); free(arr[i]); }
  double t = bench_now() - t0;
  bench_report("realloc", t, (double)reallocs, "");
  return 0;
}
