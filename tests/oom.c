/* oom.c - running out of address space fails cleanly.
 *
 * In a child, RLIMIT_AS is set to the current size + 256 MiB; then blocks
 * of several sizes are allocated (and written) until NULL.  Every failure
 * must be NULL with errno ENOMEM, never a crash; after freeing, allocation
 * works again; big single requests fail cleanly; the child exits normally
 * through exit() (atexit handlers, stdio flush, tessera's own exit work).
 * Also: calloc, aligned_alloc and a growing realloc until NULL; several
 * threads running out at once; a thread started when memory is short.
 * And first, each in a child of its own: blocks of one large size get
 * most of the headroom.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tessera.h"

#define MiB ((size_t)1 << 20)
#define MAX_BLOCKS (1 << 20)

static void* blocks[MAX_BLOCKS];
static int atexit_ran_fd = -1;

static void on_exit_handler(void) {
  if (atexit_ran_fd >= 0 && write(atexit_ran_fd, "atexit\n", 7) != 7) _exit(90);
}

/* Allocate blocks of n bytes (touching each) until NULL; count them. */
static size_t bytes_got;

static size_t fill_until_null(size_t n, size_t* count, size_t cap, const char* what) {
  size_t got = 0;
  for (;;) {
    if (*count >= cap) {
      CHECK_MSG(0, "%s: %zu blocks of %zu and still no NULL: is RLIMIT_AS enforced?", what, got, n);
      break;
    }
    errno = 0;
    unsigned char* p = malloc(n);
    if (!p) {
      CHECK_MSG(errno == ENOMEM, "%s: malloc(%zu) failed with errno %d (%s), want ENOMEM", what, n,
                errno, strerror(errno));
      break;
    }
    for (size_t k = 0; k < n; k += 4096) p[k] = (unsigned char)k; /* really usable */
    p[n - 1] = 1;
    blocks[(*count)++] = p;
    bytes_got += n;
    got++;
  }
  return got;
}

static void free_all(size_t* count) {
  for (size_t i = 0; i < *count; i++) free(blocks[i]);
  *count = 0;
}

static void expect_enomem(void* p, const char* what) {
  int e = errno;
  CHECK_MSG(p == NULL, "%s returned %p under the limit", what, p);
  CHECK_MSG(e == ENOMEM, "%s: errno %d (%s), want ENOMEM", what, e, strerror(e));
  free(p);
}

/* Fill with calloc / aligned_alloc / a growing realloc until NULL. */
static void fill_other_ways(void) {
  size_t count = 0;
  for (;;) {
    if (count >= MAX_BLOCKS) break;
    errno = 0;
    unsigned char* p = calloc(1, 200000);
    if (!p) {
      CHECK_MSG(errno == ENOMEM, "calloc until NULL: errno %d", errno);
      break;
    }
    if (p[199999] != 0 || p[0] != 0) CHECK_MSG(0, "calloc block not zero");
    p[0] = 1;
    blocks[count++] = p;
  }
  CHECK_MSG(count > 10, "only %zu calloc blocks of 200000", count);
  free_all(&count);
  for (;;) {
    if (count >= MAX_BLOCKS) break;
    errno = 0;
    unsigned char* p = aligned_alloc(65536, 70000);
    if (!p) {
      CHECK_MSG(errno == ENOMEM, "aligned_alloc until NULL: errno %d", errno);
      break;
    }
    CHECK(((uintptr_t)p & 65535) == 0);
    memset(p, 2, 70000);
    blocks[count++] = p;
  }
  CHECK_MSG(count > 10, "only %zu aligned blocks", count);
  free_all(&count);
  /* one block grown by realloc until it cannot grow: contents kept */
  size_t n = 4096;
  unsigned char* b = malloc(n);
  CHECK(b != NULL);
  if (!b) return;
  th_fill(b, n, 0, 0, 5);
  for (;;) {
    errno = 0;
    unsigned char* q = realloc(b, n + 3 * MiB);
    if (!q) {
      CHECK_MSG(errno == ENOMEM, "realloc until NULL: errno %d", errno);
      break;
    }
    b = q;
    th_fill(b + n, 3 * MiB, 0, 0, 5 + n);
    n += 3 * MiB;
    if (n > 1024 * MiB) {
      CHECK_MSG(0, "realloc grew past 1 GiB under a 256 MiB limit");
      break;
    }
  }
  CHECK_MSG(th_verify(b, 4096, 0, 0, 5) == 4096, "a failed realloc damaged the block");
  CHECK_MSG(n >= 64 * MiB, "realloc stopped at %zu MiB", n / MiB);
  free(b);
}

/* Several threads run out of memory at once. */
#define OOM_THREADS 4
static pthread_barrier_t oom_start; /* every thread exists before any allocates */

static void* oom_thread(void* arg) {
  size_t me = (size_t)arg;
  pthread_barrier_wait(&oom_start);
  static void* mine_all[OOM_THREADS][1 << 16];
  void** mine = mine_all[me];
  size_t n = 0, bad = 0;
  size_t sz = me == 0 ? 2 * MiB + 4096 : me == 1 ? 300000 : me == 2 ? 20000 : 700;
  for (;;) {
    if (n >= (1 << 16)) break;
    errno = 0;
    unsigned char* p = malloc(sz);
    if (!p) {
      if (errno != ENOMEM) bad++;
      break;
    }
    p[0] = p[sz - 1] = 1;
    mine[n++] = p;
  }
  /* having hit the wall, a few more attempts also fail cleanly or succeed */
  for (int k = 0; k < 100; k++) {
    errno = 0;
    void* p = malloc(sz);
    if (!p && errno != ENOMEM) bad++;
    free(p);
  }
  for (size_t i = 0; i < n; i++) free(mine[i]);
  return (void*)bad;
}

static void* late_thread(void* arg) {
  /* started when memory is short: its first malloc (which gives it a heap)
   * may fail, but only with NULL and ENOMEM */
  size_t bad = 0, got = 0;
  for (size_t sz = 16; sz <= 64 * MiB; sz *= 4) {
    errno = 0;
    void* p = malloc(sz);
    if (p) {
      got++;
      memset(p, 3, sz < 4096 ? sz : 4096);
    } else if (errno != ENOMEM) {
      bad++;
    }
    free(p);
  }
  return (void*)(bad * 1000 + got);
}

static void threads_under_oom(void) {
  pthread_t t[OOM_THREADS];
  int started = 0;
  /* Without the barrier, the first thread can use up the address space
   * before the next one gets its stack mapped, whatever the allocator. */
  pthread_barrier_init(&oom_start, NULL, OOM_THREADS);
  for (size_t i = 0; i < OOM_THREADS; i++)
    if (pthread_create(&t[started], NULL, oom_thread, (void*)i) == 0) started++;
  CHECK_MSG(started == OOM_THREADS, "could start only %d threads", started);
  if (started != OOM_THREADS) {
    /* the started ones wait for the rest forever: nothing more to test */
    return;
  }
  for (int i = 0; i < started; i++) {
    void* bad = NULL;
    pthread_join(t[i], &bad);
    CHECK_MSG(bad == NULL, "thread %d: %zu failures without ENOMEM", i, (size_t)bad);
  }

  /* Memory full, then a little address space given back outside the
   * allocator (a ballast mapping): a new thread gets its stack from it, and
   * its first malloc (which must find it a heap) succeeds or fails cleanly. */
  size_t ballast_len = 8 * MiB;
  void* ballast = mmap(NULL, ballast_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(ballast != MAP_FAILED);
  size_t count = 0;
  fill_until_null(1 * MiB, &count, MAX_BLOCKS, "fill before late thread");
  fill_until_null(1000, &count, MAX_BLOCKS, "fill before late thread");
  if (ballast != MAP_FAILED) munmap(ballast, ballast_len);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t late;
  int e = pthread_create(&late, &attr, late_thread, NULL);
  CHECK_MSG(e == 0, "pthread_create with 8 MiB of address space free: %s", strerror(e));
  if (e == 0) {
    void* r = NULL;
    pthread_join(late, &r);
    CHECK_MSG((size_t)r < 1000, "a thread started under OOM saw failures without ENOMEM");
    fprintf(stderr, "oom: a thread started when memory was short got %zu of 12 blocks (16 B .. 64 MiB)\n",
            (size_t)r % 1000);
  }
  free_all(&count);
  pthread_attr_destroy(&attr);
  free_all(&count);
}

static int child(void) {
  struct rlimit rl;
  size_t vsize = th_vsize_bytes();
  rl.rlim_cur = rl.rlim_max = vsize + 256 * MiB;
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

  size_t count = 0;
  /* huge blocks, then large, medium, small: each until NULL */
  static const size_t sizes[] = {8 * MiB, 1 * MiB, 100000, 4000, 100};
  for (int round = 0; round < 2; round++) {
    bytes_got = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t cap = MAX_BLOCKS;
      size_t got = fill_until_null(sizes[i], &count, cap, "fill");
      if (round == 0 && i == 0) CHECK_MSG(got >= 5, "only %zu blocks of 8 MiB in 256 MiB", got);
    }
    /* with everything full: these fail too, cleanly */
    errno = 0;
    expect_enomem(malloc(64 * MiB), "malloc(64 MiB) when full");
    errno = 0;
    expect_enomem(calloc(1, 64 * MiB), "calloc(64 MiB) when full");
    errno = 0;
    expect_enomem(aligned_alloc(4 * MiB, 16 * MiB), "aligned_alloc(4 MiB, 16 MiB) when full");
    void* out = (void*)16;
    int r = posix_memalign(&out, 64, 64 * MiB);
    CHECK_MSG(r == ENOMEM && out == (void*)16, "posix_memalign when full: %d", r);
    /* a failing realloc leaves the block alone */
    if (count > 0) {
      unsigned char* last = blocks[count - 1];
      unsigned char keep = last[0];
      errno = 0;
      void* q = realloc(last, 512 * MiB);
      CHECK_MSG(q == NULL && errno == ENOMEM, "realloc to 512 MiB when full: %p errno %d", q, errno);
      if (q) blocks[count - 1] = q;
      else CHECK(last[0] == keep);
    }
    /* most of the 256 MiB of headroom was usable */
    CHECK_MSG(bytes_got >= 128 * MiB, "round %d: only %zu MiB allocated before ENOMEM", round,
              bytes_got / MiB);
    fprintf(stderr, "oom round %d: %zu blocks, %zu MiB before ENOMEM\n", round, count,
            bytes_got / MiB);

    /* after freeing, allocation works again */
    free_all(&count);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void* p = malloc(sizes[i]);
      CHECK_MSG(p != NULL, "malloc(%zu) after freeing everything", sizes[i]);
      if (p) memset(p, 1, sizes[i]);
      free(p);
    }
    void* p = malloc(128 * MiB);
    CHECK_MSG(p != NULL, "malloc(128 MiB) after freeing everything");
    free(p);
  }

  fill_other_ways();
  threads_under_oom();
  /* and afterwards everything works again */
  for (size_t sz = 16; sz <= 64 * MiB; sz *= 4) {
    void* p = malloc(sz);
    CHECK_MSG(p != NULL, "malloc(%zu) after the OOM phases", sz);
    if (p) memset(p, 4, sz);
    free(p);
  }

  /* big single requests fail cleanly */
  errno = 0;
  expect_enomem(malloc(300 * MiB), "malloc(300 MiB)");
  errno = 0;
  expect_enomem(malloc(1ul << 40), "malloc(1 TiB)");
  errno = 0;
  expect_enomem(calloc(1ul << 20, 1ul << 20), "calloc(1 TiB)");
  errno = 0;
  expect_enomem(aligned_alloc(1ul << 30, 1ul << 30), "aligned_alloc(1 GiB, 1 GiB)");
  errno = 0;
  expect_enomem(tess_malloc(400 * MiB), "tess_malloc(400 MiB)");
  void* small = malloc(10);
  CHECK(small != NULL);
  errno = 0;
  void* q = realloc(small, 400 * MiB);
  CHECK_MSG(q == NULL && errno == ENOMEM, "realloc(small, 400 MiB) = %p errno %d", q, errno);
  free(q ? q : small);
  return th_failures ? 1 : 0;
}

/* How much of the headroom blocks of one size get: large blocks (128 KiB
 * to 2 MiB) under a limit are mappings of their own, so little of it is
 * lost.  In 4 MiB segments, three blocks of 1 MiB fit in one (1.33 MiB of
 * the limit each) and one of 2 MB: they got 195 and 123 MiB of 256. */
static int one_size(size_t n) {
  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = th_vsize_bytes() + 256 * MiB;
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
  size_t count = 0;
  bytes_got = 0;
  fill_until_null(n, &count, MAX_BLOCKS, "one size");
  CHECK_MSG(bytes_got >= 216 * MiB, "blocks of %zu bytes: %zu MiB of 256 MiB of headroom before ENOMEM", n,
            bytes_got / MiB);
  fprintf(stderr, "oom: blocks of %zu bytes: %zu MiB of 256 before ENOMEM\n", n, bytes_got / MiB);
  free_all(&count);
  void* p = malloc(n);
  CHECK_MSG(p != NULL, "malloc(%zu) after freeing everything", n);
  free(p);
  return th_failures ? 1 : 0;
}

int main(void) {
  static const size_t large[] = {1 * MiB, 2000000, 300000, 2 * MiB};
  for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      th_failures = 0;
      _exit(one_size(large[i]));
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "blocks of %zu bytes under a limit: status %#x", large[i], st);
  }

  int pfd[2];
  CHECK(pipe(pfd) == 0);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    alarm(60);
    atexit_ran_fd = pfd[1];
    atexit(on_exit_handler);
    int st = child();
    if (st == 0) fprintf(stderr, "oom child: %ld checks passed\n", th_checks);
    exit(st); /* the normal way out, with atexit handlers */
  }
  close(pfd[1]);
  char buf[64] = {0};
  ssize_t n = read(pfd[0], buf, sizeof buf - 1);
  close(pfd[0]);
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  if (WIFSIGNALED(st))
    CHECK_MSG(0, "the child died of signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
  else
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child exited with %d", WEXITSTATUS(st));
  CHECK_MSG(n == 7 && !strcmp(buf, "atexit\n"), "the child did not run its atexit handler");
  return th_done();
}
