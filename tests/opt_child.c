/* opt_child.c - a small program linked against tessera, run by options.c
 * under various TESSERA_* environment settings.  It allocates a little of
 * every size kind, prints one line on stdout and exits 0.
 *
 * With argument "threads" it first starts threads that allocate and free
 * without end, so the process exits (and tessera prints or writes its
 * statistics) while other threads are inside malloc and free.  With
 * "title" it renames itself and writes over its environment first. */
#include <pthread.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* churn(void* arg) {
  size_t seed = (size_t)arg;
  void* slot[32] = {0};
  for (size_t i = 0;; i++) {
    size_t k = (i * 7 + seed) % 32;
    free(slot[k]);
    slot[k] = malloc((i * 2654435761u + seed) % (i % 64 == 0 ? 300000 : 3000));
  }
  return NULL;
}

extern char** environ;

int main(int argc, char** argv) {
  if (argc > 1 && !strcmp(argv[1], "title")) {
    /* As programs that set their process title do (nginx, PostgreSQL,
     * Chromium): a name JSON must escape, and the environment's strings
     * written over. */
    prctl(PR_SET_NAME, "opt_child\"\\\t");
    for (char** e = environ; *e != NULL; e++) memset(*e, 'x', strlen(*e));
  }
  if (argc > 1 && !strcmp(argv[1], "threads")) {
    for (size_t t = 0; t < 3; t++) {
      pthread_t th;
      if (pthread_create(&th, NULL, churn, (void*)t) != 0) return 4;
      pthread_detach(th);
    }
  }
  void* volatile keep[64];
  size_t total = 0;
  for (int i = 0; i < 64; i++) {
    size_t n = i == 0 ? (size_t)6 << 20 : (size_t)(i * 997) % 200000;
    keep[i] = malloc(n);
    if (!keep[i]) return 3;
    memset(keep[i], i, n);
    total += n;
  }
  for (int i = 0; i < 64; i += 2) free(keep[i]);
  printf("opt_child ok %zu\n", total);
  return 0; /* the odd blocks stay live until exit */
}
