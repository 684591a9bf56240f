/* large_loop.c - a single-threaded program that takes a big buffer and
 * gives it back, over and over, with (almost) nothing else allocated.
 *
 * Each free leaves the block's segment wholly free.  Purging such a segment
 * at once (nothing else would purge it in a program without the background
 * purger) made every malloc fault the buffer's pages in again: 3 faults and
 * a madvise per buffer, 40 times glibc's time.  Checked: after a few rounds
 * to learn, 200 rounds take under 100 faults, with one size and with three
 * in turn; and what stays resident
 * afterwards, with nothing in use, is bounded (the allowance a program
 * that needs its memory again earns is at most 4 MiB).
 *
 * Runs in its own process so that nothing else shares the segment, and
 * each case in a child of its own.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

static bool keep_nothing; /* TESSERA_PURGE_DELAY=0: asked to keep nothing */

/* Faults taken by `rounds` rounds of malloc, three writes and free, after
 * `warm` rounds to learn; the size of round i is sizes[i % nsizes]. */
static long loop_faults(const size_t* sizes, int nsizes, int warm, int rounds) {
  long f0 = 0;
  for (int i = 0; i < warm + rounds; i++) {
    if (i == warm) f0 = th_minor_faults();
    size_t n = sizes[i % nsizes];
    char* p = malloc(n);
    CHECK(p != NULL);
    if (p == NULL) return -1;
    p[0] = p[n / 2] = p[n - 1] = (char)i;
    free(p);
  }
  return th_minor_faults() - f0;
}

/* Buffers of three sizes in turn: each takes the pages the last one left
 * and as many clean ones, so a rule that counted only wholly clean blocks
 * never learned (3 faults a round).  A small block stays in use meanwhile,
 * as in most programs. */
static void cycle_case(void) {
  static const size_t cycle[] = {300000, 600000, 1200000};
  char* small = malloc(100);
  CHECK(small != NULL);
  long faults = loop_faults(cycle, 3, 30, 300);
  if (!keep_nothing)
    CHECK_MSG(faults < 150, "300 rounds of malloc of 300 KB, 600 KB, 1.2 MB in turn took %ld page faults", faults);
  free(small);
}

/* One size, the segment wholly free at each free. */
static void one_size_case(size_t size) {
  long faults = loop_faults(&size, 1, 10, 200);
  if (!keep_nothing)
    CHECK_MSG(faults < 100, "200 rounds of malloc(%zu), three writes, free took %ld page faults", size, faults);
}

/* Case k: the cycle of three sizes (k == 0) or one size. */
static void loop_case(int k) {
  static const size_t sizes[] = {0, 200 * 1000, 256 * 1024, 900 * 1024, 1536 * 1024};
  size_t rss0 = th_rss_bytes();
  if (sizes[k] == 0) cycle_case();
  else one_size_case(sizes[k]);
  size_t rss1 = th_rss_bytes();
  CHECK_MSG(rss1 < rss0 + (5 << 20), "%zu KiB resident after the loop, with nothing in use (%zu before)",
            rss1 / 1024, rss0 / 1024);
}

int main(void) {
  keep_nothing = th_keep_nothing();
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* faults in 4 KiB pages only */
  for (int k = 0; k < 5; k++) th_in_child(loop_case, k);
  return th_done();
}
