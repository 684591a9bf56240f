/* override.c - the standard names.  Each is a thin shim over the tess_
 * implementation: the fast paths are inlined here from alloc_inline.h, so
 * `malloc` costs what `tess_malloc` costs.
 *
 * Exported, for LD_PRELOAD and linking: the C and POSIX set, glibc's
 * extensions and __libc_* entry points, C23 free_sized, the mallinfo family,
 * and C++ operator new/delete in every form.  For static linking the file
 * also defines every other name glibc's malloc.o defines (__malloc,
 * __malloc_fork_lock_parent, ...): were one missing, the linker would pull
 * malloc.o from libc.a and fail with "multiple definition".
 */
#define _GNU_SOURCE
#include "alloc_inline.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <tessera.h>

#define TESS_EXPORT __attribute__((visibility("default")))

/* ---- the C standard set -------------------------------------------------- */

TESS_EXPORT void* malloc(size_t size) { return _tess_malloc_inline(size); }
TESS_EXPORT void free(void* p) { _tess_free_inline(p, "free"); }
TESS_EXPORT void* calloc(size_t n, size_t size) { return tess_calloc(n, size); }
TESS_EXPORT void* realloc(void* p, size_t size) { return tess_realloc(p, size); }
TESS_EXPORT void* aligned_alloc(size_t alignment, size_t size) { return tess_aligned_alloc(alignment, size); }
TESS_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  return tess_posix_memalign(out, alignment, size);
}
TESS_EXPORT size_t malloc_usable_size(void* p) { return tess_usable_size(p); }
TESS_EXPORT void free_sized(void* p, size_t size) { tess_free_sized(p, size); }
TESS_EXPORT void free_aligned_sized(void* p, size_t alignment, size_t size) {
  tess_free_aligned_sized(p, alignment, size);
}

/* glibc's memalign takes any alignment: not a power of two is rounded up. */
TESS_EXPORT void* memalign(size_t alignment, size_t size) {
  if (alignment > ((size_t)1 << 63)) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment != 0 && (alignment & (alignment - 1)) != 0) alignment = (size_t)1 << (64 - __builtin_clzl(alignment));
  return _tess_aligned_generic(alignment, size, false);
}

TESS_EXPORT void* valloc(size_t size) { return _tess_aligned_generic(TESS_OS_PAGE_SIZE, size, false); }

/* pvalloc: page aligned, size rounded up to whole pages (one for 0). */
TESS_EXPORT void* pvalloc(size_t size) {
  size_t rounded = (size + TESS_OS_PAGE_SIZE - 1) & ~(size_t)(TESS_OS_PAGE_SIZE - 1);
  if (rounded < size) return _tess_fail_enomem();
  if (rounded == 0) rounded = TESS_OS_PAGE_SIZE;
  return _tess_aligned_generic(TESS_OS_PAGE_SIZE, rounded, false);
}

/* ---- glibc's tuning and introspection ------------------------------------- */

/* Every parameter glibc knows is accepted (1) with the values glibc
 * accepts; tessera tunes itself, so they change nothing.  A fastbin limit
 * above glibc's maximum is refused (0) as glibc refuses it, and so is an
 * unknown parameter (glibc accepts those: a bug its manual owns to). */
TESS_EXPORT int mallopt(int param, int value) {
  switch (param) {
  case M_MXFAST:
    return value >= 0 && (size_t)value <= 80 * sizeof(size_t) / 4;
  case M_MMAP_THRESHOLD: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_MAX:
  case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
    return 1;
  default:
    return 0;
  }
}

TESS_EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  return tess_trim();
}

TESS_EXPORT struct mallinfo2 mallinfo2(void) {
  tess_stats_t s;
  tess_stats_get(&s);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  size_t in_pages = _tess_heaps_bytes_in_use() + s.large_bytes;
  mi.arena = s.mapped - s.huge_bytes;       /* bytes in segments           */
  mi.hblks = s.huge_count;                  /* blocks with their own mmap  */
  mi.hblkhd = s.huge_bytes;
  mi.uordblks = in_pages;                   /* bytes in blocks in use      */
  mi.fordblks = mi.arena > in_pages ? mi.arena - in_pages : 0;
  mi.ordblks = mi.fordblks != 0;
  mi.usmblks = s.resident_max;
  return mi;
}

static int clamp_int(size_t v) { return v > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)v; }

TESS_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  mi.arena = clamp_int(m2.arena);
  mi.ordblks = clamp_int(m2.ordblks);
  mi.smblks = clamp_int(m2.smblks);
  mi.hblks = clamp_int(m2.hblks);
  mi.hblkhd = clamp_int(m2.hblkhd);
  mi.usmblks = clamp_int(m2.usmblks);
  mi.fsmblks = clamp_int(m2.fsmblks);
  mi.uordblks = clamp_int(m2.uordblks);
  mi.fordblks = clamp_int(m2.fordblks);
  mi.keepcost = clamp_int(m2.keepcost);
  return mi;
}

TESS_EXPORT void malloc_stats(void) {
  int cancel = _tess_prim_cancel_off(); /* not a cancellation point */
  struct mallinfo2 mi = mallinfo2();
  char buf[512];
  int n = _tess_format(buf, sizeof buf,
                       "Arena 0:\nsystem bytes     = %zu\nin use bytes     = %zu\n"
                       "Total (incl. mmap):\nsystem bytes     = %zu\nin use bytes     = %zu\n"
                       "max mmap regions = %zu\nmax mmap bytes   = %zu\n",
                       mi.arena, mi.uordblks, mi.arena + mi.hblkhd, mi.uordblks + mi.hblkhd, mi.hblks, mi.hblkhd);
  _tess_prim_write_stderr(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
  _tess_stats_print_fd(2, false);
  _tess_prim_cancel_restore(cancel);
}

TESS_EXPORT int malloc_info(int options, FILE* out) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  tess_stats_t s;
  tess_stats_get(&s);
  int cancel = _tess_prim_cancel_off();
  fprintf(out,
          "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n</heap>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n</malloc>\n",
          s.mapped - s.huge_bytes - (s.in_use - s.huge_bytes), s.committed, s.resident_max, s.mapped, s.mapped,
          s.mapped - s.in_use, s.huge_count, s.huge_bytes, s.committed, s.resident_max, s.mapped, s.mapped);
  _tess_prim_cancel_restore(cancel);
  return 0;
}

/* ---- glibc's own entry points ---------------------------------------------- */

#define TESS_ALIAS(name, target) TESS_EXPORT __typeof__(target) name __attribute__((alias(#target)));

TESS_ALIAS(__libc_malloc, malloc)
TESS_ALIAS(__libc_free, free)
TESS_ALIAS(__libc_calloc, calloc)
TESS_ALIAS(__libc_realloc, realloc)
TESS_ALIAS(__libc_memalign, memalign)
TESS_ALIAS(__libc_valloc, valloc)
TESS_ALIAS(__libc_pvalloc, pvalloc)
TESS_ALIAS(__posix_memalign, posix_memalign)
TESS_ALIAS(__libc_mallinfo, mallinfo)
TESS_ALIAS(__libc_mallinfo2, mallinfo2)
TESS_ALIAS(__libc_mallopt, mallopt)
/* The rest of malloc.o's names, for static links. */
TESS_ALIAS(__malloc, malloc)
TESS_ALIAS(__free, free)
TESS_ALIAS(__calloc, calloc)
TESS_ALIAS(__realloc, realloc)
TESS_ALIAS(__memalign, memalign)
TESS_ALIAS(__valloc, valloc)
TESS_ALIAS(__pvalloc, pvalloc)
TESS_ALIAS(__malloc_usable_size, malloc_usable_size)
TESS_ALIAS(__mallopt, mallopt)
TESS_ALIAS(__mallinfo, mallinfo)
TESS_ALIAS(__mallinfo2, mallinfo2)
TESS_ALIAS(__malloc_trim, malloc_trim)
TESS_ALIAS(__malloc_stats, malloc_stats)
TESS_ALIAS(__malloc_info, malloc_info)

/* glibc's fork calls these around fork() in static programs.  tessera takes
 * no lock across fork (see segment.c); its child handler is registered with
 * pthread_atfork and runs in static programs too. */
TESS_EXPORT void __malloc_fork_lock_parent(void) {}
TESS_EXPORT void __malloc_fork_unlock_parent(void) {}
TESS_EXPORT void __malloc_fork_unlock_child(void) {}
/* Called at thread exit in static programs; the thread-exit key does it. */
TESS_EXPORT void __malloc_arena_thread_freeres(void) {}
/* glibc's sbrk-based heap grower: tessera never grows the break. */
TESS_EXPORT void* __glibc_morecore(ptrdiff_t increment) {
  (void)increment;
  return NULL;
}

/* ---- C++ operator new and delete --------------------------------------------
 * Written in C with their mangled names, so a C program that preloads
 * tessera does not pull in libstdc++.  On failure, operator new follows the
 * standard: call the new-handler until it gives up, then throw
 * std::bad_alloc (nothrow forms return NULL).  Both hooks are weak: they
 * exist whenever a C++ program, and so libstdc++, is present. */

typedef void (*tess_new_handler_t)(void);
extern tess_new_handler_t _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

/* A new-handler may throw std::bad_alloc, which a nothrow new must turn
 * into NULL, and C cannot catch it (it would unwind out of a noexcept
 * function: std::terminate).  The standard defines the nothrow forms as
 * "call operator new; return NULL if it throws", and that is how the C++
 * runtimes write theirs, so with a handler installed a failing nothrow new
 * hands the call to the runtime's own (the next definition after
 * tessera's), which calls tessera's throwing operator new inside its try
 * block.  Weak, like the hooks above: a static program has no dlsym. */
extern void* dlsym(void* handle, const char* name) __attribute__((weak));
extern int dladdr(const void* addr, Dl_info* info) __attribute__((weak));

/* ---- a program's own realloc and free --------------------------------------
 * glibc's reallocarray calls realloc, and its cfree is free, as the program
 * binds them: a program that defines its own malloc family (glibc's manual
 * asks for malloc, free, calloc and realloc) gets its own realloc from
 * reallocarray, and tessera's must not take the program's blocks for its
 * own.  Looked up once, at start-up; libc's definitions do not count (a
 * tessera opened with dlopen comes after them, and its blocks are not
 * libc's). */
static void* (*own_realloc)(void*, size_t);
static void (*own_free)(void*);

static void* own_definition(const char* name, const Dl_info* tessera) {
  Dl_info info;
  void* f = dlsym(RTLD_DEFAULT, name);
  if (f == NULL || dladdr(f, &info) == 0 || info.dli_fbase == tessera->dli_fbase) return NULL;
  if (info.dli_fname != NULL && strstr(info.dli_fname, "/libc.so") != NULL) return NULL;
  return f;
}

void _tess_libc_init(void) {
  Dl_info own;
  if (dlsym == NULL || dladdr == NULL || dladdr((const void*)&_tess_libc_init, &own) == 0) return;
  own_realloc = (void* (*)(void*, size_t))own_definition("realloc", &own);
  own_free = (void (*)(void*))own_definition("free", &own);
}

TESS_EXPORT void* reallocarray(void* p, size_t n, size_t size) {
  if (tess_likely(own_realloc == NULL)) return tess_reallocarray(p, n, size);
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return _tess_fail_enomem();
  return own_realloc(p, total);
}

TESS_EXPORT void cfree(void* p) {
  if (tess_likely(own_free == NULL)) _tess_free_inline(p, "cfree");
  else own_free(p);
}

/* The C++ runtime's own definition of `name` (the next after tessera's),
 * found once and kept in *cache, or NULL if there is none to hand to: not
 * found, or not in libstdc++ or libc++ (another allocator's would hand out
 * blocks tessera cannot free). */
static void* runtime_form(_Atomic(void*)* cache, const char* name) {
  static const char none; /* looked, found none */
  void* f = atomic_load_explicit(cache, memory_order_relaxed);
  if (f == NULL) {
    if (dlsym != NULL && dladdr != NULL) {
      f = dlsym(RTLD_NEXT, name);
      Dl_info info;
      if (f != NULL && (dladdr(f, &info) == 0 || info.dli_fname == NULL ||
                        (strstr(info.dli_fname, "libstdc++") == NULL && strstr(info.dli_fname, "libc++") == NULL))) {
        f = NULL;
      }
    }
    if (f == NULL) f = (void*)&none;
    atomic_store_explicit(cache, f, memory_order_relaxed);
  }
  return f == &none ? NULL : f;
}

/* The C++ runtime's nothrow new (aligned: its aligned one). */
static void* runtime_nothrow_new(bool aligned) {
  static _Atomic(void*) found[2];
  return runtime_form(&found[aligned], aligned ? "_ZnwmSt11align_val_tRKSt9nothrow_t" : "_ZnwmRKSt9nothrow_t");
}

/* ---- a program's own operator new and delete ---------------------------------
 * The standard defines most forms by others: new[] calls new, a nothrow new
 * calls its throwing form inside a try block, delete[] calls delete, and the
 * sized and nothrow deletes call the plain ones (and likewise for the
 * aligned family).  A program may replace only some of them (a pool, a
 * counter), and the C++ runtimes then route every form through its own.  So
 * tessera's forms other than new and delete look, once per family, whether
 * the forms they would call, as the program binds them, are tessera's; if
 * one is not, they step aside for the C++ runtime's own forms (which call
 * the program's), and a block from the program's pool never reaches
 * tessera's free.  Otherwise the check costs one compare and branch. */
enum { CXX_UNKNOWN = 0, CXX_OURS, CXX_REPLACED };
static _Atomic(int) cxx_state[2]; /* plain, aligned */

static TESS_NOINLINE bool cxx_look(int aligned) {
  /* The forms others call: new and delete, and new[] and delete[]. */
  static const char* const called[2][4] = {
      {"_Znwm", "_ZdlPv", "_Znam", "_ZdaPv"},
      {"_ZnwmSt11align_val_t", "_ZdlPvSt11align_val_t", "_ZnamSt11align_val_t", "_ZdaPvSt11align_val_t"}};
  int state = CXX_OURS;
  Dl_info own, info;
  if (dlsym != NULL && dladdr != NULL && dladdr((const void*)&cxx_look, &own) != 0) {
    for (int i = 0; i < 4; i++) {
      void* f = dlsym(RTLD_DEFAULT, called[aligned][i]);
      if (f != NULL && dladdr(f, &info) != 0 && info.dli_fbase != own.dli_fbase) state = CXX_REPLACED;
    }
  }
  atomic_store_explicit(&cxx_state[aligned], state, memory_order_relaxed);
  return state == CXX_REPLACED;
}

/* At start-up, in a C++ program: looked up then, not at the first call of
 * a form, which could come from a dl_iterate_phdr callback while another
 * thread holds the loader's lock in dlopen. */
void _tess_cxx_init(void) {
  if (_ZSt15get_new_handlerv == NULL) return; /* no C++ runtime (yet): looked up when needed */
  cxx_look(0);
  cxx_look(1);
}

static bool cxx_replaced(int aligned) {
  int state = atomic_load_explicit(&cxx_state[aligned], memory_order_relaxed);
  return state == CXX_REPLACED || (state == CXX_UNKNOWN && cxx_look(aligned));
}

static inline bool cxx_known_ours(int aligned) {
  /* A plain load (relaxed atomic on x86), so it folds into the compare. */
  return ((const int*)cxx_state)[aligned] == CXX_OURS;
}

/* A form of operator new other than new(size) and new(size, align):
 * tessera's own when its family is known to be tessera's (one compare and
 * branch); else, off the fast path, the runtime's if the program replaced
 * a form it calls, or tessera's after all.  `params` and `args` are
 * parenthesised. */
#define CXX_NEW_FORM(name, aligned, params, args, ours)                 \
  static TESS_NOINLINE void* name##_aside params {                      \
    if (cxx_replaced(aligned)) {                                        \
      static _Atomic(void*) runtime;                                    \
      void* f = runtime_form(&runtime, #name);                          \
      if (f != NULL) return ((void* (*)params)f)args;                   \
    }                                                                   \
    return ours;                                                        \
  }                                                                     \
  TESS_EXPORT void* name params {                                       \
    if (tess_unlikely(!cxx_known_ours(aligned))) return name##_aside args; \
    return ours;                                                        \
  }
/* The same for a form of operator delete. */
#define CXX_DELETE_FORM(name, aligned, params, args, ours)              \
  static TESS_NOINLINE void name##_aside params {                       \
    if (cxx_replaced(aligned)) {                                        \
      static _Atomic(void*) runtime;                                    \
      void* f = runtime_form(&runtime, #name);                          \
      if (f != NULL) {                                                  \
        ((void (*)params)f)args;                                        \
        return;                                                         \
      }                                                                 \
    }                                                                   \
    ours;                                                               \
  }                                                                     \
  TESS_EXPORT void name params {                                        \
    if (tess_unlikely(!cxx_known_ours(aligned))) {                      \
      name##_aside args;                                                \
      return;                                                           \
    }                                                                   \
    ours;                                                               \
  }

static const char nothrow_tag; /* std::nothrow_t is empty: any address does */

TESS_COLD static void* new_failed(size_t size, size_t alignment, bool nothrow) {
  for (;;) {
    tess_new_handler_t handler = _ZSt15get_new_handlerv != NULL ? _ZSt15get_new_handlerv() : NULL;
    if (handler == NULL) {
      if (nothrow) return NULL;
      if (_ZSt17__throw_bad_allocv != NULL) _ZSt17__throw_bad_allocv();
      _tess_error("operator new", NULL, "out of memory, and std::bad_alloc cannot be thrown");
    }
    if (nothrow) {
      void* f = runtime_nothrow_new(alignment != 0);
      if (f != NULL) {
        if (alignment != 0) return ((void* (*)(size_t, size_t, const void*))f)(size, alignment, &nothrow_tag);
        return ((void* (*)(size_t, const void*))f)(size, &nothrow_tag);
      }
    }
    handler();
    void* p = alignment > TESS_ALIGN ? _tess_aligned_generic(alignment, size, false) : _tess_malloc_inline(size);
    if (p != NULL) return p;
  }
}

/* operator new's slow paths (the second argument is malloc's `zero`,
 * always false here). */
static TESS_NOINLINE void* new_slow(size_t size, bool zero) {
  void* p = _tess_malloc_generic(size, zero);
  return tess_likely(p != NULL) ? p : new_failed(size, 0, false);
}
static TESS_NOINLINE void* new_slow_nothrow(size_t size, bool zero) {
  void* p = _tess_malloc_generic(size, zero);
  return tess_likely(p != NULL) ? p : new_failed(size, 0, true);
}

static inline void* new_plain(size_t size, bool nothrow) {
  return _tess_malloc_inline_with(size, nothrow ? new_slow_nothrow : new_slow);
}

static inline void* new_aligned(size_t size, size_t alignment, bool nothrow) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    if (nothrow) return NULL;
    return new_failed(SIZE_MAX, 0, false);
  }
  void* p = _tess_aligned_generic(alignment, size, false);
  return tess_likely(p != NULL) ? p : new_failed(size, alignment, nothrow);
}

typedef struct tess_nothrow_s tess_nothrow_t;

TESS_EXPORT void* _Znwm(size_t size) { return new_plain(size, false); }
CXX_NEW_FORM(_Znam, 0, (size_t size), (size), new_plain(size, false))
CXX_NEW_FORM(_ZnwmRKSt9nothrow_t, 0, (size_t size, const tess_nothrow_t* nt), (size, nt), new_plain(size, true))
CXX_NEW_FORM(_ZnamRKSt9nothrow_t, 0, (size_t size, const tess_nothrow_t* nt), (size, nt), new_plain(size, true))
TESS_EXPORT void* _ZnwmSt11align_val_t(size_t size, size_t al) { return new_aligned(size, al, false); }
CXX_NEW_FORM(_ZnamSt11align_val_t, 1, (size_t size, size_t al), (size, al), new_aligned(size, al, false))
CXX_NEW_FORM(_ZnwmSt11align_val_tRKSt9nothrow_t, 1, (size_t size, size_t al, const tess_nothrow_t* nt),
             (size, al, nt), new_aligned(size, al, true))
CXX_NEW_FORM(_ZnamSt11align_val_tRKSt9nothrow_t, 1, (size_t size, size_t al, const tess_nothrow_t* nt),
             (size, al, nt), new_aligned(size, al, true))

TESS_EXPORT void _ZdlPv(void* p) { _tess_free_inline(p, "operator delete"); }
CXX_DELETE_FORM(_ZdaPv, 0, (void* p), (p), _tess_free_inline(p, "operator delete[]"))
CXX_DELETE_FORM(_ZdlPvm, 0, (void* p, size_t size), (p, size), _tess_free_inline_sized(p, size, "operator delete"))
CXX_DELETE_FORM(_ZdaPvm, 0, (void* p, size_t size), (p, size), _tess_free_inline_sized(p, size, "operator delete[]"))
CXX_DELETE_FORM(_ZdlPvRKSt9nothrow_t, 0, (void* p, const tess_nothrow_t* nt), (p, nt),
                _tess_free_inline(p, "operator delete"))
CXX_DELETE_FORM(_ZdaPvRKSt9nothrow_t, 0, (void* p, const tess_nothrow_t* nt), (p, nt),
                _tess_free_inline(p, "operator delete[]"))
TESS_EXPORT void _ZdlPvSt11align_val_t(void* p, size_t al) { _tess_free_inline(p, "operator delete"); }
CXX_DELETE_FORM(_ZdaPvSt11align_val_t, 1, (void* p, size_t al), (p, al), _tess_free_inline(p, "operator delete[]"))
CXX_DELETE_FORM(_ZdlPvmSt11align_val_t, 1, (void* p, size_t size, size_t al), (p, size, al),
                _tess_free_inline_sized(p, size, "operator delete"))
CXX_DELETE_FORM(_ZdaPvmSt11align_val_t, 1, (void* p, size_t size, size_t al), (p, size, al),
                _tess_free_inline_sized(p, size, "operator delete[]"))
CXX_DELETE_FORM(_ZdlPvSt11align_val_tRKSt9nothrow_t, 1, (void* p, size_t al, const tess_nothrow_t* nt), (p, al, nt),
                _tess_free_inline(p, "operator delete"))
CXX_DELETE_FORM(_ZdaPvSt11align_val_tRKSt9nothrow_t, 1, (void* p, size_t al, const tess_nothrow_t* nt), (p, al, nt),
                _tess_free_inline(p, "operator delete[]"))
