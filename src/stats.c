/* stats.c - the figures: tess_stats_*, and glibc's mallinfo, mallinfo2,
 * malloc_stats and malloc_info over the same numbers.  Formatting goes
 * into stack buffers and out with write(), so printing statistics never
 * allocates (it may run at exit, or from a misuse report). */
#include "internal.h"

#include <tessera.h>
#include <unistd.h>

void tess_stats_get(tess_stats_t* out) {
  memset(out, 0, sizeof *out);
  out->mapped = atomic_load(&_tess_os.mapped);
  out->committed = atomic_load(&_tess_os.committed);
  out->resident_max = atomic_load(&_tess_os.committed_peak);
  out->huge_count = atomic_load(&_tess_os.huge_count);
  out->huge_bytes = atomic_load(&_tess_os.huge_bytes);
  out->large_bytes = atomic_load(&_tess_os.large_bytes);
  out->in_use = atomic_load(&_tess_os.pages_in_use_bytes) + out->huge_bytes;
  out->segments = atomic_load(&_tess_os.segments);
  out->heaps = _tess_heap_count();
  out->purged = atomic_load(&_tess_os.purged);
  out->mmap_calls = atomic_load(&_tess_os.mmap_calls);
  out->munmap_calls = atomic_load(&_tess_os.munmap_calls);
}

static const struct {
  const char* name;
  size_t offset;
} fields[] = {
#define TESS_FIELD(f) {#f, offsetof(tess_stats_t, f)}
  TESS_FIELD(mapped),     TESS_FIELD(committed),   TESS_FIELD(resident_max), TESS_FIELD(in_use),
  TESS_FIELD(huge_count), TESS_FIELD(huge_bytes),  TESS_FIELD(large_bytes),  TESS_FIELD(segments),
  TESS_FIELD(heaps),      TESS_FIELD(purged),      TESS_FIELD(mmap_calls),   TESS_FIELD(munmap_calls),
#undef TESS_FIELD
};

static size_t field(const tess_stats_t* s, size_t i) { return *(const size_t*)((const char*)s + fields[i].offset); }

/* s as the inside of a JSON string (out holds 6 bytes for each of s's):
 * a program may name itself anything (prctl PR_SET_NAME, its file name). */
static void json_quote(char* out, const char* s) {
  static const char hex[] = "0123456789abcdef";
  for (; *s != 0; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      *out++ = '\\';
      *out++ = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      *out++ = '\\';
      *out++ = 'u';
      *out++ = '0';
      *out++ = '0';
      *out++ = hex[c >> 4];
      *out++ = hex[c & 15];
    } else {
      *out++ = (char)c;
    }
  }
  *out = 0;
}

/* The statistics as text (one "name value" line each) or one JSON line. */
static size_t stats_format(char* buf, size_t size, bool json) {
  tess_stats_t s;
  tess_stats_get(&s);
  size_t at = 0;
  if (json) {
    char prog[64], quoted[6 * sizeof prog];
    _tess_prim_program_name(prog, sizeof prog);
    json_quote(quoted, prog);
    at += (size_t)_tess_format(buf + at, size - at, "{\"pid\":%d,\"program\":\"%s\"", _tess_prim_getpid(), quoted);
  } else {
    at += (size_t)_tess_format(buf + at, size - at, "tessera %s statistics (bytes):\n", TESSERA_VERSION);
  }
  for (size_t i = 0; i < sizeof fields / sizeof fields[0] && at < size; i++) {
    at += (size_t)_tess_format(buf + at, size - at, json ? ",\"%s\":%zu" : "  %-14s %zu\n", fields[i].name,
                               field(&s, i));
  }
  if (json && at < size) at += (size_t)_tess_format(buf + at, size - at, "}\n");
  return at < size ? at : size - 1;
}

void _tess_stats_print_fd(int fd, bool json) {
  char buf[1024];
  size_t n = stats_format(buf, sizeof buf, json);
  if (fd == 2) _tess_prim_write_stderr(buf, n);
  else if (write(fd, buf, n) < 0) return;
}

void _tess_stats_append_json(const char* path) {
  char buf[1024];
  size_t n = stats_format(buf, sizeof buf, true);
  if (_tess_prim_append_file(path, buf, n) != 0) _tess_warning("cannot append statistics to %s", path);
}

void tess_stats_print(FILE* out, int json) {
  char buf[1024];
  size_t n = stats_format(buf, sizeof buf, json != 0);
  fwrite(buf, 1, n, out);
  fflush(out);
}

/* Return every free page of this thread's heap, clean the abandoned heaps,
 * and purge all free memory now.  1 if anything was given back. */
int tess_trim(void) {
  size_t before = atomic_load(&_tess_os.purged) + atomic_load(&_tess_os.munmap_calls);
  tess_heap_t* heap = _tess_heap_get();
  if (heap != &_tess_heap_empty) {
    _tess_heap_flush_foreign(heap);
    _tess_heap_flush_remote(heap);
    _tess_heap_release_pages(heap, true);
  }
  _tess_heap_scavenge_all(false);
  _tess_arena_purge(true);
  _tess_huge_cache_purge(true);
  return atomic_load(&_tess_os.purged) + atomic_load(&_tess_os.munmap_calls) != before;
}
