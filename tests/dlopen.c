/* dlopen.c - tessera loaded with dlopen into a process that started on
 * glibc's malloc (not linked, not preloaded).
 *
 * The standard names stay glibc's (already bound), so nothing allocated
 * before is handed to the wrong allocator; the tess_ names work, from the
 * loading thread, from threads that existed before the dlopen and from new
 * ones, across thread exit and fork; dlclose leaves a working process. */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tessera.h"

static void* (*t_malloc)(size_t);
static void (*t_free)(void*);
static void* (*t_realloc)(void*, size_t);
static size_t (*t_usable)(const void*);
static void (*t_stats)(tess_stats_t*);

static atomic_int go;
static atomic_long thread_bad;

static int use_tessera(int rounds) {
  int bad = 0;
  void* v[64];
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < 64; i++) {
      size_t n = 1 + (size_t)(i * 37 + r) % (i == 5 ? 3000000 : 5000);
      v[i] = t_malloc(n);
      if (!v[i] || t_usable(v[i]) < n) bad++;
      else th_fill(v[i], n, (uintptr_t)v[i], n, 3);
      if (v[i] && th_verify(v[i], n, (uintptr_t)v[i], n, 3) != n) bad++;
    }
    for (int i = 0; i < 64; i++) {
      if (i % 3 == 0 && v[i]) {
        void* q = t_realloc(v[i], 20000);
        if (!q) bad++;
        else v[i] = q;
      }
      t_free(v[i]);
    }
  }
  return bad;
}

/* a thread that exists before the dlopen, and uses tessera after it */
static void* early_thread(void* arg) {
  void* g = malloc(100); /* glibc's */
  while (!atomic_load(&go)) sched_yield();
  atomic_fetch_add(&thread_bad, use_tessera(20));
  free(g);
  return NULL;
}

static void* late_thread(void* arg) {
  atomic_fetch_add(&thread_bad, use_tessera(20));
  void* leftover = t_malloc(777); /* freed by the main thread after exit */
  return leftover;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s path/to/libtessera.so\n", argv[0]);
    return 2;
  }
  /* before: glibc's malloc, some blocks live across the dlopen */
  void* before[100];
  for (int i = 0; i < 100; i++) before[i] = malloc(10 + (size_t)i * 50);
  pthread_t early;
  CHECK(pthread_create(&early, NULL, early_thread, NULL) == 0);
  void* (*malloc_before)(size_t) = dlsym(RTLD_DEFAULT, "malloc");

  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  CHECK_MSG(h != NULL, "dlopen: %s", dlerror());
  if (!h) return th_done();
  *(void**)&t_malloc = dlsym(h, "tess_malloc");
  *(void**)&t_free = dlsym(h, "tess_free");
  *(void**)&t_realloc = dlsym(h, "tess_realloc");
  *(void**)&t_usable = dlsym(h, "tess_usable_size");
  *(void**)&t_stats = dlsym(h, "tess_stats_get");
  CHECK(t_malloc && t_free && t_realloc && t_usable && t_stats);
  if (!(t_malloc && t_free && t_realloc && t_usable && t_stats)) return th_done();

  /* the process's malloc is still glibc's */
  CHECK(dlsym(RTLD_DEFAULT, "malloc") == (void*)malloc_before);
  for (int i = 0; i < 100; i++) free(before[i]);
  void* g = malloc(1000);
  CHECK(g != NULL);
  free(g);

  CHECK_EQ(use_tessera(50), 0);
  tess_stats_t s;
  t_stats(&s);
  CHECK(s.mapped > 0);
  CHECK(s.huge_count == 0); /* the 3 MB blocks were freed */

  atomic_store(&go, 1);
  pthread_join(early, NULL);
  for (int k = 0; k < 20; k++) {
    pthread_t t;
    void* left = NULL;
    CHECK(pthread_create(&t, NULL, late_thread, NULL) == 0);
    pthread_join(t, &left);
    CHECK(left != NULL && t_usable(left) >= 777);
    t_free(left);
  }
  CHECK_EQ(atomic_load(&thread_bad), 0);

  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) _exit(use_tessera(10) == 0 ? 0 : 1);
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

  /* loaded again with RTLD_GLOBAL: still glibc's malloc for the process */
  void* h2 = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  CHECK(h2 != NULL);
  CHECK(dlsym(RTLD_DEFAULT, "malloc") == (void*)malloc_before);
  CHECK_EQ(use_tessera(5), 0);
  if (h2) dlclose(h2);
  dlclose(h);
  g = malloc(5000);
  CHECK(g != NULL);
  free(g);
  return th_done();
}
