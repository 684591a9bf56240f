/* tessera.h - public interface of the tessera memory allocator.
 *
 * tessera is a general-purpose malloc for Linux.  Linking libtessera (or
 * loading it with LD_PRELOAD) replaces the standard allocation functions
 * (malloc, free, ... and C++ operator new/delete); this header declares the
 * same functions under tessera's own `tess_` names, which are always
 * tessera's whatever else is linked into the program.
 *
 * Every function here is thread-safe.  Failure is reported the C way: a NULL
 * result with errno set (ENOMEM for sizes that cannot be served, EINVAL for
 * bad alignments), never a crash.  A pointer tessera did not hand out, passed
 * to a freeing function, is reported on stderr and the process aborts.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0
#define TESSERA_VERSION "0.1.0"

#if defined(__GNUC__)
#define TESS_API __attribute__((visibility("default")))
#define TESS_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#define TESS_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#else
#define TESS_API
#define TESS_MALLOC_ATTR
#define TESS_ALLOC_SIZE(...)
#endif

/* ---- allocation: the C standard set ------------------------------------ */

/* A block of at least `size` bytes, 16-byte aligned; malloc(0) returns a
 * unique pointer.  NULL with errno ENOMEM when the size cannot be served. */
TESS_API void* tess_malloc(size_t size) TESS_MALLOC_ATTR TESS_ALLOC_SIZE(1);

/* n*size zeroed bytes; NULL with ENOMEM on overflow. */
TESS_API void* tess_calloc(size_t n, size_t size) TESS_MALLOC_ATTR TESS_ALLOC_SIZE(1, 2);

/* Resize keeping the contents (every usable byte of the old block that fits).
 * realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL (as
 * glibc).  On failure returns NULL with ENOMEM and leaves p untouched. */
TESS_API void* tess_realloc(void* p, size_t size) TESS_ALLOC_SIZE(2);

/* realloc(p, n*size) with overflow checked (ENOMEM). */
TESS_API void* tess_reallocarray(void* p, size_t n, size_t size) TESS_ALLOC_SIZE(2, 3);

/* Release a block; NULL is ignored; errno is preserved. */
TESS_API void tess_free(void* p);

/* C23: free with the size (and alignment) the block was requested with.  A
 * size larger than the block's usable size is reported as misuse. */
TESS_API void tess_free_sized(void* p, size_t size);
TESS_API void tess_free_aligned_sized(void* p, size_t alignment, size_t size);

/* ---- aligned allocation ------------------------------------------------ */

/* `alignment` must be a power of two (EINVAL otherwise, NULL returned).
 * Alignments up to 1 GiB are served; larger ones while the address space
 * has room for them (NULL and ENOMEM otherwise). */
TESS_API void* tess_aligned_alloc(size_t alignment, size_t size) TESS_MALLOC_ATTR TESS_ALLOC_SIZE(2);

/* POSIX: alignment a power of two multiple of sizeof(void*), else EINVAL;
 * returns 0 or an error number, and leaves *out untouched on failure. */
TESS_API int tess_posix_memalign(void** out, size_t alignment, size_t size);

/* ---- introspection ----------------------------------------------------- */

/* Bytes usable in the block at p (at least what was asked); 0 for NULL.
 * Constant for the block's whole life. */
TESS_API size_t tess_usable_size(const void* p);

/* ---- statistics -------------------------------------------------------- */

typedef struct tess_stats_s {
  size_t mapped;          /* bytes of address space mapped from the OS       */
  size_t resident_max;    /* high-water mark of `committed`                  */
  size_t committed;       /* mapped bytes not purged (an upper bound on RSS) */
  size_t in_use;          /* bytes in blocks handed out (page granularity
                             for small blocks: bytes of pages in use)        */
  size_t huge_count;      /* live huge blocks (each its own mapping)         */
  size_t huge_bytes;      /* bytes mapped for them                           */
  size_t large_bytes;     /* bytes in live large blocks                      */
  size_t segments;        /* live segments                                   */
  size_t heaps;           /* thread heaps ever created                       */
  size_t purged;          /* bytes returned to the OS by purging, in total   */
  size_t mmap_calls;      /* mmap calls made                                 */
  size_t munmap_calls;    /* munmap calls made                               */
} tess_stats_t;

/* Fill *out with a snapshot of the process-wide figures. */
TESS_API void tess_stats_get(tess_stats_t* out);

/* Print the figures as text (`json` zero) or as one JSON object. */
TESS_API void tess_stats_print(FILE* out, int json);

/* Return free memory to the OS now; returns 1 if anything was released. */
TESS_API int tess_trim(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */
