/* deepbind_mod.c - the library tests/deepbind.c opens with RTLD_DEEPBIND:
 * it allocates and frees with the malloc and free its own lookup finds. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

void* mod_malloc(size_t n) { return malloc(n); }
void mod_free(void* p) { free(p); }
char* mod_strdup(const char* s) { return strdup(s); }
void* mod_realloc(void* p, size_t n) { return realloc(p, n); }
/* The malloc and free this library is bound to. */
void* mod_malloc_addr(void) { return (void*)&malloc; }
void* mod_free_addr(void) { return (void*)&free; }
