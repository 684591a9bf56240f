/* deepbind.c - dlopen without RTLD_DEEPBIND (in the shared library only).
 *
 * A library opened with RTLD_DEEPBIND looks its symbols up in itself and
 * its own dependencies before the global scope, so its malloc and free are
 * libc's, not those of the tessera the program preloaded: the first block
 * it frees that it did not allocate itself (the program's, or one from
 * libc's strdup, which calls tessera) reaches glibc's free, which crashes.
 * PHP 8.2 opens every extension that way: `php -r 'echo 1;'` died of
 * SIGSEGV under tessera, as it does under jemalloc, tcmalloc and mimalloc
 * preloaded (PHP itself stopped asking for the flag where dlmopen exists,
 * for this reason).  tessera's dlopen clears the flag and jumps to the next
 * dlopen, libc's.  A jump, not a call: libc's dlopen finds its caller by
 * its return address, for the caller's namespace and for the DT_RPATH and
 * DT_RUNPATH ($ORIGIN) it searches, and a call would make that tessera.
 *
 * A static program has no preloaded allocator for a library to miss, and
 * libc.a has its own dlopen: the static library leaves this file out.
 */
#include "internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <dlfcn.h>

TESS_HIDDEN void* _tess_dlopen_next; /* libc's dlopen, found on first use */

/* Called from dlopen below with the arguments saved; returns libc's dlopen,
 * or NULL if there is none (dlopen then fails as with no library). */
TESS_HIDDEN void* _tess_dlopen_resolve(void) {
  void* next = dlsym(RTLD_NEXT, "dlopen");
  __atomic_store_n(&_tess_dlopen_next, next, __ATOMIC_RELEASE);
  return next;
}

#define TESS_STR2(x) #x
#define TESS_STR(x) TESS_STR2(x)

__attribute__((naked, visibility("default"))) void* dlopen(const char* file, int mode) {
  __asm__(
#ifdef __CET__
      "endbr64\n\t"
#endif
      "andl $~" TESS_STR(RTLD_DEEPBIND) ", %esi\n\t"
      "movq _tess_dlopen_next(%rip), %rax\n\t"
      "testq %rax, %rax\n\t"
      "jz 1f\n\t"
      "jmp *%rax\n"
      "1:\n\t" /* first use: look libc's up, keeping the arguments */
      "pushq %rdi\n\t"
      "pushq %rsi\n\t"
      "subq $8, %rsp\n\t" /* the call needs a 16-byte aligned stack */
      "call _tess_dlopen_resolve\n\t"
      "addq $8, %rsp\n\t"
      "popq %rsi\n\t"
      "popq %rdi\n\t"
      "testq %rax, %rax\n\t"
      "jz 2f\n\t"
      "jmp *%rax\n"
      "2:\n\t"
      "ret\n\t");
}
#endif
