/* idle.c - idle after a burst: does RSS come back down without more calls?
 *
 * Models a batch job or a server after a spike: it loads 1 GiB of input
 * records into memory at once (a 64-byte header and a payload of 64 B to
 * 64 KiB, log-uniform, every byte written), then computes a digest of each
 * record (a tenth of its payload size, allocated while the inputs are still
 * live, as results are), keeps the digests and one record in 1024 (records
 * flagged for later, left where they were allocated, so a few pages stay
 * pinned among the freed ones), frees all other records in random order (a
 * hash-table teardown), and then idles: it sleeps and serves nothing, so the
 * allocator gets no call in which to do work.  Long-lived data is about 10%
 * of the burst.  This is the pattern behind "RSS never comes down" reports.
 *
 * Reports RSS (from /proc/self/statm, read without allocating) at the end of
 * the burst, right after the frees, after 1 s and after --idle2 seconds of
 * idling, the live data (bytes requested and still held), the floor (RSS at
 * start plus the 4 KiB pages live blocks touch: the least any allocator could
 * reach without moving blocks), and whether the target
 * RSS <= 1.1 * live + 16 MiB held after 1 s (ok1=1).
 *
 * Checks: every kept digest and record, after the idle period.
 *
 * Options: --mib M (burst size), --idle2 S (second sample, seconds).
 */
#include <sys/mman.h>
#include "bench.h"

typedef struct { uint64_t id; size_t len; unsigned char* payload; uint64_t pad[5]; } rec_t;   /* 64 B */

/* Pages of 4 KiB that live blocks touch: the least RSS any allocator could
 * have without moving blocks.  Counted with mmap'd scratch, after the idle
 * samples, so the allocator is not involved. */
static size_t *pg, npg, cappg;
static void touch(const void* p, size_t len) {
  for (uintptr_t a = (uintptr_t)p >> 12; a <= ((uintptr_t)p + len - 1) >> 12; a++) {
    if (npg == cappg) {
      size_t ncap = cappg ? cappg * 2 : 1 << 20;
      size_t* n = mmap(NULL, ncap * sizeof *n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (n == MAP_FAILED) bench_fail("mmap");
      if (pg) { memcpy(n, pg, npg * sizeof *n); munmap(pg, cappg * sizeof *n); }
      pg = n; cappg = ncap;
    }
    pg[npg++] = a;
  }
}
static int cmp_size(const void* a, const void* b) {
  size_t x = *(const size_t*)a, y = *(const size_t*)b;
  return x < y ? -1 : x > y;
}
static size_t distinct_pages(void) {
  qsort(pg, npg, sizeof *pg, cmp_size);
  size_t d = 0;
  for (size_t i = 0; i < npg; i++) d += i == 0 || pg[i] != pg[i - 1];
  return d;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  (void)quick;                                  /* the burst is 1 GiB in both modes */
  size_t burst = (size_t)bench_opt(argc, argv, "--mib", 1024) << 20;
  double idle2 = (double)bench_opt(argc, argv, "--idle2", 10);
  bench_rng_t rng;
  bench_seed(&rng, 77);
  size_t rss_start = bench_rss();
  double t0 = bench_now();
  rec_t** recs = NULL;
  size_t n = 0, cap = 0, bytes = 0;
  while (bytes < burst) {                       /* load */
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      recs = realloc(recs, cap * sizeof *recs);
      if (!recs) bench_fail("realloc of the record table");
    }
    rec_t* r = bench_xmalloc(sizeof *r);
    r->id = n; r->len = bench_logsize(&rng, 64, 65536);
    r->payload = bench_xmalloc(r->len);
    memset(r->payload, (int)(n & 0xff), r->len);
    bench_stamp(r->payload, r->len, n);
    recs[n++] = r;
    bytes += sizeof *r + r->len;
  }
  unsigned char** digest = bench_xmalloc(n * sizeof *digest);
  size_t* dlen = bench_xmalloc(n * sizeof *dlen);
  size_t live = n * (sizeof *digest + sizeof *dlen);
  for (size_t i = 0; i < n; i++) {              /* compute the results */
    size_t len = recs[i]->len / 10 < 24 ? 24 : recs[i]->len / 10;
    digest[i] = bench_xmalloc(len);
    dlen[i] = len;
    memset(digest[i], (int)(recs[i]->payload[recs[i]->len / 2] ^ 0x5a), len);   /* = (i & 0xff) ^ 0x5a */
    bench_stamp(digest[i], len, i);
    live += len;
  }
  size_t rss_peak = bench_rss();
  for (size_t i = n - 1; i > 0; i--) {          /* teardown in random order */
    size_t j = (size_t)(bench_rand(&rng) % (i + 1));
    rec_t* t = recs[i]; recs[i] = recs[j]; recs[j] = t;
  }
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    rec_t* r = recs[i];
    if (r->id % 1024 == 0) { recs[kept++] = r; live += sizeof *r + r->len; continue; }
    free(r->payload);
    free(r);
  }
  double t = bench_now() - t0;
  size_t rss0 = bench_rss();
  sleep_s(1.0);
  size_t rss1 = bench_rss();
  sleep_s(idle2 - 1.0);
  size_t rss2 = bench_rss();
  touch(digest, n * sizeof *digest); touch(dlen, n * sizeof *dlen); touch(recs, kept * sizeof *recs);
  for (size_t i = 0; i < n; i++) touch(digest[i], dlen[i]);
  for (size_t i = 0; i < kept; i++) { touch(recs[i], sizeof *recs[i]); touch(recs[i]->payload, recs[i]->len); }
  size_t floor = rss_start + distinct_pages() * 4096;
  for (size_t i = 0; i < kept; i++) {           /* check what was kept */
    rec_t* r = recs[i];
    bench_check(r->payload, r->len, r->id);
    if (r->payload[r->len / 2] != (unsigned char)(r->id & 0xff)) bench_fail("record %llu changed", (unsigned long long)r->id);
    free(r->payload); free(r);
  }
  for (size_t i = 0; i < n; i++) {
    bench_check(digest[i], dlen[i], i);
    if (digest[i][8] != (unsigned char)((i & 0xff) ^ 0x5a)) bench_fail("digest %zu changed", i);
    free(digest[i]);
  }
  free(digest); free(dlen); free(recs);
  double mib = 1 << 20, target = 1.1 * (double)live + 16 * mib;
  char extra[320];
  snprintf(extra, sizeof extra,
           "live_mib=%.1f floor_mib=%.1f rss_peak_mib=%.1f rss0_mib=%.1f rss1_mib=%.1f idle2_s=%.0f rss2_mib=%.1f target_mib=%.1f ok1=%d",
           (double)live / mib, (double)floor / mib, (double)rss_peak / mib, (double)rss0 / mib, (double)rss1 / mib, idle2,
           (double)rss2 / mib, target / mib, (double)rss1 <= target);
  bench_report("idle", t, (double)(2 * n + n), extra);
  return 0;
}
