/* own_malloc.c - a program with its own malloc family, run with tessera
 * preloaded.  glibc's manual lets a program replace malloc, free, calloc
 * and realloc; glibc's reallocarray then calls the program's realloc, and
 * cfree its free.  tessera's must do the same: taking the program's
 * blocks for its own, its reallocarray reported them as invalid pointers
 * and aborted the program.
 *
 * The program's allocator is a bump pool in a static array that counts its
 * calls and checks that every block it is given is its own.  With
 * --expect-tessera the test first checks that tessera is loaded, so it
 * cannot pass by running without it.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A failed reallocarray leaves its block valid, which gcc 12 does not know. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

#define POOL_BYTES ((size_t)8 << 20)
static _Alignas(16) unsigned char pool[POOL_BYTES];
static size_t pool_used;
static long n_malloc, n_free, n_realloc, n_foreign;

static bool ours(const void* p) { return (const unsigned char*)p >= pool && (const unsigned char*)p < pool + POOL_BYTES; }
static size_t* header(void* p) { return (size_t*)p - 2; }

void* malloc(size_t n) {
  n_malloc++;
  n = (n + 15) & ~(size_t)15;
  if (n > POOL_BYTES || pool_used + n + 16 > POOL_BYTES) {
    errno = ENOMEM;
    return NULL;
  }
  size_t* h = (size_t*)(pool + pool_used);
  h[0] = n;
  pool_used += n + 16;
  return h + 2;
}
void free(void* p) {
  n_free++;
  if (p != NULL && !ours(p)) n_foreign++;
}
void* calloc(size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  void* p = malloc(n);
  if (p != NULL) memset(p, 0, n);
  return p;
}
void* realloc(void* p, size_t n) {
  n_realloc++;
  if (p != NULL && !ours(p)) {
    n_foreign++;
    return NULL;
  }
  void* q = malloc(n);
  if (q != NULL && p != NULL) {
    size_t old = header(p)[0];
    memcpy(q, p, old < n ? old : n);
  }
  return q;
}

int main(int argc, char** argv) {
  bool expect_tessera = argc > 1 && !strcmp(argv[1], "--expect-tessera");
  if (expect_tessera) CHECK_MSG(dlsym(RTLD_DEFAULT, "tess_stats_get") != NULL, "tessera is not loaded (LD_PRELOAD?)");

  int* a = malloc(4 * sizeof(int));
  CHECK(a != NULL && ours(a));
  if (a == NULL) return th_done();
  for (int i = 0; i < 4; i++) a[i] = i + 1;
  long before = n_realloc;
  int* b = reallocarray(a, 1000, sizeof(int));
  CHECK_MSG(n_realloc == before + 1, "reallocarray did not call the program's realloc");
  CHECK(b != NULL && ours(b));
  if (b == NULL) return th_done();
  bool kept = true;
  for (int i = 0; i < 4; i++) kept &= b[i] == i + 1;
  CHECK_MSG(kept, "reallocarray lost the data");
  /* overflow: ENOMEM, and nothing called, as glibc does */
  before = n_realloc;
  errno = 0;
  volatile size_t huge = SIZE_MAX / 2; /* known only at run time: no warning */
  CHECK(reallocarray(b, huge, 3) == NULL);
  CHECK_ERRNO(ENOMEM);
  CHECK(n_realloc == before);

  /* cfree is only a compatibility symbol in glibc: found by name */
  void (*cfree_p)(void*) = (void (*)(void*))dlsym(RTLD_DEFAULT, "cfree");
  if (cfree_p != NULL) {
    before = n_free;
    cfree_p(b);
    CHECK_MSG(n_free == before + 1, "cfree did not call the program's free");
  } else {
    free(b);
  }
  CHECK_MSG(n_foreign == 0, "%ld blocks not the program's reached its free or realloc", n_foreign);
  return th_done();
}
