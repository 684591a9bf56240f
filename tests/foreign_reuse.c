/* foreign_reuse.c - frees for a heap whose thread has stopped calling are
 * reused by the thread that made them, and nothing is lost or handed out
 * twice.
 *
 * An owner thread allocates N blocks of each of two sizes, fills them, and
 * then waits without calling the allocator, so it never takes the frees
 * other threads send it.  The main thread (which allocates both sizes
 * itself) checks and frees all of them, then allocates N blocks of each size
 * again: past the first 512 or so sent to the owner, the freed blocks are
 * kept (free.c, foreign_keep, up to 512 KiB), so many of the new blocks must
 * be old addresses.  Every block is filled and checked, no address is live
 * twice, and after the owner resumes everything is freed and the process's
 * blocks come back (tess_trim at both ends).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#include "tessera.h"

#define N 4000
static const size_t sizes[2] = {64, 1000};
static unsigned char* owned[2][N];
static pthread_barrier_t barrier;

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31 + i);
}
static int intact(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed * 31 + i)) return 0;
  return 1;
}

static void* owner(void* arg) {
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < N; i++) {
      owned[k][i] = malloc(sizes[k]);
      CHECK(owned[k][i] != NULL);
      fill(owned[k][i], sizes[k], (unsigned)i);
    }
  pthread_barrier_wait(&barrier); /* allocated */
  pthread_barrier_wait(&barrier); /* the main thread is done: resume */
  void* q = malloc(64);           /* takes the frees sent here */
  CHECK(q != NULL);
  free(q);
  tess_trim();
  return arg;
}

static int cmp_ptr(const void* a, const void* b) {
  uintptr_t x = *(const uintptr_t*)a, y = *(const uintptr_t*)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  pthread_barrier_init(&barrier, NULL, 2);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, owner, NULL) == 0);
  pthread_barrier_wait(&barrier);

  void* mine[2] = {malloc(sizes[0]), malloc(sizes[1])};
  CHECK(mine[0] != NULL && mine[1] != NULL);
  static uintptr_t old[2][N];
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < N; i++) {
      CHECK(intact(owned[k][i], sizes[k], (unsigned)i));
      old[k][i] = (uintptr_t)owned[k][i];
      free(owned[k][i]);
    }

  static unsigned char* fresh[2][N];
  static uintptr_t all[2 * N + 2];
  size_t n_all = 0;
  for (int k = 0; k < 2; k++) {
    qsort(old[k], N, sizeof old[k][0], cmp_ptr);
    size_t reused = 0;
    for (int i = 0; i < N; i++) {
      fresh[k][i] = malloc(sizes[k]);
      CHECK(fresh[k][i] != NULL);
      CHECK(malloc_usable_size(fresh[k][i]) >= sizes[k]);
      fill(fresh[k][i], sizes[k], (unsigned)(i + 7));
      uintptr_t a = (uintptr_t)fresh[k][i];
      reused += bsearch(&a, old[k], N, sizeof old[k][0], cmp_ptr) != NULL;
      all[n_all++] = a;
    }
    printf("size %zu: %zu of %d new blocks are the other heap's freed ones\n", sizes[k], reused, N);
    /* 64 B: all but the first ~576 sent fit under the bound; 1000 B: what
     * is left of the 512 KiB, about 280 */
    CHECK(reused >= (k == 0 ? N / 2 : 100));
  }
  all[n_all++] = (uintptr_t)mine[0];
  all[n_all++] = (uintptr_t)mine[1];
  qsort(all, n_all, sizeof all[0], cmp_ptr);
  for (size_t i = 1; i < n_all; i++) CHECK(all[i] != all[i - 1]); /* nothing live twice */
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < N; i++) CHECK(intact(fresh[k][i], sizes[k], (unsigned)(i + 7)));

  pthread_barrier_wait(&barrier);
  CHECK(pthread_join(t, NULL) == 0);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < N; i++) free(fresh[k][i]);
  free(mine[0]);
  free(mine[1]);
  tess_trim();
  tess_stats_t s;
  tess_stats_get(&s);
  printf("in use after freeing everything: %zu bytes\n", s.in_use);
  CHECK(s.in_use <= (size_t)1 << 20); /* the kept blocks went home */
  return th_done();
}
