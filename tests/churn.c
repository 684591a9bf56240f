/* churn.c - a program that keeps giving memory back and taking it again,
 * in small and medium blocks.
 *
 * Without the background purger (a single-threaded program has none),
 * tessera gives free memory back at once once it passes a small allowance,
 * so that RSS follows the live data down.  A program that churns then paid
 * a page fault (and a madvise) for nearly every block:
 * - 1,000 blocks of 4 KiB malloc'd, written and freed, again and again: the
 *   pages of every round were given back and faulted in again (1,000
 *   faults a round), and 10,000 blocks of 200 B likewise (500);
 * - 100 blocks of 1-64 KiB, one replaced at random each time: emptied pages
 *   went back to the arena, and sparse medium pages had their free blocks
 *   trimmed, so about one fault an operation;
 * - 100 blocks of 64 KiB-1 MiB, one replaced at random each time: the
 *   allowance learned at most 4 MiB, and 1.5 GB a second were given back
 *   and faulted in again (62 faults an operation);
 * - 1,000 blocks of 32-512 KiB (270 MB), one replaced at random each time:
 *   the allowance was 1/64 of what is in use and at most 4 MiB learned;
 *   12 faults an operation;
 * - 250,000 blocks of 128 B (32 MB) malloc'd, written and freed, again and
 *   again, over 100,000 that stay: each round's teardown unmapped or
 *   purged nearly all of it, and the next round faulted it all in again,
 *   7,600 faults a round, 15 times mimalloc's time;
 * - threads that each make a generation of blocks and exit, main freeing
 *   them: the purger, started by the second generation, had nothing left to
 *   purge by its end and ended, so main's frees were purged inline and the
 *   next generation faulted all of it in again.  It now lingers for a
 *   while (see purger.c).
 * Checked: after rounds to learn, each takes few faults; and afterwards,
 * with everything freed, what stays resident is bounded: 16 MiB, and for
 * rounds of a big build and teardown, what they taught (up to the round's
 * peak, at most 64 MiB: 128 MB rounds keep no more).
 *
 * Each case runs in a child forked before anything is allocated, so that
 * none starts with what another has learned.
 *
 * The fault counts depend on the machine's speed: tessera tells churn from
 * a program that is done with its memory by how much it gives back within
 * about a second, so a case slowed several times over (a loaded machine:
 * the suite's other tests, or anything else) can take the faults it would
 * have taken before the fix.  A case over its fault bound is run again,
 * in a fresh child, up to TRIES times in all; only its last try's failure
 * counts.  A try over its bound that had less than half a CPU on average
 * (CPU time over wall time: the machine was busy with other work; the
 * purge delay is on the clock) does not count as one of them, up to
 * STARVED_MAX such tries.  The blocks' contents are checked on every try,
 * what stays resident on the try that counts.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Write one byte in each 4 KiB page of the block, and its last byte. */
static void touch(char* p, size_t n, char v) {
  for (size_t i = 0; i < n; i += 4096) p[i] = v;
  p[n - 1] = v;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Rounds of `count` blocks of `size` malloc'd, written and freed in the
 * order they were taken; the faults of the last `rounds` of them. */
static long batch_faults(size_t count, size_t size, int warm, int rounds) {
  char** blocks = malloc(count * sizeof *blocks);
  CHECK(blocks != NULL);
  if (blocks == NULL) return -1;
  long f0 = 0;
  for (int r = 0; r < warm + rounds; r++) {
    if (r == warm) f0 = th_minor_faults();
    for (size_t i = 0; i < count; i++) {
      blocks[i] = malloc(size);
      CHECK(blocks[i] != NULL);
      if (blocks[i] == NULL) return -1;
      touch(blocks[i], size, (char)r);
    }
    for (size_t i = 0; i < count; i++) free(blocks[i]);
  }
  long faults = th_minor_faults() - f0;
  free(blocks);
  return faults;
}

/* `live` blocks of lo..hi bytes, one replaced at random each operation;
 * each block's first and last bytes are checked before it is freed.  The
 * faults of the last `ops` operations. */
static long random_faults(size_t live, size_t lo, size_t hi, long warm, long ops) {
  char** blocks = calloc(live, sizeof *blocks);
  size_t* sizes = calloc(live, sizeof *sizes);
  CHECK(blocks != NULL && sizes != NULL);
  if (blocks == NULL || sizes == NULL) return -1;
  long f0 = 0;
  for (long op = -(long)live; op < warm + ops; op++) {
    if (op == warm) f0 = th_minor_faults();
    size_t k = op < 0 ? (size_t)(op + (long)live) : next_random() % live;
    if (blocks[k] != NULL) {
      char v = (char)(k * 7 + 1);
      CHECK(blocks[k][0] == v && blocks[k][sizes[k] - 1] == v);
      free(blocks[k]);
    }
    sizes[k] = lo + next_random() % (hi - lo + 1);
    blocks[k] = malloc(sizes[k]);
    CHECK(blocks[k] != NULL);
    if (blocks[k] == NULL) return -1;
    touch(blocks[k], sizes[k], (char)(k * 7 + 1));
  }
  long faults = th_minor_faults() - f0;
  for (size_t k = 0; k < live; k++) free(blocks[k]);
  free(blocks);
  free(sizes);
  return faults;
}

/* Generations made by threads: each round a new thread mallocs `count`
 * blocks of lo..hi bytes, writes them and exits, and main checks and frees
 * them.  The faults of the rounds after the first `warm`. */
struct generation {
  char** blocks;
  size_t count, lo, hi;
};

static void* make_generation(void* arg) {
  struct generation* g = arg;
  for (size_t i = 0; i < g->count; i++) {
    size_t size = g->lo + next_random() % (g->hi - g->lo + 1);
    g->blocks[i] = malloc(size);
    if (g->blocks[i] == NULL) return NULL;
    touch(g->blocks[i], size, (char)i);
    g->blocks[i][0] = (char)(size & 0x7f); /* the size, for main's check */
    memcpy(g->blocks[i] + 1, &size, sizeof size);
  }
  return arg;
}

static long thread_generation_faults(size_t count, size_t lo, size_t hi, int warm, int rounds) {
  struct generation g = {malloc(count * sizeof(char*)), count, lo, hi};
  CHECK(g.blocks != NULL);
  if (g.blocks == NULL) return -1;
  long f0 = 0;
  for (int r = 0; r < warm + rounds; r++) {
    if (r == warm) f0 = th_minor_faults();
    pthread_t t;
    void* ok = NULL;
    CHECK(pthread_create(&t, NULL, make_generation, &g) == 0);
    CHECK(pthread_join(t, &ok) == 0 && ok == &g);
    if (ok != &g) return -1;
    for (size_t i = 0; i < count; i++) {
      size_t size;
      memcpy(&size, g.blocks[i] + 1, sizeof size);
      CHECK(size >= lo && size <= hi && g.blocks[i][0] == (char)(size & 0x7f) && g.blocks[i][size - 1] == (char)i);
      free(g.blocks[i]);
    }
  }
  long faults = th_minor_faults() - f0;
  free(g.blocks);
  return faults;
}

#define TRIES 3       /* runs of a case over its fault bound (see the top) */
#define STARVED_MAX 4 /* more runs of it, for tries short of CPU */
#define SLOW_EXIT 3   /* a child's status: only the fault bound failed */
#define STARVED_EXIT 4 /*   ... on a try that had less than half a CPU */
static int attempt;   /* this case's try, from 0 */
static int starved;   /* tries short of CPU so far */
static double case_wall0, case_cpu0;

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The fault bound of a case: over it on a try that is not the last, the
 * child says so and ends, and the case is run again. */
static void check_faults(int line, long faults, long bound, const char* what) {
  TH_COUNT_CHECK();
  if (faults < bound) return;
  double wall = wall_seconds() - case_wall0, cpu = cpu_seconds() - case_cpu0;
  bool short_of_cpu = wall > 0 && cpu / wall < 0.5 && starved < STARVED_MAX;
  if (short_of_cpu || attempt + 1 < TRIES) {
    fprintf(stderr, "churn: %s took %ld page faults (bound %ld) on try %d of %d, %.1f s of CPU in %.1f s%s: again\n",
            what, faults, bound, attempt + 1, TRIES, cpu, wall, short_of_cpu ? " (short of CPU, not counted)" : "");
    fflush(stderr);
    _exit(th_failures != 0 ? 1 : short_of_cpu ? STARVED_EXIT : SLOW_EXIT);
  }
  th_fail(__FILE__, line, "faults < bound", "%s took %ld page faults (bound %ld), %.1f s of CPU in %.1f s", what,
          faults, bound, cpu, wall);
}

static bool keep_nothing;   /* TESSERA_PURGE_DELAY=0: asked to keep nothing */
static bool background_off; /* TESSERA_BACKGROUND=0: no purger thread */

static void churn_case(int c) {
  case_wall0 = wall_seconds();
  case_cpu0 = cpu_seconds();
  size_t rss0 = th_rss_bytes(), keep = (size_t)16 << 20;
  long faults;
  if (c == 0) {
    faults = batch_faults(1000, 4096, 20, 200); /* 198,000 before */
    if (!keep_nothing) check_faults(__LINE__, faults, 4000, "200 rounds of 1,000 blocks of 4 KiB");
  } else if (c == 1) {
    faults = batch_faults(10000, 200, 20, 200); /* 98,000 before */
    if (!keep_nothing) check_faults(__LINE__, faults, 4000, "200 rounds of 10,000 blocks of 200 B");
  } else if (c == 2) {
    faults = random_faults(100, 1024, 65536, 100000, 100000); /* 85,000 before */
    if (!keep_nothing)
      check_faults(__LINE__, faults, 10000, "100,000 random replacements in 100 blocks of 1-64 KiB");
  } else if (c == 3) {
    faults = random_faults(100, 65536, 1048576, 20000, 20000); /* 1,240,000 before */
    if (!keep_nothing)
      check_faults(__LINE__, faults, 400000, "20,000 random replacements in 100 blocks of 64 KiB-1 MiB");
  } else if (c == 4) {
    faults = random_faults(1000, 32768, 524288, 3000, 10000); /* 118,000 before */
    if (!keep_nothing)
      check_faults(__LINE__, faults, 20000, "10,000 random replacements in 1,000 blocks of 32-512 KiB");
  } else if (c == 6) {
    /* over 100,000 blocks of 128 B that stay: a teardown is a drop of
     * half the recent peak or more, not a drop to near nothing */
    size_t nbase = 100000;
    char** base = malloc(nbase * sizeof *base);
    CHECK(base != NULL);
    if (base == NULL) return;
    for (size_t i = 0; i < nbase; i++) {
      base[i] = malloc(128);
      CHECK(base[i] != NULL);
      if (base[i] == NULL) return;
      touch(base[i], 128, (char)i);
    }
    faults = batch_faults(250000, 128, 8, 16); /* 122,000 before */
    if (!keep_nothing) check_faults(__LINE__, faults, 16000, "16 rounds of 250,000 blocks of 128 B over 100,000");
    for (size_t i = 0; i < nbase; i++) {
      CHECK(base[i][0] == (char)i && base[i][127] == (char)i);
      free(base[i]);
    }
    free(base);
    keep = (size_t)(16 + 48) << 20; /* the peak: 45 MB */
  } else if (c == 7) {
    faults = batch_faults(1000000, 128, 4, 2); /* bounded by what it may keep: no fault bound */
    /* the 64 MiB cap on what rounds teach, and twice what the others may
     * keep (the rest of the allowance varies: 68-77 MiB kept in all; 135
     * without the cap) */
    keep = (size_t)(64 + 32) << 20;
  } else {
    /* 64 MiB a generation, 16,000 pages: 131,000 faults before */
    faults = thread_generation_faults(2000, 1024, 65536, 2, 8);
    if (!keep_nothing && !background_off)
      check_faults(__LINE__, faults, 32000, "8 generations of 2,000 blocks of 1-64 KiB made by threads");
    /* With no purger (TESSERA_BACKGROUND=0) the generations are rounds of
     * build and teardown, and what they taught stays: up to the 64 MiB cap
     * (58 MB kept; 1.8 before such rounds taught anything) */
    if (background_off) keep = (size_t)(64 + 32) << 20;
  }
  if (getenv("CHURN_VERBOSE")) fprintf(stderr, "case %d: %ld faults, %zu KiB resident\n", c, faults, th_rss_bytes() / 1024);
  /* Nothing is in use now: what a single-threaded program keeps is
   * bounded: the allowance (2 MiB and the 4 MiB it learned, or what rounds
   * of build and teardown taught it) and the last page of each size class,
   * kept for the next block of its size (medium pages are 512 KiB). */
  size_t rss1 = th_rss_bytes();
  /* A multi-threaded program has the purger: it gives the rest back once
   * it has waited out the purge delay. */
  for (int waited = 0; c == 5 && rss1 >= rss0 + keep && waited < 5000; waited += 10) {
    th_sleep_ms(10);
    rss1 = th_rss_bytes();
  }
  if (getenv("CHURN_VERBOSE")) fprintf(stderr, "case %d: %zu KiB resident after waiting\n", c, rss1 / 1024);
  CHECK_MSG(rss1 < rss0 + keep, "%zu KiB resident after the case, with nothing in use (%zu before, %zu allowed)",
            rss1 / 1024, rss0 / 1024, keep >> 10);
}

int main(void) {
  keep_nothing = th_keep_nothing();
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); /* faults in 4 KiB pages only */
  const char* bg = getenv("TESSERA_BACKGROUND");
  background_off = bg != NULL && bg[0] == '0';
  for (int c = 0; c < 8; c++) {
    starved = 0;
    for (attempt = 0; attempt < TRIES; attempt++) {
      int status = th_child_status(churn_case, c);
      if (WIFEXITED(status) && WEXITSTATUS(status) == STARVED_EXIT) {
        starved++;
        attempt--; /* not counted */
        continue;
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == SLOW_EXIT && attempt + 1 < TRIES) continue;
      CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "case %d failed (status %#x)", c, status);
      break;
    }
  }
  return th_done();
}
