/* static_prog.c - linked with -static against libtessera.a by
 * static_link.sh.  That the link succeeds proves tessera defines every
 * symbol glibc's static malloc.o would otherwise be pulled in for (else:
 * "multiple definition of malloc").  Running it proves tessera served the
 * standard names and glibc's own internal allocations (strdup, stdio,
 * getline, qsort, threads, fork). */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tessera.h"

#define HUGE_PROBE ((size_t)8 << 20)

static void* (*volatile v_malloc)(size_t) = malloc;
static void (*volatile v_free)(void*) = free;

static int cmp(const void* a, const void* b) {
  return (*(const int*)a > *(const int*)b) - (*(const int*)a < *(const int*)b);
}

static void* thread_fn(void* arg) {
  void* p[100];
  for (int i = 0; i < 100; i++) p[i] = malloc(16 * (size_t)i + 1);
  for (int i = 0; i < 100; i++) free(p[i]);
  return malloc(1000); /* freed by the main thread */
}

int main(void) {
  tess_stats_t s0, s1, s2;
  tess_stats_get(&s0);
  void* p = v_malloc(HUGE_PROBE);
  tess_stats_get(&s1);
  CHECK(p != NULL);
  CHECK_MSG(s1.mapped > 0, "tess_stats_get: mapped %zu after malloc", s1.mapped);
  CHECK_MSG(s1.huge_count == s0.huge_count + 1, "malloc(8 MiB) not served by tessera: huge_count %zu -> %zu",
            s0.huge_count, s1.huge_count);
  v_free(p);
  tess_stats_get(&s2);
  CHECK_MSG(s2.huge_count == s0.huge_count, "free did not reach tessera");

  /* small blocks via the standard names are tessera's */
  char* q = v_malloc(100);
  CHECK(q != NULL && tess_usable_size(q) >= 100);
  CHECK(malloc_usable_size(q) == tess_usable_size(q));
  q = realloc(q, 5000);
  CHECK(q != NULL && tess_usable_size(q) >= 5000);
  free(q);
  void* c = calloc(10, 10);
  CHECK(c != NULL && tess_usable_size(c) >= 100);
  free(c);
  void* a = aligned_alloc(4096, 100);
  CHECK(a != NULL && ((uintptr_t)a & 4095) == 0 && tess_usable_size(a) >= 100);
  free(a);
  void* m = memalign(256, 10);
  CHECK(m != NULL && tess_usable_size(m) >= 10);
  free(m);
  void* pm = NULL;
  CHECK(posix_memalign(&pm, 64, 10) == 0 && tess_usable_size(pm) >= 10);
  free(pm);
  void* va = valloc(10);
  CHECK(va != NULL && tess_usable_size(va) >= 10);
  free(va);
  void* pv = pvalloc(10);
  CHECK(pv != NULL && tess_usable_size(pv) >= 4096);
  free(pv);

  /* glibc's internal allocations come from tessera too */
  char* d = strdup("a string duplicated by glibc");
  CHECK(d != NULL && tess_usable_size(d) >= 29);
  free(d);
  char* line = NULL;
  size_t cap = 0;
  FILE* f = fmemopen("first line\nsecond\n", 18, "r");
  CHECK(f != NULL);
  if (f) {
    CHECK(getline(&line, &cap, f) > 0);
    CHECK(line != NULL && tess_usable_size(line) >= cap);
    fclose(f);
  }
  free(line);
  char* as = NULL;
  CHECK(asprintf(&as, "%d %s", 42, "x") > 0 && tess_usable_size(as) >= 5);
  free(as);
  int arr[1000];
  for (int i = 0; i < 1000; i++) arr[i] = (i * 7919) % 1000;
  qsort(arr, 1000, sizeof arr[0], cmp);
  for (int i = 0; i < 1000; i++) CHECK(arr[i] == i);

  pthread_t t;
  void* ret = NULL;
  CHECK(pthread_create(&t, NULL, thread_fn, NULL) == 0);
  CHECK(pthread_join(t, &ret) == 0);
  CHECK(ret != NULL && tess_usable_size(ret) >= 1000);
  free(ret);

  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    void* x = malloc(1000);
    _exit(x && tess_usable_size(x) >= 1000 ? 0 : 1);
  }
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

  errno = 0;
  CHECK(v_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
  printf("static_prog: served by tessera\n");
  return th_done();
}
