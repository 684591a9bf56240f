/* espresso.c - two-level logic minimisation: small blocks, mixed lifetimes.
 *
 * Models the behaviour of "espresso" from the Zorn/Grunwald allocator
 * benchmark set (the Berkeley PLA minimiser): cubes are short strings over
 * {0,1,-}, created, compared and merged by the thousand; most are temporary,
 * some (the prime implicants and the final covers) live long.  Here each
 * function is minimised with Quine-McCluskey: every level's cubes and hash
 * nodes are freed when the next level is built, the primes live until the
 * cover is chosen, and every function's cover is kept to the end of the run.
 * Growing cube lists use realloc, as espresso's set families do.
 *
 * Checks: each cover is exactly the function (all 2^V inputs evaluated).
 *
 * Options: --functions F, --vars V.
 */
#include "bench.h"

typedef struct node { struct node* next; char* cube; int used; } node_t;
typedef struct { node_t** b; size_t nb, n; } set_t;
typedef struct { char** c; size_t n, cap; } list_t;

static int V;
static uint64_t n_allocs;

static void* xmalloc(size_t n) { n_allocs++; return bench_xmalloc(n); }

static void list_push(list_t* l, char* c) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->c = realloc(l->c, l->cap * sizeof(char*));
    if (l->c == NULL) bench_fail("realloc");
    n_allocs++;
  }
  l->c[l->n++] = c;
}
static uint64_t hash(const char* c) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < V; i++) h = (h ^ (unsigned char)c[i]) * 1099511628211ull;
  return h;
}
static void set_init(set_t* s, size_t nb) {
  s->nb = nb; s->n = 0;
  s->b = calloc(nb, sizeof(node_t*));
  if (s->b == NULL) bench_fail("calloc");
  n_allocs++;
}
static node_t* set_find(set_t* s, const char* c) {
  for (node_t* e = s->b[hash(c) % s->nb]; e; e = e->next)
    if (memcmp(e->cube, c, (size_t)V) == 0) return e;
  return NULL;
}
/* Adds c (taking it) unless present; returns 1 if added. */
static int set_add(set_t* s, char* c) {
  if (set_find(s, c)) return 0;
  node_t* e = xmalloc(sizeof *e);
  size_t h = hash(c) % s->nb;
  e->cube = c; e->used = 0; e->next = s->b[h]; s->b[h] = e;
  s->n++;
  return 1;
}
static char* cube_dup(const char* c) {
  char* d = xmalloc((size_t)V + 1);
  memcpy(d, c, (size_t)V + 1);
  return d;
}
static int covers(const char* c, uint32_t m) {
  for (int i = 0; i < V; i++) {
    int bit = (m >> i) & 1;
    if (c[i] != '-' && c[i] - '0' != bit) return 0;
  }
  return 1;
}
static int dashes(const char* c) {
  int d = 0;
  for (int i = 0; i < V; i++) d += c[i] == '-';
  return d;
}

/* Minimise the function whose ON-set is `on` (one byte per input). */
static list_t minimise(const unsigned char* on) {
  uint32_t nm = 1u << V;
  set_t cur;
  set_init(&cur, 1024);
  for (uint32_t m = 0; m < nm; m++) {
    if (!on[m]) continue;
    char* c = xmalloc((size_t)V + 1);
    for (int i = 0; i < V; i++) c[i] = (char)('0' + ((m >> i) & 1));
    c[V] = 0;
    set_add(&cur, c);
  }
  list_t primes = {0};
  while (cur.n > 0) {
    set_t next;
    set_init(&next, cur.n + 1);
    char* probe = xmalloc((size_t)V + 1);     /* scratch for the neighbour */
    for (size_t b = 0; b < cur.nb; b++)
      for (node_t* e = cur.b[b]; e; e = e->next)
        for (int i = 0; i < V; i++) {
          if (e->cube[i] == '-') continue;
          memcpy(probe, e->cube, (size_t)V + 1);
          probe[i] = e->cube[i] == '0' ? '1' : '0';
          node_t* o = set_find(&cur, probe);
          if (!o) continue;
          e->used = o->used = 1;
          probe[i] = '-';
          char* merged = cube_dup(probe);
          if (!set_add(&next, merged)) free(merged);
        }
    free(probe);
    for (size_t b = 0; b < cur.nb; b++)
      for (node_t *e = cur.b[b], *nx; e; e = nx) {
        nx = e->next;
        if (e->used) free(e->cube); else list_push(&primes, e->cube);
        free(e);
      }
    free(cur.b);
    cur = next;
  }
  free(cur.b);
  /* Cover: for each uncovered ON input, take the largest prime covering it. */
  unsigned char* done = calloc(nm, 1);
  n_allocs++;
  list_t cover = {0};
  for (uint32_t m = 0; m < nm; m++) {
    if (!on[m] || done[m]) continue;
    char* best = NULL;
    for (size_t k = 0; k < primes.n; k++)
      if (covers(primes.c[k], m) && (!best || dashes(primes.c[k]) > dashes(best))) best = primes.c[k];
    if (!best) bench_fail("no prime covers input %u", m);
    list_push(&cover, cube_dup(best));
    for (uint32_t x = 0; x < nm; x++)
      if (covers(best, x)) done[x] = 1;
  }
  free(done);
  for (size_t k = 0; k < primes.n; k++) free(primes.c[k]);
  free(primes.c);
  return cover;
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long nf = bench_opt(argc, argv, "--functions", quick ? 2 : 16);
  V = (int)bench_opt(argc, argv, "--vars", 11);
  uint32_t nm = 1u << V;
  bench_rng_t rng;
  bench_seed(&rng, 7);
  list_t* covers_kept = bench_xmalloc(sizeof(list_t) * (size_t)nf);
  unsigned char** ons = bench_xmalloc(sizeof(char*) * (size_t)nf);
  double t0 = bench_now();
  for (long f = 0; f < nf; f++) {
    /* A function with structure: a union of random cubes of 3-7 literals. */
    unsigned char* on = calloc(nm, 1);
    if (!on) bench_fail("calloc");
    for (int k = 0; k < 3 * V; k++) {
      uint32_t care = 0, val = (uint32_t)bench_rand(&rng);
      int lits = (int)bench_range(&rng, 3, 7);
      while (__builtin_popcount(care) < lits) care |= 1u << bench_range(&rng, 0, (size_t)V - 1);
      for (uint32_t m = 0; m < nm; m++)
        if (((m ^ val) & care) == 0) on[m] = 1;
    }
    ons[f] = on;
    covers_kept[f] = minimise(on);
  }
  double t = bench_now() - t0;
  size_t cubes = 0;
  for (long f = 0; f < nf; f++) {
    for (uint32_t m = 0; m < nm; m++) {
      int in = 0;
      for (size_t k = 0; k < covers_kept[f].n && !in; k++) in = covers(covers_kept[f].c[k], m);
      if (in != ons[f][m]) bench_fail("function %ld: cover is wrong at input %u", f, m);
    }
    cubes += covers_kept[f].n;
    for (size_t k = 0; k < covers_kept[f].n; k++) free(covers_kept[f].c[k]);
    free(covers_kept[f].c);
    free(ons[f]);
  }
  free(covers_kept); free(ons);
  char extra[64];
  snprintf(extra, sizeof extra, "cover_cubes=%zu", cubes);
  bench_report("espresso", t, (double)n_allocs, extra);
  return 0;
}
