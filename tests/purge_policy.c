/* purge_policy.c - how much the arena purges once the free memory it keeps
 * unpurged passes its allowance (_tess_purge_excess), checked over a range
 * of allowances and overshoots.
 *
 * Over the allowance, the arena purges down to some way below it, so that
 * it does not make one small purge per free: down to half of a small
 * allowance, but never more than 4 MiB below a large one.  A large
 * allowance is a whole generation of a program's data, and purging half of
 * it for an overshoot of a few slices made the program fault it all back in
 * for its next generation.
 *
 * Pure arithmetic on slice counts: nothing is allocated.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "../src/internal.h"

int main(void) {
  const size_t slack = TESS_PURGE_SLACK; /* 4 MiB in slices */
  CHECK(slack == ((size_t)4 << 20) / TESS_SLICE_SIZE);
  size_t caps[] = {0, 1, 2, 3, 10, slack, 2 * slack, 2 * slack + 1, 3 * slack, 1000, 4096, 100000};
  size_t overs[] = {1, 2, 3, 17, slack, 5000};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    size_t cap = caps[i];
    /* at or under the allowance: nothing */
    for (size_t d = 0; d <= cap; d += cap / 7 + 1) {
      CHECK_MSG(_tess_purge_excess(d, cap) == 0, "cap %zu dirty %zu", cap, d);
    }
    CHECK(_tess_purge_excess(cap, cap) == 0);
    for (size_t j = 0; j < sizeof overs / sizeof overs[0]; j++) {
      size_t dirty = cap + overs[j];
      size_t purge = _tess_purge_excess(dirty, cap);
      size_t left = dirty - purge;
      /* always back under the allowance */
      CHECK_MSG(purge > 0 && left <= cap, "cap %zu dirty %zu: purge %zu", cap, dirty, purge);
      /* down to half a small allowance, no further */
      if (cap <= 2 * slack) CHECK_MSG(left == cap - cap / 2, "cap %zu dirty %zu: %zu left", cap, dirty, left);
      /* never more than the slack below a large one */
      else CHECK_MSG(left == cap - slack, "cap %zu dirty %zu: %zu left", cap, dirty, left);
      CHECK_MSG(purge <= overs[j] + slack, "cap %zu dirty %zu: purge %zu", cap, dirty, purge);
    }
  }
  return th_done();
}
