/* oom.c - running out of address space fails cleanly.
 *
 * In a child, RLIMIT_AS is set to the current size + 256 MiB; then blocks
 * of several sizes are allocated (and written) until NULL.  Every failure
 * must be NULL with errno ENOMEM, never a crash; after freeing, allocation
 * works again; big single requests fail cleanly; the child exits normally
 * through exit() (atexit handlers, stdio flush, tessera's own exit work).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <signal.h>
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

int main(void) {
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
