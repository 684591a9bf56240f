/* huge_race.c - huge blocks moved by realloc while other threads map and
 * unmap theirs; every live block must still be tessera's.
 *
 * realloc moves a huge block with mremap, which gives its old range back to
 * the kernel.  Another thread may map that range at once for a new block
 * and mark it in the segment map; if the mover clears the old entry only
 * after the move, it erases the new block's entry, and the new block is
 * then "not allocated by tessera" to free and malloc_usable_size.  The
 * window is small, so THREADS threads each keep a few huge blocks, grow
 * and shrink them with realloc (moving them), free and allocate others,
 * and check every block they own with malloc_usable_size before touching
 * it; a fork now and then stalls the threads mid-call, which widens the
 * window.  A (generous) address-space limit turns tessera's cache of freed
 * huge blocks off, so that every new block is a fresh mapping and every
 * free an munmap: the most chances for a new block to land where a moved
 * one was.
 *
 * Deterministic per-thread seeds; the amount of work is fixed.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define THREADS 8
#define KEEP 4
#define ROUNDS 5000
#define RUNS 4
#define MiB ((size_t)1 << 20)

static uint64_t next_rand(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Each thread keeps KEEP huge blocks (3-16 MiB) and, round after round,
 * replaces one with calloc or reallocs it to a new size (a move, mostly),
 * with a small malloc/free beside; thread 0 forks now and then.  Before a
 * block is touched, malloc_usable_size must still know it: with the race,
 * it reports "not allocated by tessera" and aborts. */
static void* worker(void* arg) {
  uint64_t s = 88172645463325252ull * ((uintptr_t)arg + 1);
  unsigned char* own[KEEP] = {0};
  size_t size[KEEP] = {0};
  for (int r = 0; r < ROUNDS; r++) {
    int i = (int)(next_rand(&s) % KEEP);
    if (own[i] != NULL) {
      CHECK_MSG(malloc_usable_size(own[i]) >= size[i], "block %p shrank", (void*)own[i]);
      CHECK_MSG(own[i][size[i] - 1] == 1, "block %p lost its last byte", (void*)own[i]);
    }
    size_t n = 3 * MiB + next_rand(&s) % (13 * MiB);
    unsigned char* q;
    if (next_rand(&s) % 3 == 0) {
      free(own[i]);
      q = calloc(1, n);
    } else {
      q = realloc(own[i], n);
    }
    CHECK_MSG(q != NULL, "allocating %zu bytes failed", n);
    if (q == NULL) return NULL;
    own[i] = q;
    size[i] = n;
    q[n - 1] = 1;
    free(malloc(200 + next_rand(&s) % 100000));
    if ((uintptr_t)arg % THREADS == 0 && r % 100 == 50) { /* stall everyone for a moment */
      pid_t pid = fork();
      if (pid == 0) _exit(0);
      waitpid(pid, NULL, 0);
    }
  }
  for (int i = 0; i < KEEP; i++) {
    if (own[i] == NULL) continue;
    CHECK(malloc_usable_size(own[i]) >= size[i]);
    free(own[i]);
  }
  return NULL;
}

int main(void) {
  struct rlimit lim = {(rlim_t)64 << 30, (rlim_t)64 << 30}; /* 64 GiB: never reached */
  struct rlimit cur;
  if (getrlimit(RLIMIT_AS, &cur) == 0 && cur.rlim_max >= lim.rlim_max) setrlimit(RLIMIT_AS, &lim);
  for (int run = 0; run < RUNS; run++) {
    pthread_t t[THREADS];
    for (uintptr_t k = 0; k < THREADS; k++) CHECK(pthread_create(&t[k], NULL, worker, (void*)(k + run * THREADS)) == 0);
    for (int k = 0; k < THREADS; k++) pthread_join(t[k], NULL);
  }
  return th_done();
}
