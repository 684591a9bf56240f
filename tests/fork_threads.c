/* fork_threads.c - fork while other threads allocate.
 *
 * Scenarios (argv[1]):
 *   threads  worker threads allocate and free continuously (and publish
 *            blocks in a shared table) while the main thread forks
 *            repeatedly.  Each child frees blocks allocated by the parent's
 *            threads, allocates and frees a lot (also from a new thread),
 *            and _exits 0 when every check held.
 *   signal   the same workers; the fork happens inside a signal handler (on
 *            a thread that does not allocate, and on the main thread via
 *            raise()).  The child allocates, frees and _exits.
 *   signal-in-malloc  the signal is sent to the allocating workers, so the
 *            fork happens inside a handler that interrupted malloc or free
 *            (glibc's own malloc deadlocks here); the child only _exits.
 *   stdio    one thread loops fopen/fprintf/fflush(NULL)/fclose (stdio's
 *            list lock held while it mallocs) while another forks; the child
 *            also uses stdio and malloc.
 *
 * A deadlock must fail the test, not hang it: the parent arms alarm() with a
 * handler that kills the children and exits 1, and each child arms its own
 * alarm (its default action ends the child, which the parent reports).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NWORKERS 3
#define SLOTS 256
#ifndef PARENT_TIMEOUT
#define PARENT_TIMEOUT 100 /* seconds for the whole scenario */
#endif
#define CHILD_TIMEOUT 20   /* seconds for one child */

/* Blocks published by the workers: slot holds a block whose first 8 bytes
 * are its own address xor a key and whose size is in the next 8 bytes. */
static _Atomic(uint64_t*) slots[SLOTS];
static atomic_bool stop;
static atomic_long worker_rounds;
static atomic_long worker_errors;

#define KEY 0x5a5a5a5a12345678ull

static uint64_t* make_published(size_t n) {
  if (n < 16) n = 16;
  uint64_t* p = malloc(n);
  if (!p) return NULL;
  p[0] = (uint64_t)(uintptr_t)p ^ KEY;
  p[1] = n;
  th_fill(p + 2, n - 16, (uintptr_t)p, n, 1);
  return p;
}
static bool published_ok(const uint64_t* p) {
  if (p[0] != ((uint64_t)(uintptr_t)p ^ KEY)) return false;
  size_t n = p[1];
  return th_verify(p + 2, n - 16, (uintptr_t)p, n, 1) == n - 16;
}

static size_t worker_size(uint64_t* rng) {
  uint64_t r = th_rand(rng);
  switch (r % 16) {
    case 0: return 8192 + r % 200000;
    case 1: return r % 3 == 0 ? 3 * 1024 * 1024 : 600000;
    default: return 16 + (r >> 8) % 2000;
  }
}

static void* worker(void* arg) {
  uint64_t rng = (uint64_t)(intptr_t)arg * 1234567 + 1;
  void* local[64] = {0};
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    for (int i = 0; i < 64; i++) {
      size_t n = worker_size(&rng);
      free(local[i]);
      local[i] = malloc(n);
      if (!local[i]) atomic_fetch_add(&worker_errors, 1);
      else memset(local[i], i, n < 256 ? n : 256);
    }
    /* swap a published block: check the old one, free it */
    size_t s = th_rand(&rng) % SLOTS;
    uint64_t r = th_rand(&rng);
    uint64_t* fresh = make_published(r % 64 == 0 ? 300000 : 16 + r % 3000);
    uint64_t* old = atomic_exchange(&slots[s], fresh);
    if (old) {
      if (!published_ok(old)) atomic_fetch_add(&worker_errors, 1);
      free(old);
    }
    atomic_fetch_add(&worker_rounds, 1);
  }
  for (int i = 0; i < 64; i++) free(local[i]);
  return NULL;
}

/* ---- what a child does ----------------------------------------------------- */

static void* child_thread(void* arg) {
  void* v[100];
  for (int r = 0; r < 50; r++) {
    for (int i = 0; i < 100; i++) v[i] = malloc(16 + (size_t)(i * r) % 5000);
    for (int i = 0; i < 100; i++) free(v[i]);
  }
  return arg;
}

/* Allocate, check and free a lot; also free the parent's published blocks.
 * Returns the exit status: 0 when every check held. */
static int child_work(bool free_published, bool use_thread) {
  int bad = 0;
  if (free_published) {
    for (int s = 0; s < SLOTS; s++) {
      uint64_t* p = atomic_exchange(&slots[s], NULL);
      if (!p) continue;
      if (!published_ok(p)) bad |= 2;
      free(p);
    }
  }
  uint64_t rng = (uint64_t)getpid();
  enum { N = 300 };
  static unsigned char* blk[N];
  static size_t sz[N];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) {
      sz[i] = i % 50 == 0 ? 300000 : 1 + th_rand(&rng) % 4000;
      blk[i] = malloc(sz[i]);
      if (!blk[i]) {
        bad |= 4;
        continue;
      }
      th_fill(blk[i], sz[i], (uintptr_t)blk[i], sz[i], 9);
    }
    for (int i = 0; i < N; i++) {
      if (!blk[i]) continue;
      if (th_verify(blk[i], sz[i], (uintptr_t)blk[i], sz[i], 9) != sz[i]) bad |= 8;
      free(blk[i]);
    }
  }
  void* h = malloc(5 * 1024 * 1024); /* a huge block too */
  if (!h) bad |= 4;
  else memset(h, 1, 5 * 1024 * 1024);
  free(h);
  if (use_thread) {
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) bad |= 16;
    else pthread_join(t, NULL);
  }
  return bad;
}

/* ---- children bookkeeping and the parent's alarm --------------------------- */

#define MAX_CHILDREN 64
static volatile pid_t live_children[MAX_CHILDREN];

static void remember(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (live_children[i] == 0) {
      live_children[i] = pid;
      return;
    }
}
static void forget(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (live_children[i] == pid) live_children[i] = 0;
}

static void parent_timeout(int sig) {
  static const char msg[] = "fork_threads: TIMEOUT (deadlock?) - killing children, failing\n";
  if (write(2, msg, sizeof msg - 1) < 0) {
  }
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (live_children[i] > 0) kill(live_children[i], SIGKILL);
  _exit(3);
}

static void child_setup(void) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(SIGALRM, SIG_DFL);
  alarm(CHILD_TIMEOUT);
}

/* Wait for pid; check it exited 0. */
static void reap(pid_t pid, const char* what, int i) {
  int st = 0;
  pid_t r;
  while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
  }
  forget(pid);
  CHECK_MSG(r == pid, "%s #%d: waitpid: %s", what, i, strerror(errno));
  if (WIFSIGNALED(st))
    CHECK_MSG(0, "%s #%d: child killed by signal %d (%s)%s", what, i, WTERMSIG(st),
              strsignal(WTERMSIG(st)), WTERMSIG(st) == SIGALRM ? " - deadlocked" : "");
  else
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s #%d: child exit status %d", what, i,
              WEXITSTATUS(st));
}

static pthread_t workers[NWORKERS];

static void start_workers(void) {
  atomic_store(&stop, false);
  for (int i = 0; i < NWORKERS; i++)
    CHECK(pthread_create(&workers[i], NULL, worker, (void*)(intptr_t)(i + 1)) == 0);
  /* let them get going (a count of rounds, not a time) */
  while (atomic_load(&worker_rounds) < 50) sched_yield();
}

static void stop_workers(void) {
  atomic_store(&stop, true);
  for (int i = 0; i < NWORKERS; i++) pthread_join(workers[i], NULL);
  CHECK_EQ(atomic_load(&worker_errors), 0);
  for (int s = 0; s < SLOTS; s++) {
    uint64_t* p = atomic_exchange(&slots[s], NULL);
    if (p) {
      CHECK(published_ok(p));
      free(p);
    }
  }
}

/* ---- scenario: fork from the main thread while workers allocate ------------ */

static void scenario_threads(void) {
  start_workers();
  enum { FORKS = 60 };
  for (int i = 0; i < FORKS; i++) {
    /* a little allocation by the forking thread itself, right before fork */
    void* mine = malloc(100 + (size_t)i);
    pid_t pid = fork();
    if (pid == 0) {
      child_setup();
      int bad = child_work(true, i % 4 == 0);
      free(mine);
      if (i % 10 == 0) { /* and a grandchild, forked from the child */
        pid_t g = fork();
        if (g == 0) {
          alarm(CHILD_TIMEOUT);
          _exit(child_work(false, true));
        }
        int gst = 0;
        if (g < 0 || waitpid(g, &gst, 0) != g || !WIFEXITED(gst) || WEXITSTATUS(gst) != 0)
          bad |= 64;
      }
      _exit(bad);
    }
    CHECK_MSG(pid > 0, "fork: %s", strerror(errno));
    free(mine);
    if (pid < 0) break;
    remember(pid);
    reap(pid, "fork", i);
  }
  stop_workers();
}

/* ---- scenario: fork inside a signal handler --------------------------------- */

static atomic_int handler_started; /* forks begun (index of the next child) */
static atomic_int handler_forks;   /* forks finished, pid recorded */
static atomic_int handler_fork_errors;
static volatile pid_t handler_pids[MAX_CHILDREN];

static void fork_handler(int sig) {
  int saved = errno;
  int k = atomic_fetch_add(&handler_started, 1);
  pid_t pid = fork();
  if (pid == 0) {
    child_setup();
    _exit(child_work(false, false));
  }
  if (pid < 0) atomic_fetch_add(&handler_fork_errors, 1);
  else if (k < MAX_CHILDREN) handler_pids[k] = pid;
  atomic_fetch_add(&handler_forks, 1);
  errno = saved;
}

/* Install handler for sig (no flags, empty mask); sigaction's result. */
static int set_handler(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

static atomic_bool idler_stop;
static void* idler(void* arg) {
  /* a thread that never allocates: it only waits for signals */
  while (!atomic_load(&idler_stop)) pause();
  return arg;
}
static void wake(int sig) {}

static void scenario_signal(void) {
  CHECK(set_handler(SIGUSR1, fork_handler) == 0);
  CHECK(set_handler(SIGUSR2, wake) == 0);

  start_workers();
  pthread_t idle;
  CHECK(pthread_create(&idle, NULL, idler, NULL) == 0);
  enum { ROUNDS = 40 };
  int expected = 0;
  for (int i = 0; i < ROUNDS; i++) {
    int before = atomic_load(&handler_forks);
    if (i % 2 == 0) {
      pthread_kill(idle, SIGUSR1); /* fork on the idle thread */
      while (atomic_load(&handler_forks) == before) sched_yield();
    } else {
      raise(SIGUSR1); /* fork on this thread, inside the handler */
    }
    expected++;
    CHECK_EQ(atomic_load(&handler_forks), expected);
    pid_t pid = handler_pids[i];
    CHECK_MSG(pid > 0, "signal fork #%d made no child", i);
    if (pid <= 0) continue;
    remember(pid);
    reap(pid, "fork in signal handler", i);
  }
  atomic_store(&idler_stop, true);
  pthread_kill(idle, SIGUSR2);
  pthread_join(idle, NULL);
  CHECK_EQ(atomic_load(&handler_fork_errors), 0);
  stop_workers();
}

/* ---- scenario: fork in a signal handler that interrupted malloc/free ------
 * The signal goes to the allocating workers themselves, so the fork can
 * happen while the interrupted thread is anywhere inside malloc or free,
 * holding whatever it holds.  fork's own handlers must not wait for it
 * (glibc's malloc deadlocks here).  The child's heap may be mid-update, so
 * it only _exits; the handler reaps it (waitpid is async-signal-safe). */

static atomic_int inmalloc_forks;
static atomic_int inmalloc_errors;

static void inmalloc_handler(int sig) {
  int saved = errno;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    atomic_fetch_add(&inmalloc_errors, 1);
  atomic_fetch_add(&inmalloc_forks, 1);
  errno = saved;
}

static void scenario_signal_in_malloc(void) {
  CHECK(set_handler(SIGUSR1, inmalloc_handler) == 0);
  start_workers();
  enum { SIGNALS = 300 };
  for (int i = 0; i < SIGNALS; i++) {
    int before = atomic_load(&inmalloc_forks);
    pthread_kill(workers[i % NWORKERS], SIGUSR1);
    while (atomic_load(&inmalloc_forks) == before) sched_yield();
  }
  stop_workers();
  CHECK_EQ(atomic_load(&inmalloc_forks), SIGNALS);
  CHECK_EQ(atomic_load(&inmalloc_errors), 0);
}

/* ---- scenario: stdio's list lock against fork ----------------------------- */

static atomic_bool stdio_stop;
static atomic_long stdio_rounds;
static atomic_long stdio_errors;
static char tmpdir[256];

static void* stdio_worker(void* arg) {
  char path[300];
  snprintf(path, sizeof path, "%s/stdio-%d.txt", tmpdir, (int)(intptr_t)arg);
  while (!atomic_load(&stdio_stop)) {
    FILE* f = fopen(path, "w");
    if (!f) {
      atomic_fetch_add(&stdio_errors, 1);
      continue;
    }
    char* s = malloc(300);
    if (s) snprintf(s, 300, "line %ld", atomic_load(&stdio_rounds));
    fprintf(f, "%s %d %f\n", s ? s : "?", 42, 3.5);
    fflush(NULL); /* walks every FILE under the list lock */
    free(s);
    fclose(f);
    FILE* m = open_memstream(&s, &(size_t){0});
    if (m) {
      fprintf(m, "%0512d", 7); /* grows a malloc'd buffer */
      fclose(m);
      free(s);
    }
    atomic_fetch_add(&stdio_rounds, 1);
  }
  unlink(path);
  return NULL;
}

static void scenario_stdio(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-fork-stdio-XXXXXX");
  CHECK(mkdtemp(tmpdir) != NULL);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, stdio_worker, (void*)(intptr_t)i) == 0);
  while (atomic_load(&stdio_rounds) < 20) sched_yield();
  enum { FORKS = 80 };
  for (int i = 0; i < FORKS; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      child_setup();
      int bad = child_work(false, false);
      /* stdio must work in the child too (its list lock was reset) */
      char path[300];
      snprintf(path, sizeof path, "%s/child-%d.txt", tmpdir, (int)getpid());
      FILE* f = fopen(path, "w");
      if (!f) bad |= 32;
      else {
        fprintf(f, "child %d\n", i);
        fflush(NULL);
        fclose(f);
        unlink(path);
      }
      _exit(bad);
    }
    CHECK_MSG(pid > 0, "fork: %s", strerror(errno));
    if (pid < 0) break;
    remember(pid);
    reap(pid, "fork against stdio", i);
  }
  atomic_store(&stdio_stop, true);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  CHECK_EQ(atomic_load(&stdio_errors), 0);
  rmdir(tmpdir);
}

int main(int argc, char** argv) {
  const char* which = argc > 1 ? argv[1] : "";
  signal(SIGALRM, parent_timeout);
  alarm(PARENT_TIMEOUT);
  if (!strcmp(which, "threads")) scenario_threads();
  else if (!strcmp(which, "signal")) scenario_signal();
  else if (!strcmp(which, "stdio")) scenario_stdio();
  else if (!strcmp(which, "signal-in-malloc")) scenario_signal_in_malloc();
  else {
    fprintf(stderr, "usage: %s threads|signal|signal-in-malloc|stdio\n", argv[0]);
    return 2;
  }
  alarm(0);
  return th_done();
}
