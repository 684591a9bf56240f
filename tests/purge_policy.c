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
 * And how the purge delay adapts (_tess_delay_shift_next, _tess_delay_of):
 * longer, step by step and within bounds, while memory purged for its age
 * is taken again soon in quantity; shorter again once that stops.
 *
 * Pure arithmetic on slice counts: nothing is allocated.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "../src/internal.h"

static void delay_policy(void) {
  const uint32_t top = TESS_DELAY_SHIFT_MAX;
  size_t in_uses[] = {0, 1, 100, 6400, 1000000};
  for (size_t i = 0; i < sizeof in_uses / sizeof in_uses[0]; i++) {
    size_t in_use = in_uses[i], churn = in_use / 8 + 16;
    for (uint32_t shift = 0; shift <= top; shift++) {
      /* refaulting more than an eighth of what is in use: one step longer, to the top */
      CHECK_MSG(_tess_delay_shift_next(shift, churn + 1, in_use) == (shift < top ? shift + 1 : top), "in use %zu shift %u",
                in_use, shift);
      /* a quiet second: one step back, to the option */
      CHECK_MSG(_tess_delay_shift_next(shift, 0, in_use) == (shift > 0 ? shift - 1 : 0), "in use %zu shift %u", in_use,
                shift);
      /* in between: as it was */
      CHECK_MSG(_tess_delay_shift_next(shift, churn, in_use) == shift, "in use %zu shift %u", in_use, shift);
      CHECK_MSG(_tess_delay_shift_next(shift, churn / 16 + 1, in_use) == shift, "in use %zu shift %u", in_use, shift);
    }
  }
  /* From the quietest state, a churning program reaches the top and stays. */
  uint32_t s = 0;
  for (int sec = 0; sec < 10; sec++) s = _tess_delay_shift_next(s, 1 << 20, 6400);
  CHECK(s == top);
  /* The option as given, doubled per step, never past TESS_DELAY_MOST unless
   * the option itself is longer; 0 (purge at once) stays 0. */
  CHECK(_tess_delay_of(50, 0) == 50);
  CHECK(_tess_delay_of(50, 1) == 100);
  CHECK(_tess_delay_of(50, 3) == 400);
  CHECK(_tess_delay_of(100, 3) == TESS_DELAY_MOST);
  CHECK(_tess_delay_of(0, 3) == 0);
  CHECK(_tess_delay_of(1000, 3) == 1000);
  for (uint64_t opt = 0; opt <= 2000; opt += 7) {
    for (uint32_t shift = 0; shift <= top; shift++) {
      uint64_t d = _tess_delay_of(opt, shift);
      CHECK_MSG(d >= opt && (d <= TESS_DELAY_MOST || d == opt), "option %lu shift %u: %lu", (unsigned long)opt, shift,
                (unsigned long)d);
    }
  }
}

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
  delay_policy();
  return th_done();
}
