/* misuse.c - misuse is caught, reported in one line, and aborts.
 *
 * A table of cases (after OpenBSD's malloc_errs regress test).  Each case
 * runs in a child process that first sends the pointer it is about to
 * misuse (formatted with %p) up a pipe, then misuses it.  The child must die
 * of SIGABRT, and its stderr must hold the line
 *
 *     tessera: <call>(<that pointer>): <what...>
 *
 * where <what> contains the expected words ("invalid pointer", "double
 * free", "size").  A child that returns, exits, or dies otherwise fails.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tessera.h"

extern void free_sized(void* p, size_t size) __attribute__((weak));
extern void free_aligned_sized(void* p, size_t alignment, size_t size) __attribute__((weak));

/* Calls through volatile pointers: the compiler must not see (and warn
 * about, or drop) frees of non-heap objects. */
static void* (*volatile v_malloc)(size_t) = malloc;
static void (*volatile v_free)(void*) = free;
static void* (*volatile v_realloc)(void*, size_t) = realloc;
static size_t (*volatile v_usable)(void*) = malloc_usable_size;
static void* (*volatile v_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void (*volatile v_tess_free)(void*) = tess_free;
static void* (*volatile v_tess_malloc)(size_t) = tess_malloc;
static void* (*volatile v_tess_realloc)(void*, size_t) = tess_realloc;

#define SEGMENT_SIZE ((uintptr_t)4 << 20) /* tessera's segment size (types.h) */

static int ptr_fd = -1; /* the child's pipe for the pointer text */

/* Tell the parent which pointer is about to be misused. */
static void announce(const void* p) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%p", p);
  if (write(ptr_fd, buf, (size_t)n) != n) _exit(97);
  close(ptr_fd);
}

static char global_buf[256] __attribute__((aligned(64)));

/* ---- the cases: each misuses one pointer and should not return ----------- */

static void c_free_stack(void) {
  char buf[128] __attribute__((aligned(16)));
  memset(buf, 1, sizeof buf);
  announce(buf + 32);
  v_free(buf + 32);
}
static void c_free_global(void) {
  announce(global_buf + 64);
  v_free(global_buf + 64);
}
static void c_free_interior_small(void) {
  char* p = v_malloc(64);
  announce(p + 16);
  v_free(p + 16);
}
static void c_free_interior_small_mid(void) {
  char* p = v_malloc(200);
  announce(p + 96);
  v_free(p + 96);
}
static void c_free_plus8(void) {
  char* p = v_malloc(100);
  announce(p + 8);
  v_free(p + 8);
}
static void c_free_plus1(void) {
  char* p = v_malloc(48);
  announce(p + 1);
  v_free(p + 1);
}
/* Inside a block of a page that was never handed out: a 3000-byte block
 * (3072-byte class, one carved per 4 KiB) is the first of its page in the
 * child, and the 16th slot is not carved yet. */
static void c_free_never_carved(void) {
  char* p = v_malloc(3000);
  announce(p + 15 * 3072 + 100);
  v_free(p + 15 * 3072 + 100);
}
static void c_free_interior_medium(void) {
  char* p = v_malloc(20000);
  announce(p + 4096);
  v_free(p + 4096);
}
static void c_free_interior_large(void) {
  char* p = v_malloc(1 << 20);
  announce(p + 65536);
  v_free(p + 65536);
}
static void c_free_interior_huge(void) {
  char* p = v_malloc(8 << 20);
  announce(p + 4096);
  v_free(p + 4096);
}
static void c_free_plus8_huge(void) {
  char* p = v_malloc(8 << 20);
  announce(p + 8);
  v_free(p + 8);
}
static void c_free_mmap(void) {
  void* m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) _exit(98);
  announce(m);
  v_free(m);
}
/* a mapping aligned like a segment, that tessera did not make */
static void c_free_mmap_segment_aligned(void) {
  size_t len = 3 * SEGMENT_SIZE;
  char* m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) _exit(98);
  char* a = (char*)(((uintptr_t)m + SEGMENT_SIZE - 1) & ~(SEGMENT_SIZE - 1));
  memset(a, 0, 2 * 65536);
  announce(a + 65536);
  v_free(a + 65536);
}
/* the start of tessera's own segment: its header, never a block */
static void c_free_segment_header(void) {
  char* p = v_malloc(64);
  char* seg = (char*)((uintptr_t)p & ~(SEGMENT_SIZE - 1));
  announce(seg);
  v_free(seg);
}
static void c_free_low_address(void) {
  announce((void*)0x1000);
  v_free((void*)0x1000);
}
static void c_free_top_of_user_space(void) {
  void* p = (void*)(uintptr_t)0x7ffffffff000ull; /* beyond the stack, unmapped */
  announce(p);
  v_free(p);
}
static void c_free_non_canonical(void) {
  void* p = (void*)((uintptr_t)1 << 60); /* not a user-space address at all */
  announce(p);
  v_free(p);
}
static void c_double_free_small(void) {
  void* p = v_malloc(32);
  v_free(p);
  announce(p);
  v_free(p);
}
static void c_double_free_small_between(void) {
  void* p = v_malloc(32);
  void* q = v_malloc(32);
  v_free(p);
  v_free(q);
  announce(p);
  v_free(p);
}
static void c_double_free_small_many_between(void) {
  void* b[50];
  for (int i = 0; i < 50; i++) b[i] = v_malloc(80);
  v_free(b[10]);
  for (int i = 0; i < 50; i++)
    if (i != 10) v_free(b[i]);
  announce(b[10]);
  v_free(b[10]);
}
static void c_double_free_medium(void) {
  void* p = v_malloc(30000);
  void* q = v_malloc(30000);
  v_free(p);
  v_free(q);
  announce(p);
  v_free(p);
}
static void c_double_free_large(void) {
  void* p = v_malloc(1 << 20);
  v_free(p);
  announce(p);
  v_free(p);
}
/* A huge block goes to the cache when freed, and comes back from it. */
static void c_write_after_free_huge(void) {
  char* p = v_malloc(8 << 20);
  v_free(p);
  memset(p, 'A', 16);
  announce(p);
  for (int i = 0; i < 20; i++) v_malloc(8 << 20);
}
/* With 16 MiB in use the freed block stays resident, its seal intact: the
 * report can say which block was freed twice. */
static void c_double_free_large_kept(void) {
  for (int i = 0; i < 4096; i++) memset(v_malloc(4096), 1, 4096);
  void* p = v_malloc(300000);
  v_free(p);
  announce(p);
  v_free(p);
}
static void c_double_free_huge(void) {
  void* p = v_malloc(8 << 20);
  v_free(p);
  announce(p);
  v_free(p);
}
/* Bigger than the huge-block cache: shrunk to fit it when freed, and the
 * cached remainder must still refuse a second free (it once passed for a
 * live block and was cached twice). */
static void c_double_free_huge_over_cache(void) {
  void* p = v_malloc(100 << 20);
  v_free(p);
  announce(p);
  v_free(p);
}
static void c_double_free_huge_aligned(void) {
  void* p = v_aligned_alloc(1 << 20, 8 << 20); /* cached when freed, like a plain one */
  v_free(p);
  announce(p);
  v_free(p);
}
static void c_double_free_aligned(void) {
  void* p = v_aligned_alloc(4096, 100);
  v_free(p);
  announce(p);
  v_free(p);
}
static void c_realloc_stack(void) {
  char buf[64] __attribute__((aligned(16)));
  memset(buf, 0, sizeof buf);
  announce(buf);
  v_realloc(buf, 128);
}
static void c_realloc_interior(void) {
  char* p = v_malloc(256);
  announce(p + 16);
  v_realloc(p + 16, 1000);
}
static void c_realloc_after_free(void) {
  void* p = v_malloc(40);
  void* q = v_malloc(40);
  v_free(p);
  v_free(q);
  announce(p);
  v_realloc(p, 100);
}
static void c_realloc_after_free_large(void) {
  void* p = v_malloc(1 << 20);
  v_free(p);
  announce(p);
  v_realloc(p, 2 << 20);
}
static void c_usable_size_stack(void) {
  char buf[64] __attribute__((aligned(16)));
  memset(buf, 0, sizeof buf);
  announce(buf);
  (void)v_usable(buf);
}
static void c_usable_size_interior(void) {
  char* p = v_malloc(64);
  announce(p + 16);
  (void)v_usable(p + 16);
}
static void c_free_sized_too_big(void) {
  void* p = v_malloc(64);
  size_t u = v_usable(p);
  announce(p);
  free_sized(p, u + 1);
}
static void c_free_sized_much_too_big(void) {
  void* p = v_malloc(100);
  announce(p);
  free_sized(p, 1 << 20);
}
static void c_free_sized_too_big_large(void) {
  void* p = v_malloc(1 << 20);
  size_t u = v_usable(p);
  announce(p);
  free_sized(p, u + 4096);
}
static void c_free_sized_interior(void) {
  char* p = v_malloc(64);
  announce(p + 16);
  free_sized(p + 16, 16);
}
static void c_free_aligned_sized_too_big(void) {
  void* p = v_aligned_alloc(256, 256);
  size_t u = v_usable(p);
  announce(p);
  free_aligned_sized(p, 256, u + 256);
}
static void c_tess_free_stack(void) {
  char buf[64] __attribute__((aligned(16)));
  memset(buf, 0, sizeof buf);
  announce(buf + 16);
  v_tess_free(buf + 16);
}
static void c_tess_double_free(void) {
  void* p = v_tess_malloc(48);
  void* q = v_tess_malloc(48);
  v_tess_free(p);
  v_tess_free(q);
  announce(p);
  v_tess_free(p);
}
static void c_tess_realloc_interior(void) {
  char* p = v_tess_malloc(64);
  announce(p + 8);
  v_tess_realloc(p + 8, 100);
}
static void c_tess_free_sized_too_big(void) {
  void* p = v_tess_malloc(64);
  size_t u = tess_usable_size(p);
  announce(p);
  tess_free_sized(p, u + 1);
}
/* a double free from another thread than the one that allocated */
#include <pthread.h>
static void* free_it(void* p) {
  v_free(p);
  return NULL;
}
static void c_double_free_cross_thread(void) {
  void* p = v_malloc(64);
  void* q = v_malloc(64);
  pthread_t t;
  pthread_create(&t, NULL, free_it, p);
  pthread_join(t, NULL);
  v_free(q);
  announce(p);
  v_free(p);
  /* if it is only noticed when the page's frees are collected: collect */
  for (int i = 0; i < 10000; i++) (void)v_malloc(64);
}

/* Medium blocks past the first slice of their page, in a program with
 * threads (so the background purger runs and medium pages are not tagged
 * for the slow path): the free fast path reads the slice's own descriptor,
 * which must send these to the checks, not treat them as a page. */
static void* nothing(void* a) { return a; }
static void with_threads(void) {
  pthread_t t;
  pthread_create(&t, NULL, nothing, NULL);
  pthread_join(t, NULL);
  v_free(v_malloc(1 << 20)); /* free memory appears: the purger starts */
  usleep(20000);
}
static void c_free_interior_medium_later_slice(void) {
  with_threads();
  char* p[8];
  for (int i = 0; i < 8; i++) p[i] = v_malloc(40000);
  announce(p[5] + 4096);
  v_free(p[5] + 4096);
}
static void c_double_free_medium_later_slice(void) {
  with_threads();
  char* p[8];
  for (int i = 0; i < 8; i++) p[i] = v_malloc(40000);
  v_free(p[5]);
  v_free(p[6]);
  announce(p[5]);
  v_free(p[5]);
}
/* C++'s sized delete (operator delete(void*, size_t)) told a size larger
 * than the block: a delete through the wrong type.  Through every path
 * free takes: this thread's page, another thread's, a medium page's later
 * slice, a large block, a huge one. */
extern void* _Znwm(size_t size);
extern void _ZdlPvm(void* p, size_t size);
static void* (*volatile v_new)(size_t) = _Znwm;
static void (*volatile v_delete_sized)(void*, size_t) = _ZdlPvm;
static void c_delete_sized_wrong(void) {
  void* p = v_new(1);
  announce(p);
  v_delete_sized(p, 72);
}
static void* new_it(void* a) {
  (void)a;
  return v_new(24);
}
static void c_delete_sized_wrong_other_thread(void) {
  pthread_t t;
  void* p;
  pthread_create(&t, NULL, new_it, NULL);
  pthread_join(t, &p);
  announce(p);
  v_delete_sized(p, 100);
}
static void c_delete_sized_wrong_medium_later_slice(void) {
  with_threads();
  char* p[8];
  for (int i = 0; i < 8; i++) p[i] = v_new(40000);
  announce(p[5]);
  v_delete_sized(p[5], 50000);
}
static void c_delete_sized_wrong_large(void) {
  void* p = v_new(300000);
  announce(p);
  v_delete_sized(p, 400000);
}
static void c_delete_sized_wrong_huge(void) {
  void* p = v_new(5 << 20);
  announce(p);
  v_delete_sized(p, 6 << 20);
}

/* A freed block written over, then malloc of its size until it comes back:
 * malloc must refuse to hand it out (its link is the program's data now). */
static void c_write_after_free(size_t size) {
  char* p = v_malloc(size);
  v_free(p);
  memset(p, 'A', size < 64 ? size : 64);
  announce(p);
  for (int i = 0; i < 100000; i++) v_malloc(size);
}
static void c_write_after_free_small(void) { c_write_after_free(48); }
static void c_write_after_free_medium(void) { c_write_after_free(20000); }
/* A large block: its memory must still be resident when it comes back
 * (purged memory reads as zeros and holds no seal), so 16 MiB stay in use
 * and the free stays within what a single-threaded program keeps. */
static void c_write_after_free_large(void) {
  for (int i = 0; i < 4096; i++) memset(v_malloc(4096), 1, 4096);
  char* p = v_malloc(300000);
  memset(p, 2, 300000);
  v_free(p);
  memset(p, 'A', 16);
  announce(p);
  for (int i = 0; i < 200; i++) v_malloc(300000);
}
/* An overflow from a block into its free neighbour. */
static void c_overflow_into_free(void) {
  char* a = v_malloc(32);
  char* b = v_malloc(32);
  if (b != a + 32) _exit(96); /* the case assumes blocks side by side */
  v_free(b);
  memset(a, 'B', 40);
  announce(b);
  for (int i = 0; i < 100000; i++) v_malloc(32);
}
/* Only the second word of a freed block written (the field after the first
 * pointer of a freed struct: the free-list link's word), or one bit of it:
 * malloc must not follow it, and must say so. */
static void c_write_link_after_free(size_t size, uint64_t value, int flip) {
  uint64_t* p = v_malloc(size);
  v_free(p);
  if (flip) p[1] ^= 16;
  else p[1] = value;
  announce(p);
  for (int i = 0; i < 100000; i++) v_malloc(size);
}
static void c_write_link_after_free_small(void) { c_write_link_after_free(64, 1, 0); } /* NULL -> 1 */
static void c_write_link_after_free_medium(void) { c_write_link_after_free(20000, 0x4141414141414141, 0); }
static void c_flip_link_after_free(void) { c_write_link_after_free(48, 0, 1); }
/* A double free whose check walks a free list through a block written after
 * its free: reported, not walked off into the program's data. */
static void c_double_free_past_overwritten(void) {
  char* a = v_malloc(64);
  uint64_t* b = v_malloc(64);
  v_free(a);
  v_free(b);
  b[1] = 0;
  announce(b);
  v_free(a);
}
/* A block freed by its owner and then by another thread, which is still
 * alive (its free has not been sent home): the owner's malloc, coming to the
 * block on its free list, finds the in-flight seal. */
static pthread_barrier_t holder_barrier;
static void* free_and_hold(void* p) {
  v_free(p);
  pthread_barrier_wait(&holder_barrier);
  pause(); /* the process ends on the report */
  return NULL;
}
static void c_double_free_other_thread_second(void) {
  void* p = v_malloc(96);
  v_free(p);
  announce(p);
  pthread_barrier_init(&holder_barrier, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, free_and_hold, p);
  pthread_barrier_wait(&holder_barrier);
  for (int i = 0; i < 100000; i++) (void)v_malloc(96);
}
/* The same, the second free's thread gone (its free was sent home): the
 * owner, taking the message, finds the block on its own list. */
static void c_double_free_other_thread_exited(void) {
  void* p = v_malloc(96);
  v_free(p);
  announce(p);
  pthread_t t;
  pthread_create(&t, NULL, free_it, p);
  pthread_join(t, NULL);
  for (int i = 0; i < 100000; i++) (void)v_malloc(96);
}
/* The same, the second free made by a thread past its exit: in the last
 * round of pthread key destructors, after tessera's own ran, when the
 * thread has no heap (its free goes to the owner as a suspect, which finds
 * the block on its list). */
static pthread_key_t late_key;
static void* late_victim;
static void late_double_free(void* v) {
  if ((uintptr_t)v < 4) { /* re-armed: glibc runs up to 4 rounds */
    pthread_setspecific(late_key, (void*)((uintptr_t)v + 1));
    return;
  }
  v_free(late_victim);
}
static void* arm_late_key(void* a) {
  v_free(v_malloc(96)); /* the thread has a heap, given back at its exit */
  pthread_setspecific(late_key, (void*)1);
  return a;
}
static void c_double_free_after_thread_exit(void) {
  late_victim = v_malloc(96);
  v_free(late_victim);
  announce(late_victim);
  pthread_key_create(&late_key, late_double_free);
  pthread_t t;
  pthread_create(&t, NULL, arm_late_key, NULL);
  pthread_join(t, NULL);
  for (int i = 0; i < 100000; i++) (void)v_malloc(96);
}
/* Blocks of a heap whose thread has stopped calling (it waits on a barrier
 * after allocating them) are kept for reuse by the thread that frees them,
 * once more than 512 wait for their owner (free.c, foreign_keep): the last
 * of these 1,000 is kept, not sent. */
#define LAG_BLOCKS 1000
static void* lag_blocks[LAG_BLOCKS];
static pthread_barrier_t lag_barrier;
static void* lag_owner(void* arg) {
  for (int i = 0; i < LAG_BLOCKS; i++) lag_blocks[i] = v_malloc(64);
  pthread_barrier_wait(&lag_barrier); /* allocated */
  pthread_barrier_wait(&lag_barrier); /* then take the frees sent here */
  tess_trim();
  pthread_barrier_wait(&lag_barrier);
  pause(); /* the process ends on the report */
  return arg;
}
static void lag_start(void) {
  pthread_barrier_init(&lag_barrier, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, lag_owner, NULL);
  pthread_barrier_wait(&lag_barrier);
  (void)v_malloc(64); /* this thread allocates the class too */
  for (int i = 0; i < LAG_BLOCKS; i++) v_free(lag_blocks[i]);
}
/* A kept block freed again by the thread that keeps it. */
static void c_double_free_kept(void) {
  lag_start();
  announce(lag_blocks[LAG_BLOCKS - 1]);
  v_free(lag_blocks[LAG_BLOCKS - 1]);
}
/* A kept block freed again by another thread (sent home as suspect, and
 * taken by its owner, which finds it on no list): the keeper finds its
 * seal gone when it sends its kept blocks home. */
static void c_double_free_kept_other_thread(void) {
  lag_start();
  void* p = lag_blocks[LAG_BLOCKS - 1];
  announce(p);
  pthread_t t;
  pthread_create(&t, NULL, free_it, p);
  pthread_join(t, NULL);
  pthread_barrier_wait(&lag_barrier);
  pthread_barrier_wait(&lag_barrier);
  tess_trim();
}
static void c_usable_size_after_free(void) {
  char* keep = v_malloc(64);
  void* p = v_malloc(64);
  v_free(p);
  announce(p);
  (void)v_usable(p);
  v_free(keep);
}

typedef struct misuse_case_s {
  const char* name;
  void (*run)(void);
  const char* calls; /* accepted call names, '|'-separated */
  const char* what;  /* accepted words after the colon, '|'-separated */
  int needs_free_sized;
} misuse_case_t;

static const misuse_case_t cases[] = {
    {"free of a stack address", c_free_stack, "free", "invalid pointer", 0},
    {"free of a global", c_free_global, "free", "invalid pointer", 0},
    {"free of an interior pointer (small, +16)", c_free_interior_small, "free", "offset 16 of the 64-byte block at", 0},
    {"free of an interior pointer (small, +96)", c_free_interior_small_mid, "free", "invalid pointer", 0},
    {"free of block start + 8", c_free_plus8, "free", "invalid pointer", 0},
    {"free of block start + 1", c_free_plus1, "free", "offset 1 of the 48-byte block at", 0},
    {"free inside a block never handed out", c_free_never_carved, "free", "invalid pointer (never allocated)", 0},
    {"free of an interior pointer (medium)", c_free_interior_medium, "free", "invalid pointer", 0},
    {"free of an interior pointer (medium, later slice, threads)", c_free_interior_medium_later_slice, "free",
     "invalid pointer", 0},
    {"free of an interior pointer (large)", c_free_interior_large, "free", "offset 65536 of the 1048576-byte block at", 0},
    {"free of an interior pointer (huge)", c_free_interior_huge, "free", "invalid pointer (not the start of a block: offset 4096 of the", 0},
    {"free of huge block start + 8", c_free_plus8_huge, "free", "invalid pointer", 0},
    {"free of a pointer from mmap", c_free_mmap, "free", "invalid pointer", 0},
    {"free inside a foreign 4 MiB-aligned mapping", c_free_mmap_segment_aligned, "free", "invalid pointer", 0},
    {"free of a segment header", c_free_segment_header, "free", "invalid pointer", 0},
    {"free of address 0x1000", c_free_low_address, "free", "invalid pointer", 0},
    {"free of the top of user space", c_free_top_of_user_space, "free", "invalid pointer", 0},
    {"free of a non-canonical address", c_free_non_canonical, "free", "invalid pointer", 0},
    {"double free (small, immediate)", c_double_free_small, "free", "double free (of a 32-byte block)", 0},
    {"double free (small, other block freed between)", c_double_free_small_between, "free", "double free", 0},
    {"double free (small, whole page freed between)", c_double_free_small_many_between, "free", "double free|invalid pointer", 0},
    {"double free (medium)", c_double_free_medium, "free", "double free", 0},
    {"double free (medium, later slice, threads)", c_double_free_medium_later_slice, "free", "double free", 0},
    {"double free (large)", c_double_free_large, "free", "double free|invalid pointer", 0},
    {"double free (large, memory kept)", c_double_free_large_kept, "free", "double free (of a large block)", 0},
    {"double free (huge)", c_double_free_huge, "free", "double free|invalid pointer", 0},
    {"double free (huge, bigger than the cache)", c_double_free_huge_over_cache, "free", "double free", 0},
    {"double free (huge, aligned to 1 MiB)", c_double_free_huge_aligned, "free", "double free", 0},
    {"double free (aligned_alloc 4096)", c_double_free_aligned, "free", "double free", 0},
    {"double free (first free from another thread)", c_double_free_cross_thread, "free", "double free", 0},
    {"sized delete, size too big", c_delete_sized_wrong, "operator delete", "size", 0},
    {"sized delete, size too big (another thread's block)", c_delete_sized_wrong_other_thread, "operator delete",
     "size", 0},
    {"sized delete, size too big (medium, later slice, threads)", c_delete_sized_wrong_medium_later_slice,
     "operator delete", "size", 0},
    {"sized delete, size too big (large)", c_delete_sized_wrong_large, "operator delete", "size", 0},
    {"sized delete, size too big (huge)", c_delete_sized_wrong_huge, "operator delete", "size", 0},
    {"write after free, then malloc (small)", c_write_after_free_small, "malloc", "overwritten", 0},
    {"write after free, then malloc (medium)", c_write_after_free_medium, "malloc", "overwritten", 0},
    {"write after free, then malloc (large)", c_write_after_free_large, "malloc", "overwritten", 0},
    {"write after free, then malloc (huge)", c_write_after_free_huge, "malloc", "overwritten", 0},
    {"overflow into a free block, then malloc", c_overflow_into_free, "malloc", "overwritten", 0},
    {"write over a freed block's link, then malloc (small)", c_write_link_after_free_small, "malloc", "overwritten", 0},
    {"write over a freed block's link, then malloc (medium)", c_write_link_after_free_medium, "malloc", "overwritten",
     0},
    {"one bit of a freed block's link flipped, then malloc", c_flip_link_after_free, "malloc", "overwritten", 0},
    {"double free, its check meeting a block written after free", c_double_free_past_overwritten, "free",
     "overwritten", 0},
    {"double free, the second from a thread still alive, then malloc", c_double_free_other_thread_second, "malloc",
     "double free (detected later; one free came from another thread)", 0},
    {"double free by a thread past its exit (last key destructor round)", c_double_free_after_thread_exit,
     "malloc|free", "double free", 0},
    {"double free, the second from a thread that exited, then malloc", c_double_free_other_thread_exited, "free",
     "double free (detected later; one free came from another thread)", 0},
    {"double free of a block kept from a lagging heap", c_double_free_kept, "free", "double free", 0},
    {"double free of a kept block, the second from another thread", c_double_free_kept_other_thread, "free",
     "double free", 0},
    {"malloc_usable_size of a freed block (small)", c_usable_size_after_free, "malloc_usable_size",
     "the memory is free", 0},
    {"realloc of a stack address", c_realloc_stack, "realloc", "invalid pointer", 0},
    {"realloc of an interior pointer", c_realloc_interior, "realloc", "invalid pointer", 0},
    {"realloc of a freed block (small)", c_realloc_after_free, "realloc", "double free|invalid pointer", 0},
    {"realloc of a freed block (large)", c_realloc_after_free_large, "realloc", "double free|invalid pointer", 0},
    {"malloc_usable_size of a stack address", c_usable_size_stack, "malloc_usable_size", "invalid pointer", 0},
    {"malloc_usable_size of an interior pointer", c_usable_size_interior, "malloc_usable_size", "invalid pointer", 0},
    {"free_sized with usable size + 1", c_free_sized_too_big, "free_sized", "size", 1},
    {"free_sized with 1 MiB for a small block", c_free_sized_much_too_big, "free_sized", "size", 1},
    {"free_sized too big (large block)", c_free_sized_too_big_large, "free_sized", "size", 1},
    {"free_sized of an interior pointer", c_free_sized_interior, "free_sized", "invalid pointer", 1},
    {"free_aligned_sized too big", c_free_aligned_sized_too_big, "free_aligned_sized", "size", 1},
    {"tess_free of a stack address", c_tess_free_stack, "tess_free|free", "invalid pointer", 0},
    {"tess_free double free", c_tess_double_free, "tess_free|free", "double free", 0},
    {"tess_realloc of block start + 8", c_tess_realloc_interior, "tess_realloc|realloc", "invalid pointer", 0},
    {"tess_free_sized too big", c_tess_free_sized_too_big, "tess_free_sized|free_sized", "size", 0},
};

/* Read all of fd into buf (NUL-terminated). */
static size_t slurp(int fd, char* buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    if (n + 1 >= cap) {
      char sink[256];
      if (read(fd, sink, sizeof sink) <= 0) break;
      continue;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  return n;
}

/* Does `alts` ('|'-separated) contain a word w such that match(w) holds? */
static int any_alt(const char* alts, int (*match)(const char* word, void* ctx), void* ctx) {
  char word[64];
  for (const char* s = alts; *s;) {
    size_t n = strcspn(s, "|");
    if (n >= sizeof word) n = sizeof word - 1;
    memcpy(word, s, n);
    word[n] = 0;
    if (match(word, ctx)) return 1;
    s += n;
    if (*s == '|') s++;
  }
  return 0;
}

typedef struct {
  const char* line; /* one line of stderr, NUL-terminated */
  const char* ptr;  /* pointer text the child announced */
  const misuse_case_t* c;
} line_ctx_t;

static int what_in_rest(const char* word, void* ctx) { return strstr((const char*)ctx, word) != NULL; }

static int line_matches_call(const char* call, void* vctx) {
  line_ctx_t* ctx = vctx;
  char prefix[160];
  snprintf(prefix, sizeof prefix, "tessera: %s(%s): ", call, ctx->ptr);
  size_t n = strlen(prefix);
  if (strncmp(ctx->line, prefix, n) != 0) return 0;
  return any_alt(ctx->c->what, what_in_rest, (void*)(ctx->line + n));
}

static void run_case(const misuse_case_t* c) {
  th_context = c->name;
  if (c->needs_free_sized && (!free_sized || !free_aligned_sized)) {
    CHECK_MSG(0, "free_sized/free_aligned_sized not defined");
    return;
  }
  int errp[2], ptrp[2];
  if (pipe(errp) || pipe(ptrp)) {
    CHECK_MSG(0, "pipe: %s", strerror(errno));
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    CHECK_MSG(0, "fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    alarm(20); /* a hang dies of SIGALRM, which fails the case */
    close(errp[0]);
    close(ptrp[0]);
    dup2(errp[1], 2);
    close(errp[1]);
    ptr_fd = ptrp[1];
    c->run();
    _exit(0); /* not caught: the parent reports it */
  }
  close(errp[1]);
  close(ptrp[1]);
  static char err[16384];
  char ptr[64];
  slurp(ptrp[0], ptr, sizeof ptr);
  slurp(errp[0], err, sizeof err);
  close(ptrp[0]);
  close(errp[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }

  CHECK_MSG(ptr[0] != 0, "the child did not get as far as the misuse");
  int aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
  if (WIFEXITED(st))
    CHECK_MSG(aborted, "child exited with status %d instead of aborting; stderr: %s",
              WEXITSTATUS(st), err);
  else
    CHECK_MSG(aborted, "child died of signal %d (%s), not SIGABRT; stderr: %s",
              WIFSIGNALED(st) ? WTERMSIG(st) : -1, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "?",
              err);

  /* Find the report line: "tessera: <call>(<ptr>): ...<what>...". */
  int found = 0, tessera_lines = 0;
  for (char* line = err; *line;) {
    char* nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (strncmp(line, "tessera: ", 9) == 0) tessera_lines++;
    line_ctx_t ctx = {line, ptr, c};
    if (!found && any_alt(c->calls, line_matches_call, &ctx)) found = 1;
    if (!nl) break;
    line = nl + 1;
    if (nl) *nl = '\n';
  }
  CHECK_MSG(found, "no line \"tessera: %s(%s): ...%s...\" on stderr; got: %s", c->calls, ptr,
            c->what, err);
  CHECK_MSG(tessera_lines >= 1, "no line starting with \"tessera: \"");
  th_context = NULL;
}

int main(int argc, char** argv) {
  int ran = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
    long before = th_failures;
    run_case(&cases[i]);
    fprintf(stderr, "%-56s %s\n", cases[i].name, th_failures == before ? "ok" : "FAILED");
    ran++;
  }
  CHECK(ran > 0);
  return th_done();
}
