/* large_loop.c - a single-threaded program that takes a big buffer and
 * gives it back, over and over, with nothing else allocated.
 *
 * Each free leaves the block's segment wholly free.  Purging such a segment
 * at once (nothing else would purge it in a program without the background
 * purger) made every malloc fault the buffer's pages in again: 3 faults and
 * a madvise per buffer, 40 times glibc's time.  Checked: after a few rounds
 * to learn, 200 rounds take under 100 faults; and what stays resident
 * afterwards, with nothing in use, is bounded (the allowance a program
 * that needs its memory again earns is at most 4 MiB).
 *
 * Runs in its own process so that nothing else shares the segment.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

int main(void) {
  const char* delay = getenv("TESSERA_PURGE_DELAY");
  bool keep_nothing = delay != NULL && atol(delay) == 0; /* asked to keep nothing */
  static const size_t sizes[] = {200 * 1000, 256 * 1024, 900 * 1024, 1536 * 1024};
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* faults in 4 KiB pages only */
  size_t rss0 = th_rss_bytes();
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    long f0 = 0;
    for (int i = 0; i < 210; i++) {
      if (i == 10) f0 = minor_faults();
      char* p = malloc(n);
      CHECK(p != NULL);
      if (p == NULL) break;
      p[0] = p[n / 2] = p[n - 1] = (char)i;
      free(p);
    }
    long faults = minor_faults() - f0;
    if (!keep_nothing)
      CHECK_MSG(faults < 100, "200 rounds of malloc(%zu), three writes, free took %ld page faults", n, faults);
  }
  size_t rss1 = th_rss_bytes();
  CHECK_MSG(rss1 < rss0 + (5 << 20), "%zu KiB resident after the loops, with nothing in use (%zu before)",
            rss1 / 1024, rss0 / 1024);
  return th_done();
}
