/* harness.h - the test suite's tiny check harness.
 *
 * CHECK(expr) evaluates expr; when false it prints "file:line: CHECK failed:
 * expr" (plus any context given) to stderr and counts a failure.  Checks
 * never stop the program, so one run reports every broken assertion.  A test
 * program ends with `return th_done();`, which prints a one-line tally and
 * returns non-zero when any check failed.
 *
 * The harness never allocates through malloc itself beyond what stdio does,
 * so it stays usable while the allocator under test is misbehaving.
 */
#ifndef TESS_TEST_HARNESS_H
#define TESS_TEST_HARNESS_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Counted with atomic adds: several tests check from many threads at once
 * (GCC builtins, so the C++ test can share this header). */
static long th_checks;
static long th_failures;
static const char* th_context; /* optional label printed with failures */
#define TH_COUNT_CHECK() __atomic_fetch_add(&th_checks, 1, __ATOMIC_RELAXED)

#define TH_MAX_PRINTED 60 /* failures printed in full; the rest only counted */

static void th_fail(const char* file, int line, const char* expr, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void th_fail(const char* file, int line, const char* expr, const char* fmt, ...) {
  long n = __atomic_add_fetch(&th_failures, 1, __ATOMIC_RELAXED);
  if (n > TH_MAX_PRINTED) {
    if (n == TH_MAX_PRINTED + 1)
      fprintf(stderr, "(further failures counted, not printed)\n");
    return;
  }
  fprintf(stderr, "%s:%d: CHECK failed: %s", file, line, expr);
  if (th_context) fprintf(stderr, " [%s]", th_context);
  if (fmt && fmt[0]) {
    va_list ap;
    va_start(ap, fmt);
    fputs(" -- ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  fputc('\n', stderr);
  fflush(stderr);
}

/* CHECK(expr): counts and reports a false expression. */
#define CHECK(expr)                                                   \
  do {                                                                \
    TH_COUNT_CHECK();                                                 \
    if (!(expr)) th_fail(__FILE__, __LINE__, #expr, "%s", "");        \
  } while (0)

/* CHECK_MSG(expr, fmt, ...): as CHECK, with printf-style context. */
#define CHECK_MSG(expr, ...)                                          \
  do {                                                                \
    TH_COUNT_CHECK();                                                 \
    if (!(expr)) th_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);     \
  } while (0)

/* CHECK_EQ(a, b): integer equality, printing both values on failure. */
#define CHECK_EQ(a, b)                                                        \
  do {                                                                        \
    uintmax_t th_a_ = (uintmax_t)(a), th_b_ = (uintmax_t)(b);                 \
    TH_COUNT_CHECK();                                                         \
    if (th_a_ != th_b_)                                                       \
      th_fail(__FILE__, __LINE__, #a " == " #b, "%ju (0x%jx) vs %ju (0x%jx)", \
              th_a_, th_a_, th_b_, th_b_);                                    \
  } while (0)

/* CHECK_ERRNO(e): errno equals e (checked right after the failing call). */
#define CHECK_ERRNO(e)                                                       \
  do {                                                                       \
    int th_e_ = errno;                                                       \
    TH_COUNT_CHECK();                                                        \
    if (th_e_ != (e))                                                        \
      th_fail(__FILE__, __LINE__, "errno == " #e, "errno is %d (%s)", th_e_, \
              strerror(th_e_));                                              \
  } while (0)

/* Print the tally; the return value is the program's exit status. */
static int th_done(void) {
  const char* name = program_invocation_short_name;
  if (th_failures) {
    fprintf(stderr, "%s: %ld of %ld checks FAILED\n", name, th_failures, th_checks);
    return 1;
  }
  if (th_checks == 0) {
    fprintf(stderr, "%s: no checks ran\n", name);
    return 1;
  }
  fprintf(stderr, "%s: all %ld checks passed\n", name, th_checks);
  return 0;
}

/* ---- helpers shared by several tests ------------------------------------ */

/* splitmix64: a small deterministic generator for sizes and patterns. */
static inline uint64_t th_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
static inline uint64_t th_rand(uint64_t* state) { return th_mix((*state)++ * 0x2545f4914f6cdd1dull + 1); }

/* Byte i of the pattern for a block at `base` of `size` bytes and `seed`.
 * Derived from all three so a block handed out twice, or moved without
 * copying, or mixed up with its neighbour, shows up as a mismatch. */
static inline unsigned char th_pattern_byte(uintptr_t base, size_t size, uint64_t seed, size_t i) {
  uint64_t w = th_mix((uint64_t)base ^ ((uint64_t)size << 1) ^ seed ^ (uint64_t)(i >> 3));
  return (unsigned char)(w >> ((i & 7) * 8));
}

/* Fill `n` bytes at p with the pattern keyed by (key, size, seed). */
static inline void th_fill(void* p, size_t n, uintptr_t key, size_t size, uint64_t seed) {
  unsigned char* b = (unsigned char*)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = th_mix((uint64_t)key ^ ((uint64_t)size << 1) ^ seed ^ (uint64_t)(i >> 3));
    memcpy(b + i, &w, 8);
  }
  for (; i < n; i++) b[i] = th_pattern_byte(key, size, seed, i);
}

/* Index of the first byte of p[0..n) not matching the pattern, or n. */
static inline size_t th_verify(const void* p, size_t n, uintptr_t key, size_t size, uint64_t seed) {
  const unsigned char* b = (const unsigned char*)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = th_mix((uint64_t)key ^ ((uint64_t)size << 1) ^ seed ^ (uint64_t)(i >> 3)), v;
    memcpy(&v, b + i, 8);
    if (v != w) break;
  }
  for (; i < n; i++)
    if (b[i] != th_pattern_byte(key, size, seed, i)) return i;
  return n;
}

/* Index of the first byte of p[0..n) that is not `c`, or n. */
static inline size_t th_first_not(const void* p, size_t n, unsigned char c) {
  const unsigned char* b = (const unsigned char*)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != c) return i;
  return n;
}

/* Index of the first non-zero byte of p[0..n), or n. */
static inline size_t th_first_nonzero(const void* p, size_t n) { return th_first_not(p, n, 0); }

/* Resident set size of this process in bytes, from /proc/self/statm. */
static inline size_t th_rss_bytes(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, rss = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
  fclose(f);
  return rss * (size_t)sysconf(_SC_PAGESIZE);
}

/* Peak resident set of this process in bytes (VmHWM in /proc/self/status;
 * writing "5" to /proc/self/clear_refs resets it to the current RSS). */
static inline size_t th_hwm_bytes(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long kib = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %lu kB", &kib) == 1) break;
  fclose(f);
  return kib * 1024;
}

/* Virtual size of this process in bytes, from /proc/self/statm. */
static inline size_t th_vsize_bytes(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long size = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu", &size) != 1) size = 0;
  fclose(f);
  return size * (size_t)sysconf(_SC_PAGESIZE);
}

/* Minor page faults this process has taken so far. */
static inline long th_minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* Sleep `ms` milliseconds, through signals. */
static inline void th_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Was tessera asked to keep no free memory (TESSERA_PURGE_DELAY=0)?  Tests
 * of what it keeps for reuse then check nothing about faults. */
static inline int th_keep_nothing(void) {
  const char* delay = getenv("TESSERA_PURGE_DELAY");
  return delay != NULL && atol(delay) == 0;
}

/* Run body(k) in a child forked now (before the case allocates, so that it
 * starts from what the parent has, and nothing another case learned); its
 * wait status.  The child's failures are printed there. */
static inline int th_child_status(void (*body)(int), int k) {
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    th_failures = 0;
    body(k);
    _exit(th_failures != 0);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  return status;
}

/* As th_child_status, and the child's failures fail the case here. */
static inline void th_in_child(void (*body)(int), int k) {
  int status = th_child_status(body, k);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "case %d failed (status %#x)", k, status);
}

#endif /* TESS_TEST_HARNESS_H */
