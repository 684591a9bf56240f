/* prim.h - the OS primitives: every system call tessera makes goes through
 * this interface, implemented once per OS (prim_linux.c).  Nothing here
 * allocates, takes a lock or reads tessera state; each call may be made at
 * any time, including before initialisation, in a forked child, and from a
 * signal handler.  Errors come back as an `int` errno value (0 = success);
 * the memory calls leave errno itself as they found it.
 */
#ifndef TESS_PRIM_H
#define TESS_PRIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

/* Map `size` bytes (a multiple of the OS page) of fresh zeroed read-write
 * memory near `hint` (may be NULL).  *out is set on success. */
int _tess_prim_map(void* hint, size_t size, void** out);

/* Ask for transparent huge pages on [p, p+size), or (`want` false) for
 * none whatever the system's mode.  Advice only. */
void _tess_prim_hugepages(void* p, size_t size, bool want);

/* Unmap [p, p+size); both OS-page aligned. */
int _tess_prim_unmap(void* p, size_t size);

/* Give the pages of [p, p+size) back to the OS, keeping the range mapped:
 * later reads see zeros.  Both OS-page aligned. */
int _tess_prim_purge(void* p, size_t size);

/* Which OS pages of [p, p + size) are resident (p page-aligned): one byte
 * per page in vec, bit 0 set if resident.  0 or an errno. */
int _tess_prim_resident(void* p, size_t size, unsigned char* vec);

/* Resize the mapping at p from old_size to new_size.  With `fixed`, move it
 * to exactly `dest` (a reserved range of new_size bytes); without, only grow
 * or shrink in place. */
int _tess_prim_remap(void* p, size_t old_size, size_t new_size, void* dest, bool fixed);

/* Milliseconds of a monotonic clock (coarse: a few ms resolution). */
uint64_t _tess_prim_clock_ms(void);

/* Milliseconds of CPU time the process has used (a system call). */
uint64_t _tess_prim_cpu_ms(void);

/* 64 bits of randomness from the OS, or from the clock and address space
 * layout when the OS has none to give. */
uint64_t _tess_prim_random(void);

/* Write all of buf to standard error, ignoring failure (no allocation). */
void _tess_prim_write_stderr(const char* buf, size_t len);

/* Append buf to the file at path (created 0644), one write. */
int _tess_prim_append_file(const char* path, const char* buf, size_t len);

/* Value of environment variable `name`, or NULL; no allocation. */
const char* _tess_prim_getenv(const char* name);

/* The process id, and the program name (from /proc/self/comm). */
int _tess_prim_getpid(void);
void _tess_prim_program_name(char* buf, size_t size);

/* Register handlers run in the child after fork, and at thread exit
 * (`thread_done(arg)` with the value given to _tess_prim_thread_set). */
int _tess_prim_atfork(void (*child)(void));
int _tess_prim_thread_key_create(void (*thread_done)(void*));
void _tess_prim_thread_set(void* value);

/* Start a detached thread running fn(NULL) with every signal blocked, so
 * it never runs a handler of the program's.  0 or an errno value. */
int _tess_prim_thread_spawn(void* (*fn)(void*));

/* Name the calling thread (as ps and gdb show it). */
void _tess_prim_thread_name(const char* name);

/* Sleep for ms milliseconds. */
void _tess_prim_sleep_ms(uint64_t ms);

/* True while the process has never had a second thread.  A library thread
 * would change what such a process may do (fork from a signal handler,
 * unshare a user namespace), so tessera starts none in it. */
bool _tess_prim_single_threaded(void);

/* Disable thread cancellation (returning the old state) / restore it: for
 * the statistics functions, which write but must not be cancellation
 * points (glibc guarantees it for malloc_stats). */
int _tess_prim_cancel_off(void);
void _tess_prim_cancel_restore(int old);

/* True if the process runs under a finite address-space limit (RLIMIT_AS),
 * where address space tessera keeps free is address space the program's
 * own mappings cannot have. */
bool _tess_prim_address_space_limited(void);

/* Yield the CPU (lock back-off). */
void _tess_prim_yield(void);

/* Abort the process with SIGABRT, without allocating. */
__attribute__((noreturn)) void _tess_prim_abort(void);

#endif /* TESS_PRIM_H */
