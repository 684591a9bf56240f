/* last_thread.c - a process ends with its last thread, purger or not.
 *
 * When main returns through pthread_exit, glibc ends the process once the
 * last other thread ends (it calls exit(0) there).  tessera's background
 * purger is a thread too: if it outlived the program's threads, the process
 * would never end (and, blocking every signal, would not even die of
 * SIGTERM).  Each case runs in a child that must exit with status 0, with
 * its atexit handler run, within a generous deadline (a hang, not a slow
 * run, is what fails):
 *   - main ends while free memory still awaits purging (the purger is
 *     running and has work),
 *   - main ends after the purger has had time to finish,
 *   - main ends while another thread still runs and frees; that thread ends
 *     the process,
 *   - a process forked from a thread ends with pthread_exit (it has its own
 *     purger).
 * Before ending, each child checks that the purger is there (its thread
 * name in /proc/self/task), so the cases cannot pass by never starting it
 * (when the purge delay is long enough for a poll to see it).
 * A last case checks that the purger, once everything is purged, ends by
 * itself while the program idles, and that new free memory starts it again.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define MiB ((size_t)1 << 20)
#define DEADLINE_MS 20000 /* far beyond any purge delay: only a hang misses it */

static int marker_fd = -1; /* the child's atexit handler writes here */

static void at_exit_marker(void) {
  if (marker_fd >= 0 && write(marker_fd, "x", 1) != 1) _exit(3);
}

/* Threads of this process named "tessera-purge". */
static int purger_threads(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[64], name[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE* f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(name, sizeof name, f) != NULL && strncmp(name, "tessera-purge", 13) == 0) n++;
    fclose(f);
  }
  closedir(d);
  return n;
}

/* Free memory for the purger to give back: large blocks, written and
 * freed, twice (free memory asks for a purger; the next malloc starts it). */
static void make_free_memory(void) {
  for (int i = 0; i < 2; i++) {
    char* p = malloc(MiB);
    if (p == NULL) _exit(4);
    memset(p, 7, MiB);
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
  }
}

static void* noop_thread(void* arg) { return arg; }

static void become_multithreaded(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, noop_thread, NULL) != 0) _exit(5);
  pthread_join(t, NULL);
}

/* Wait until `want` purger threads are there (a new thread names itself
 * once it runs); false if that does not happen before the deadline. */
static bool wait_purgers(int want) {
  for (long waited = 0; purger_threads() != want; waited += 10) {
    if (waited >= DEADLINE_MS) return false;
    th_sleep_ms(10);
  }
  return true;
}

/* Whether a purger lives long enough to be seen by polling: with a long
 * purge delay it waits that long before it can end (ctest runs this test
 * with 1 s, and again with 0, where only the endings are checked). */
static bool observable;

/* Exit status 6 if no purger is running now. */
static void require_purger(void) {
  if (observable && !wait_purgers(1)) _exit(6);
}

static void* late_freer(void* arg) {
  th_sleep_ms(100); /* main has ended by now */
  for (int i = 0; i < 20; i++) make_free_memory();
  return arg;
}

static void case_dirty_at_end(void) {
  become_multithreaded();
  make_free_memory();
  require_purger();
  make_free_memory();
  pthread_exit(NULL);
}

static void case_idle_at_end(void) {
  become_multithreaded();
  make_free_memory();
  require_purger();
  th_sleep_ms(300);
  pthread_exit(NULL);
}

static void case_other_thread_ends_it(void) {
  become_multithreaded();
  make_free_memory();
  require_purger();
  pthread_t t;
  if (pthread_create(&t, NULL, late_freer, NULL) != 0) _exit(5);
  pthread_detach(t);
  pthread_exit(NULL);
}

static void* fork_in_thread(void* arg) {
  (void)arg;
  pid_t pid = fork();
  if (pid < 0) _exit(7);
  if (pid == 0) {
    /* The child: one thread, which ends the process with pthread_exit. */
    become_multithreaded();
    make_free_memory();
    require_purger();
    pthread_exit(NULL);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid) _exit(8);
  if (WIFSIGNALED(status)) fprintf(stderr, "last_thread: the forked child died of signal %d\n", WTERMSIG(status));
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 9);
}

/* The forking process waits for its thread rather than ending with
 * pthread_exit: that would load libgcc_s (glibc unwinds the thread with it)
 * while the other thread forks, and glibc's own fork does not keep the
 * child's loader consistent then (it aborts a few times in 40 without
 * tessera). */
static void case_fork_in_thread(void) {
  become_multithreaded();
  make_free_memory();
  pthread_t t;
  if (pthread_create(&t, NULL, fork_in_thread, NULL) != 0) _exit(5);
  pthread_join(t, NULL);
}

/* Run one case in a child; it must exit 0 with its atexit marker written. */
static void run_case(const char* name, void (*fn)(void)) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    marker_fd = fds[1];
    atexit(at_exit_marker);
    fn();
    _exit(2); /* not reached */
  }
  close(fds[1]);
  int status = 0;
  long waited = 0;
  pid_t done;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && waited < DEADLINE_MS) {
    th_sleep_ms(10);
    waited += 10;
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  char mark = 0;
  ssize_t got = read(fds[0], &mark, 1);
  close(fds[0]);
  th_context = name;
  CHECK_MSG(done == pid, "still running after %d s: the process outlived its last thread", DEADLINE_MS / 1000);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x (6: no purger was running)", status);
  CHECK_MSG(got == 1, "exit handlers did not run");
  th_context = NULL;
}

/* The purger ends once nothing is left to purge, and comes back. */
static void check_purger_comes_and_goes(void) {
  become_multithreaded();
  make_free_memory();
  CHECK_MSG(wait_purgers(1), "free memory in a multi-threaded process started no purger");
  CHECK_MSG(wait_purgers(0), "the purger is still there after %d s with nothing to purge", DEADLINE_MS / 1000);
  make_free_memory();
  CHECK_MSG(wait_purgers(1), "new free memory did not start the purger again");
}

int main(void) {
  const char* bg = getenv("TESSERA_BACKGROUND");
  if (bg != NULL && strcmp(bg, "0") == 0) {
    printf("last_thread: TESSERA_BACKGROUND=0, no purger to check\n");
    return 0;
  }
  const char* delay = getenv("TESSERA_PURGE_DELAY");
  observable = delay != NULL && atol(delay) >= 500;
  run_case("free memory waiting when main ends", case_dirty_at_end);
  run_case("nothing waiting when main ends", case_idle_at_end);
  run_case("another thread ends the process", case_other_thread_ends_it);
  run_case("fork in a thread, the child ends with pthread_exit", case_fork_in_thread);
  if (observable) check_purger_comes_and_goes();
  return th_done();
}
