/* opt_child.c - a small program linked against tessera, run by options.c
 * under various TESSERA_* environment settings.  It allocates a little of
 * every size kind, prints one line on stdout and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  void* volatile keep[64];
  size_t total = 0;
  for (int i = 0; i < 64; i++) {
    size_t n = i == 0 ? (size_t)6 << 20 : (size_t)(i * 997) % 200000;
    keep[i] = malloc(n);
    if (!keep[i]) return 3;
    memset(keep[i], i, n);
    total += n;
  }
  for (int i = 0; i < 64; i += 2) free(keep[i]);
  printf("opt_child ok %zu\n", total);
  return 0; /* the odd blocks stay live until exit */
}
