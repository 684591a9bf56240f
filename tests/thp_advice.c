/* thp_advice.c - which mappings tessera asks to keep off transparent huge
 * pages, read back from the kernel's own record (/proc/self/smaps VmFlags).
 *
 * A normal segment's memory is made resident and given back in 4 KiB pages,
 * so every segment is advised MADV_NOHUGEPAGE ("nh") when it is mapped:
 * under the THP mode "always" the kernel would otherwise back it with 2 MiB
 * pages on first touch and khugepaged would collapse purged ranges back into
 * them.  A huge block's own mapping is left to the system's mode, unless
 * TESSERA_HUGEPAGES=1 asks for huge pages ("hg"), which the test checks
 * in a child run with that setting.
 *
 * The flags are checked whatever this machine's THP mode is: the advice is
 * recorded on the mapping either way (a kernel without THP support records
 * neither; the test then says so and checks nothing else).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <stdbool.h>

/* The VmFlags line of the mapping holding p, as " xx xx ... " (with a
 * space before and after every flag), or "" if not found. */
static void vm_flags(const void* p, char* out, size_t size) {
  out[0] = 0;
  FILE* f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return;
  char line[512];
  bool inside = false;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      continue;
    }
    if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, size, "%s", line + 8);
      size_t n = strlen(out);
      if (n > 0 && out[n - 1] == '\n') out[n - 1] = ' ';
      break;
    }
  }
  fclose(f);
}

static bool has_flag(const char* flags, const char* flag) {
  char want[8];
  snprintf(want, sizeof want, " %s ", flag);
  return strstr(flags, want) != NULL;
}

static bool thp_supported(void) { return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0; }

int main(int argc, char** argv) {
  if (!thp_supported()) {
    printf("thp_advice: this kernel has no transparent huge pages; nothing to check\n");
    return 0;
  }
  char flags[512];
  if (argc > 1 && strcmp(argv[1], "--huge-advised") == 0) { /* the child, TESSERA_HUGEPAGES=1 */
    void* big = malloc(16u << 20);
    CHECK(big != NULL);
    vm_flags(big, flags, sizeof flags);
    CHECK_MSG(has_flag(flags, "hg"), "a 16 MiB block with TESSERA_HUGEPAGES=1: flags [%s]", flags);
    free(big);
    return th_done();
  }

  size_t sizes[] = {16, 1000, 20000, 300000, 1500000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void* p = malloc(sizes[i]);
    CHECK(p != NULL);
    memset(p, 1, sizes[i]);
    vm_flags(p, flags, sizeof flags);
    CHECK_MSG(flags[0] != 0, "no mapping found for a %zu-byte block", sizes[i]);
    CHECK_MSG(has_flag(flags, "nh"), "a %zu-byte block's segment: flags [%s]", sizes[i], flags);
    free(p);
  }

  void* big = malloc(16u << 20);
  CHECK(big != NULL);
  vm_flags(big, flags, sizeof flags);
  CHECK_MSG(flags[0] != 0, "no mapping found for a 16 MiB block");
  CHECK_MSG(!has_flag(flags, "nh") && !has_flag(flags, "hg"), "a 16 MiB block by default: flags [%s]", flags);
  free(big);

  char cmd[4200];
  snprintf(cmd, sizeof cmd, "TESSERA_HUGEPAGES=1 %s --huge-advised", argv[0]);
  int st = system(cmd);
  CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the TESSERA_HUGEPAGES=1 child: status %d", st);
  return th_done();
}
