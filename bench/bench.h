/* bench.h - the few helpers every workload shares.
 *
 * Workloads are ordinary programs that call malloc/free; the allocator under
 * test is chosen from outside with LD_PRELOAD, so nothing here names one.
 * Each program:
 *   - takes `--quick` and `--name value` options (bench_opt, bench_flag);
 *   - checks its own results and calls bench_fail() (exit status 2) when a
 *     block's contents or a computed answer is wrong;
 *   - ends with one line the harness parses:
 *       #result time=<s> ops=<n> mops=<Mops/s> key=value ...
 *     where `time` covers only the measured phase (not start-up, not the
 *     final verification), so it is the workload's own figure.
 */
#ifndef BENCH_H
#define BENCH_H

#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- options --------------------------------------------------------- */

static inline int bench_flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

/* `--name value`; `dflt` when absent.  Accepts k/m/g suffixes (powers of 2). */
static inline long bench_opt(int argc, char** argv, const char* name, long dflt) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) != 0) continue;
    char* end;
    long v = strtol(argv[i + 1], &end, 10);
    switch (*end) {
      case 'k': case 'K': v <<= 10; break;
      case 'm': case 'M': v <<= 20; break;
      case 'g': case 'G': v <<= 30; break;
    }
    return v;
  }
  return dflt;
}

/* `--name value` as a string; `dflt` when absent. */
static inline const char* bench_str(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

/* ---- time, randomness ------------------------------------------------ */

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: small, fast, good enough to pick sizes and slots. */
typedef struct { uint64_t s; } bench_rng_t;

static inline void bench_seed(bench_rng_t* r, uint64_t seed) {
  r->s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  if (r->s == 0) r->s = 1;
}
static inline uint64_t bench_rand(bench_rng_t* r) {
  r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
  return r->s * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [lo, hi]. */
static inline size_t bench_range(bench_rng_t* r, size_t lo, size_t hi) {
  return lo + (size_t)(bench_rand(r) % (hi - lo + 1));
}
/* Log-uniform in [lo, hi]: as many blocks of 8-16 B as of 8-16 KiB, the
 * usual shape of a program's request sizes. */
static inline size_t bench_logsize(bench_rng_t* r, size_t lo, size_t hi) {
  int lb = 63 - __builtin_clzll(lo), hb = 63 - __builtin_clzll(hi);
  int b = lb + (int)(bench_rand(r) % (uint64_t)(hb - lb + 1));
  size_t s = ((size_t)1 << b) + (size_t)(bench_rand(r) & (((size_t)1 << b) - 1));
  return s < lo ? lo : s > hi ? hi : s;
}

/* ---- failure, block contents ----------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2)))
static inline void bench_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("FAIL: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static inline void* bench_xmalloc(size_t n) {
  void* p = malloc(n);
  if (p == NULL) bench_fail("malloc(%zu) returned NULL", n);
  if (((uintptr_t)p & 15) != 0 && n >= 16) bench_fail("malloc(%zu) = %p not 16-byte aligned", n, p);
  return p;
}

/* A block is stamped with a tag derived from (tag, size) in its first and
 * last 8 bytes (or every byte when shorter than 16), so a block handed out
 * twice, or overwritten by the allocator's own metadata, is caught. */
static inline uint64_t bench_mix(uint64_t tag, size_t n) {
  uint64_t x = tag ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
  x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 29;
  return x;
}
static inline void bench_stamp(void* p, size_t n, uint64_t tag) {
  uint64_t x = bench_mix(tag, n);
  if (n < 16) { memset(p, (int)(x & 0xff), n); return; }
  memcpy(p, &x, 8);
  memcpy((char*)p + n - 8, &x, 8);
}
static inline void bench_check(const void* p, size_t n, uint64_t tag) {
  uint64_t x = bench_mix(tag, n), a, b;
  if (n < 16) {
    for (size_t i = 0; i < n; i++)
      if (((const unsigned char*)p)[i] != (unsigned char)(x & 0xff))
        bench_fail("block %p (%zu bytes) corrupted at byte %zu", p, n, i);
    return;
  }
  memcpy(&a, p, 8);
  memcpy(&b, (const char*)p + n - 8, 8);
  if (a != x || b != x) bench_fail("block %p (%zu bytes) corrupted (head %s, tail %s)",
                                   p, n, a == x ? "ok" : "bad", b == x ? "ok" : "bad");
}

/* A block that must be checked by a thread that knows only its address
 * (n >= 8): its size in the first 4 bytes, a hash of (address, size) in the
 * last 4.  bench_scheck returns the size. */
static inline void bench_sstamp(void* p, size_t n) {
  uint32_t sz = (uint32_t)n, h = (uint32_t)bench_mix((uintptr_t)p, n);
  memcpy(p, &sz, 4);
  memcpy((char*)p + n - 4, &h, 4);
}
static inline size_t bench_scheck(const void* p) {
  uint32_t sz, h;
  memcpy(&sz, p, 4);
  if (sz < 8 || sz > (1u << 30)) bench_fail("block %p corrupted (size word %u)", p, sz);
  memcpy(&h, (const char*)p + sz - 4, 4);
  if (h != (uint32_t)bench_mix((uintptr_t)p, sz)) bench_fail("block %p (%u bytes) corrupted at its tail", p, sz);
  return sz;
}

/* ---- memory, reporting ----------------------------------------------- */

/* Resident set size in bytes, read from /proc/self/statm with plain system
 * calls so that reading it never calls the allocator. */
static inline size_t bench_rss(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* s = buf;
  while (*s && *s != ' ') s++;
  return (size_t)strtoull(s, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

/* The one line the harness reads; `extra` is more key=value pairs or "". */
static inline void bench_report(const char* name, double secs, double ops, const char* extra) {
  printf("%s: %.0f ops in %.3f s = %.2f Mops/s\n", name, ops, secs, ops / secs * 1e-6);
  printf("#result time=%.6f ops=%.0f mops=%.4f %s\n", secs, ops, ops / secs * 1e-6, extra);
  fflush(stdout);
}

/* Start `n` threads running fn(i) and wait for all of them. */
static inline void bench_run_threads(int n, void* (*fn)(void*)) {
  pthread_t* t = bench_xmalloc(sizeof(pthread_t) * (size_t)n);
  for (long i = 0; i < n; i++)
    if (pthread_create(&t[i], NULL, fn, (void*)i) != 0) bench_fail("pthread_create");
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  free(t);
}

#endif
