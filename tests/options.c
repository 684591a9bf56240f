/* options.c - the TESSERA_* environment options.
 *
 * Runs opt_child (linked against tessera; its path is argv[1]) under:
 *   no options                 quiet: nothing from tessera on stderr
 *   TESSERA_SHOW_STATS=1       statistics on stderr at exit
 *   TESSERA_STATS_FILE=<path>  one JSON line appended per process at exit,
 *                              {"pid":..., "program":..., "mapped":..., ...};
 *                              several processes at once append whole lines
 *   TESSERA_PURGE_DELAY=abc    (and other malformed values) a one-line
 *                              warning "tessera: ..." naming the option, and
 *                              the program still runs normally
 * In every case the child's stdout and exit status must be the normal ones.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "json_check.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char* child_path;
static char expected_stdout[256];

typedef struct run_s {
  pid_t pid;
  int status;
  char out[4096];
  char err[65536];
} run_t;

static size_t slurp_fd(int fd, char* buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    ssize_t r = n + 1 < cap ? read(fd, buf + n, cap - 1 - n) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  return n;
}

static const char* child_arg; /* optional argument for opt_child */

/* Start opt_child with extra environment entries (NULL-terminated). */
static pid_t start(const char* const* env_add, int* outfd, int* errfd) {
  int o[2], e[2];
  if (pipe(o) || pipe(e)) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(o[1], 1);
    dup2(e[1], 2);
    close(o[0]);
    close(o[1]);
    close(e[0]);
    close(e[1]);
    /* a clean slate: no TESSERA_* from the outside */
    unsetenv("TESSERA_SHOW_STATS");
    unsetenv("TESSERA_STATS_FILE");
    unsetenv("TESSERA_PURGE_DELAY");
    unsetenv("TESSERA_DIRTY_MAX");
    unsetenv("TESSERA_VERBOSE");
    for (const char* const* kv = env_add; kv && *kv; kv++) putenv((char*)*kv);
    execl(child_path, child_path, child_arg, (char*)NULL);
    _exit(127);
  }
  close(o[1]);
  close(e[1]);
  *outfd = o[0];
  *errfd = e[0];
  return pid;
}

static void finish(run_t* r, int outfd, int errfd) {
  /* stdout is tiny; read it first, then stderr (the child writes stderr at
   * exit, after stdout, so this cannot deadlock) */
  slurp_fd(outfd, r->out, sizeof r->out);
  slurp_fd(errfd, r->err, sizeof r->err);
  close(outfd);
  close(errfd);
  while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR) {
  }
}

static void run(run_t* r, const char* const* env_add) {
  int o, e;
  memset(r, 0, sizeof *r);
  r->pid = start(env_add, &o, &e);
  CHECK(r->pid > 0);
  if (r->pid <= 0) return;
  finish(r, o, e);
}

/* The child behaved normally: exit 0 and the usual stdout. */
static void check_normal(const run_t* r, const char* what) {
  CHECK_MSG(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
            "%s: child status 0x%x; stderr: %s", what, r->status, r->err);
  CHECK_MSG(!strcmp(r->out, expected_stdout), "%s: stdout \"%s\", want \"%s\"", what, r->out,
            expected_stdout);
}

static int count_lines_with(const char* text, const char* prefix, const char* needle) {
  int n = 0;
  for (const char* line = text; *line;) {
    const char* nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    if (strncmp(line, prefix, strlen(prefix)) == 0 && len >= strlen(prefix)) {
      if (!needle || memmem(line, len, needle, strlen(needle))) n++;
    }
    if (!nl) break;
    line = nl + 1;
  }
  return n;
}

static int contains_ci(const char* hay, const char* needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (!strncasecmp(hay, needle, n)) return 1;
  return 0;
}

static void test_quiet_by_default(void) {
  run_t r;
  run(&r, NULL);
  check_normal(&r, "no options");
  CHECK_MSG(count_lines_with(r.err, "tessera", NULL) == 0, "tessera printed without being asked: %s",
            r.err);
}

static void test_show_stats(void) {
  run_t r;
  const char* env[] = {"TESSERA_SHOW_STATS=1", NULL};
  run(&r, env);
  check_normal(&r, "TESSERA_SHOW_STATS=1");
  CHECK_MSG(strlen(r.err) > 0, "TESSERA_SHOW_STATS=1 printed nothing on stderr");
  CHECK_MSG(contains_ci(r.err, "mapped"), "statistics on stderr do not mention \"mapped\": %.300s",
            r.err);
  const char* env0[] = {"TESSERA_SHOW_STATS=0", NULL};
  run(&r, env0);
  check_normal(&r, "TESSERA_SHOW_STATS=0");
  CHECK_MSG(!contains_ci(r.err, "mapped"), "TESSERA_SHOW_STATS=0 printed statistics: %.300s", r.err);
}

/* Check the stats file holds exactly the lines of the given pids. */
static void check_stats_file(const char* path, const pid_t* pids, int npids) {
  FILE* f = fopen(path, "r");
  CHECK_MSG(f != NULL, "stats file %s not created", path);
  if (!f) return;
  static char line[65536];
  int seen[64] = {0}, lines = 0;
  while (fgets(line, sizeof line, f)) {
    lines++;
    size_t len = strlen(line);
    CHECK_MSG(len > 0 && line[len - 1] == '\n', "stats line %d not newline-terminated", lines);
    const char* err = json_check_object(line);
    CHECK_MSG(err == NULL, "stats line %d is not one JSON object (%s): %.300s", lines, err, line);
    double pid = -1, mapped = -1;
    char program[512] = "";
    CHECK_MSG(json_get_number(line, "pid", &pid), "stats line %d has no \"pid\": %.300s", lines, line);
    CHECK_MSG(json_get_string(line, "program", program, sizeof program),
              "stats line %d has no \"program\": %.300s", lines, line);
    CHECK_MSG(json_get_number(line, "mapped", &mapped), "stats line %d has no \"mapped\"", lines);
    CHECK_MSG(mapped > 0, "stats line %d: mapped %.0f", lines, mapped);
    CHECK_MSG(strstr(program, "opt_child") != NULL, "stats line %d: program \"%s\"", lines, program);
    int k;
    for (k = 0; k < npids; k++)
      if ((double)pids[k] == pid) break;
    CHECK_MSG(k < npids, "stats line %d: pid %.0f is none of the children", lines, pid);
    if (k < npids) {
      CHECK_MSG(!seen[k], "pid %d has two lines", pids[k]);
      seen[k] = 1;
    }
  }
  fclose(f);
  CHECK_MSG(lines == npids, "stats file has %d lines for %d processes", lines, npids);
}

/* A fresh directory for a statistics file, and the setting that names it. */
typedef struct stats_dir_s {
  char dir[32];
  char path[256];
  char env[300]; /* TESSERA_STATS_FILE=path */
} stats_dir_t;

static void stats_dir_make(stats_dir_t* d) {
  snprintf(d->dir, sizeof d->dir, "/tmp/tessera-options-XXXXXX");
  CHECK(mkdtemp(d->dir) != NULL);
  snprintf(d->path, sizeof d->path, "%s/stats.jsonl", d->dir);
  snprintf(d->env, sizeof d->env, "TESSERA_STATS_FILE=%s", d->path);
}

static void stats_dir_remove(const stats_dir_t* d) {
  unlink(d->path);
  rmdir(d->dir);
}

static void test_stats_file(void) {
  stats_dir_t d;
  stats_dir_make(&d);
  const char* env[] = {d.env, NULL};
  pid_t pids[16];
  int np = 0;
  /* one after another: each appends its line */
  for (int i = 0; i < 3; i++) {
    run_t r;
    run(&r, env);
    check_normal(&r, "TESSERA_STATS_FILE");
    pids[np++] = r.pid;
  }
  check_stats_file(d.path, pids, np);
  /* several at once: whole lines, none lost */
  enum { PAR = 6 };
  static run_t rr[PAR];
  int o[PAR], e[PAR];
  for (int i = 0; i < PAR; i++) {
    memset(&rr[i], 0, sizeof rr[i]);
    rr[i].pid = start(env, &o[i], &e[i]);
    CHECK(rr[i].pid > 0);
  }
  for (int i = 0; i < PAR; i++) {
    if (rr[i].pid <= 0) continue;
    finish(&rr[i], o[i], e[i]);
    check_normal(&rr[i], "TESSERA_STATS_FILE (parallel)");
    pids[np++] = rr[i].pid;
  }
  check_stats_file(d.path, pids, np);
  unlink(d.path);
  /* an unwritable path must not break the program */
  const char* bad[] = {"TESSERA_STATS_FILE=/nonexistent-dir/sub/stats.jsonl", NULL};
  run_t r;
  run(&r, bad);
  check_normal(&r, "TESSERA_STATS_FILE unwritable");
  stats_dir_remove(&d);
}

/* A program that renames itself and writes its process title over its
 * environment still appends its line to the path it was given (tessera
 * wrote it to a file named after the title), and the name, quotes,
 * backslash and tab included, is escaped in the JSON. */
static void test_stats_file_title(void) {
  stats_dir_t d;
  stats_dir_make(&d);
  const char* env[] = {d.env, NULL};
  child_arg = "title";
  run_t r;
  run(&r, env);
  child_arg = NULL;
  check_normal(&r, "TESSERA_STATS_FILE, process title");
  check_stats_file(d.path, &r.pid, 1);
  stats_dir_remove(&d);
}

/* Exit (with statistics to print and write) while threads are allocating. */
static void test_exit_while_threads_allocate(void) {
  stats_dir_t d;
  stats_dir_make(&d);
  const char* env[] = {d.env, "TESSERA_SHOW_STATS=1", NULL};
  child_arg = "threads";
  pid_t pids[10];
  for (int i = 0; i < 10; i++) {
    run_t r;
    run(&r, env);
    check_normal(&r, "exit while threads allocate");
    CHECK_MSG(contains_ci(r.err, "mapped"), "no statistics printed at exit: %.300s", r.err);
    pids[i] = r.pid;
  }
  child_arg = NULL;
  check_stats_file(d.path, pids, 10);
  stats_dir_remove(&d);
}

static void test_malformed(const char* kv, const char* name) {
  const char* env[] = {kv, NULL};
  run_t r;
  run(&r, env);
  check_normal(&r, kv);
  int n = count_lines_with(r.err, "tessera: ", name);
  CHECK_MSG(n == 1, "%s: want one \"tessera: ...%s...\" warning line, got %d; stderr: %s", kv, name,
            n, r.err);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s path/to/opt_child\n", argv[0]);
    return 2;
  }
  child_path = argv[1];
  /* what opt_child prints: the sum of its sizes */
  size_t total = 0;
  for (int i = 0; i < 64; i++) total += i == 0 ? (size_t)6 << 20 : (size_t)(i * 997) % 200000;
  snprintf(expected_stdout, sizeof expected_stdout, "opt_child ok %zu\n", total);

  test_quiet_by_default();
  test_show_stats();
  test_stats_file();
  test_stats_file_title();
  test_exit_while_threads_allocate();
  test_malformed("TESSERA_PURGE_DELAY=abc", "TESSERA_PURGE_DELAY");
  test_malformed("TESSERA_PURGE_DELAY=12abc", "TESSERA_PURGE_DELAY");
  test_malformed("TESSERA_DIRTY_MAX=lots", "TESSERA_DIRTY_MAX");
  test_malformed("TESSERA_SHOW_STATS=maybe", "TESSERA_SHOW_STATS");
  return th_done();
}
