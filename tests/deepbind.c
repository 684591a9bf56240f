/* deepbind.c - a library opened with RTLD_DEEPBIND uses tessera's malloc.
 *
 * Run under LD_PRELOAD (the program is not linked against tessera), as PHP
 * runs: PHP 8.2 opens its extensions with RTLD_DEEPBIND, whose lookup finds
 * libc's malloc and free before the preloaded ones, and the first block an
 * extension freed that it had not allocated crashed in glibc's free.
 * tessera's dlopen drops the flag (src/deepbind.c).  Checked: the library
 * binds the same malloc and free as the program; blocks cross both ways;
 * the library is found through the program's own DT_RUNPATH (dlopen still
 * sees its real caller); the other flags still act (RTLD_NOLOAD), and
 * dlopen's errors still reach dlerror.  Run alone, it checks glibc's
 * dlopen the same way. */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#define MOD "libtess_deepbind_mod.so"

int main(int argc, char** argv) {
  bool expect_tessera = argc > 1 && strcmp(argv[1], "--expect-tessera") == 0;
  Dl_info info;
  CHECK(dladdr((void*)&malloc, &info) != 0);
  if (expect_tessera) CHECK_MSG(info.dli_fname && strstr(info.dli_fname, "libtessera"), "malloc is in %s", info.dli_fname);

  CHECK(dlopen(MOD, RTLD_NOW | RTLD_NOLOAD) == NULL); /* not loaded yet */
  void* h = dlopen(MOD, RTLD_NOW | RTLD_DEEPBIND); /* by name: found through this program's DT_RUNPATH */
  CHECK_MSG(h != NULL, "dlopen: %s", dlerror());
  if (h == NULL) return th_done();
  CHECK(dlopen(MOD, RTLD_NOW | RTLD_NOLOAD | RTLD_DEEPBIND) == h);
  dlclose(h);
  CHECK(dlopen("libtess_no_such_library.so", RTLD_NOW | RTLD_DEEPBIND) == NULL);
  const char* err = dlerror();
  CHECK_MSG(err && strstr(err, "libtess_no_such_library.so"), "dlerror: %s", err ? err : "(none)");
  CHECK(dlopen(NULL, RTLD_NOW) != NULL);

  void* (*mod_malloc)(size_t) = (void* (*)(size_t))dlsym(h, "mod_malloc");
  void (*mod_free)(void*) = (void (*)(void*))dlsym(h, "mod_free");
  char* (*mod_strdup)(const char*) = (char* (*)(const char*))dlsym(h, "mod_strdup");
  void* (*mod_realloc)(void*, size_t) = (void* (*)(void*, size_t))dlsym(h, "mod_realloc");
  void* (*mod_malloc_addr)(void) = (void* (*)(void))dlsym(h, "mod_malloc_addr");
  void* (*mod_free_addr)(void) = (void* (*)(void))dlsym(h, "mod_free_addr");
  CHECK(mod_malloc && mod_free && mod_strdup && mod_realloc && mod_malloc_addr && mod_free_addr);
  if (!(mod_malloc && mod_free && mod_strdup && mod_realloc && mod_malloc_addr && mod_free_addr)) return th_done();
  CHECK_MSG(mod_malloc_addr() == (void*)&malloc, "the library's malloc %p, the program's %p", mod_malloc_addr(),
            (void*)&malloc);
  CHECK_MSG(mod_free_addr() == (void*)&free, "the library's free %p, the program's %p", mod_free_addr(), (void*)&free);

  /* Blocks crossing between the program and the library, in a child: with
   * two allocators it dies in the first foreign free. */
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
      size_t n = 1 + (size_t)i * 131 % 70000;
      char* p = malloc(n);
      memset(p, 'p', n);
      p = mod_realloc(p, n + 100);
      if (p == NULL || p[n - 1] != 'p') bad++;
      mod_free(p);
      char* q = mod_malloc(n);
      memset(q, 'q', n);
      q = realloc(q, n * 2);
      if (q == NULL || q[n - 1] != 'q') bad++;
      free(q);
      char* s = mod_strdup("deepbind");
      if (s == NULL || strcmp(s, "deepbind") != 0) bad++;
      free(s);
    }
    _exit(bad == 0 ? 0 : 1);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "blocks crossing the library: status %#x", status);
  dlclose(h);
  return th_done();
}
