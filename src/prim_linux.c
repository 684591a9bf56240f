/* prim_linux.c - the OS primitives for Linux (see prim.h for the contract).
 * The only file that makes system calls. */
#define _GNU_SOURCE
#include "prim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

/* The memory calls return their error and leave errno as they found it: a
 * malloc that succeeds after a failed attempt (an mremap in place that had
 * no room) must not change the program's errno, as glibc's never does. */
static int outcome(bool ok, int saved) {
  int err = ok ? 0 : errno != 0 ? errno : ENOMEM;
  errno = saved;
  return err;
}

/* Accounted as any private mapping (no MAP_NORESERVE): under the kernel's
 * default overcommit policy a request beyond RAM + swap fails here, with
 * ENOMEM, as it does under glibc, instead of succeeding and getting the
 * program killed when it touches the memory. */
int _tess_prim_map(void* hint, size_t size, void** out) {
  int saved = errno;
  void* p = mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) *out = p;
  return outcome(p != MAP_FAILED, saved);
}

void _tess_prim_hugepages(void* p, size_t size, bool want) {
  int saved = errno;
  madvise(p, size, want ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  errno = saved;
}

int _tess_prim_unmap(void* p, size_t size) {
  int saved = errno;
  return outcome(munmap(p, size) == 0, saved);
}

int _tess_prim_purge(void* p, size_t size) {
  int saved = errno;
  return outcome(madvise(p, size, MADV_DONTNEED) == 0, saved);
}

int _tess_prim_resident(void* p, size_t size, unsigned char* vec) {
  int saved = errno;
  return outcome(mincore(p, size, vec) == 0, saved);
}

int _tess_prim_remap(void* p, size_t old_size, size_t new_size, void* dest, bool fixed) {
  int saved = errno;
  void* q = fixed ? mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest)
                  : mremap(p, old_size, new_size, 0);
  return outcome(q != MAP_FAILED, saved);
}

uint64_t _tess_prim_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t _tess_prim_cpu_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return _tess_prim_clock_ms();
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t _tess_prim_random(void) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&r;
  }
  return r;
}

void _tess_prim_write_stderr(const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(2, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

int _tess_prim_append_file(const char* path, const char* buf, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  ssize_t n = write(fd, buf, len);
  int err = (n == (ssize_t)len) ? 0 : (n < 0 ? errno : EIO);
  close(fd);
  return err;
}

/* getenv() itself does not allocate, but reading environ directly keeps this
 * usable before libc has finished its own start-up. */
const char* _tess_prim_getenv(const char* name) {
  if (environ == NULL) return NULL;
  size_t len = strlen(name);
  for (char** e = environ; *e != NULL; e++) {
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  }
  return NULL;
}

int _tess_prim_getpid(void) { return (int)getpid(); }

void _tess_prim_program_name(char* buf, size_t size) {
  buf[0] = 0;
  int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) { buf[0] = 0; return; }
  buf[n] = 0;
  if (buf[n - 1] == '\n') buf[n - 1] = 0;
}

int _tess_prim_atfork(void (*child)(void)) {
  return pthread_atfork(NULL, NULL, child);
}

static pthread_key_t tess_thread_key;
static bool tess_thread_key_ok;

int _tess_prim_thread_key_create(void (*thread_done)(void*)) {
  int err = pthread_key_create(&tess_thread_key, thread_done);
  tess_thread_key_ok = (err == 0);
  return err;
}

void _tess_prim_thread_set(void* value) {
  if (tess_thread_key_ok) pthread_setspecific(tess_thread_key, value);
}

int _tess_prim_thread_spawn(void* (*fn)(void*)) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  int err = pthread_create(&t, &attr, fn, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return err; /* t is not used: a detached thread may be gone already */
}

void _tess_prim_thread_name(const char* name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

void _tess_prim_sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool _tess_prim_single_threaded(void) { return __libc_single_threaded != 0; }

int _tess_prim_cancel_off(void) {
  int old = PTHREAD_CANCEL_ENABLE;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  return old;
}

void _tess_prim_cancel_restore(int old) { pthread_setcancelstate(old, NULL); }

bool _tess_prim_address_space_limited(void) {
  struct rlimit r;
  return getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY;
}

void _tess_prim_yield(void) { sched_yield(); }

void _tess_prim_abort(void) {
  /* abort() flushes nothing and does not allocate; if SIGABRT is caught and
   * the handler returns, abort() resets it and raises again. */
  abort();
}
