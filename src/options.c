/* options.c - the runtime options: one table, read once from TESSERA_*
 * environment variables at start-up and fixed from then on.  A malformed
 * value is reported and the default kept. */
#include "internal.h"

tess_options_t _tess_options = {
  .purge_delay_ms = 50,
  .dirty_max_mib = 2,
  .show_stats = 0,
  .stats_file = NULL,
  .verbose = 0,
  .background = 1,
  .hugepages = 0,
};

typedef struct tess_option_desc_s {
  const char* name;
  long* value; /* NULL for the string option */
  long min, max;
  const char* help;
} tess_option_desc_t;

static const tess_option_desc_t options[] = {
  {"TESSERA_PURGE_DELAY", &_tess_options.purge_delay_ms, 0, 3600000,
   "milliseconds free memory is kept before it is returned to the OS"},
  {"TESSERA_DIRTY_MAX", &_tess_options.dirty_max_mib, 0, 1 << 20,
   "MiB of free memory kept unreturned at most (plus 1/16 of the memory in use)"},
  {"TESSERA_SHOW_STATS", &_tess_options.show_stats, 0, 1, "1: print statistics to stderr at exit"},
  {"TESSERA_VERBOSE", &_tess_options.verbose, 0, 1, "1: report option values at start-up"},
  {"TESSERA_HUGEPAGES", &_tess_options.hugepages, 0, 1,
   "1: ask for transparent huge pages for blocks of 4 MiB and more"},
  {"TESSERA_BACKGROUND", &_tess_options.background, 0, 1,
   "0: no background thread; free memory is then returned only during allocator calls"},
  {"TESSERA_STATS_FILE", NULL, 0, 0, "path: append one JSON line of statistics at exit"},
};

static bool parse_long(const char* s, long* out) {
  if (*s == 0) return false;
  long v = 0;
  for (; *s != 0; s++) {
    if (*s < '0' || *s > '9') return false;
    if (v > 100000000000L) return false; /* far past every maximum */
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return true;
}

void _tess_options_init(void) {
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
    const tess_option_desc_t* o = &options[i];
    const char* s = _tess_prim_getenv(o->name);
    if (s == NULL) continue;
    if (o->value == NULL) {
      /* Copied: a program that writes its process title over its
       * environment (nginx, PostgreSQL, Chromium) would change the path. */
      static char stats_file[4096];
      size_t n = strlen(s);
      if (n >= sizeof stats_file) {
        _tess_warning("ignoring %s: a path of %zu bytes (at most %zu)", o->name, n, sizeof stats_file - 1);
      } else if (n != 0) {
        memcpy(stats_file, s, n + 1);
        _tess_options.stats_file = stats_file;
      }
      continue;
    }
    long v;
    if (!parse_long(s, &v) || v < o->min || v > o->max) {
      _tess_warning("ignoring %s=%s: expected a whole number from %ld to %ld (%s); using %ld", o->name, s,
                    o->min, o->max, o->help, *o->value);
      continue;
    }
    *o->value = v;
  }
  if (_tess_options.verbose) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
      if (options[i].value) _tess_warning("option %s = %ld", options[i].name, *options[i].value);
    }
  }
}
