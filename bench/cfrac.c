/* cfrac.c - bignum factoring: many small, short-lived blocks, one thread.
 *
 * Models the behaviour of "cfrac" from the Zorn/Grunwald allocator benchmark
 * set (a continued-fraction factoring program): every arithmetic operation on
 * a multi-precision integer returns a freshly allocated number of a few words,
 * and almost all of them die within a few operations.  Here the numbers are
 * factored with Pollard's rho (Floyd cycle finding, gcds batched); the
 * arithmetic is a small immutable bignum library whose every result, and
 * every scratch array of the long division, is its own malloc block of
 * 8-40 bytes.
 *
 * Checks: each factor found divides its number exactly and is one of the two
 * primes the number was built from.
 *
 * Options: --numbers N (how many semiprimes to factor), --bits B (size of the
 * smaller prime; work grows as 2^(B/2) per number).
 */
#include "bench.h"

typedef struct { uint32_t n; uint32_t d[]; } bn_t;   /* n limbs, no leading zero limb */

static uint64_t n_allocs;

static bn_t* bn_new(uint32_t n) {
  bn_t* a = bench_xmalloc(sizeof(bn_t) + n * sizeof(uint32_t));
  a->n = n;
  n_allocs++;
  return a;
}
static bn_t* bn_norm(bn_t* a) {
  while (a->n > 0 && a->d[a->n - 1] == 0) a->n--;
  return a;
}
static bn_t* bn_copy(const bn_t* a) {
  bn_t* r = bn_new(a->n);
  memcpy(r->d, a->d, a->n * sizeof(uint32_t));
  return r;
}
static bn_t* bn_u64(uint64_t v) {
  bn_t* a = bn_new(2);
  a->d[0] = (uint32_t)v; a->d[1] = (uint32_t)(v >> 32);
  return bn_norm(a);
}
static bn_t* bn_u128(unsigned __int128 v) {
  bn_t* a = bn_new(4);
  for (int i = 0; i < 4; i++) a->d[i] = (uint32_t)(v >> (32 * i));
  return bn_norm(a);
}
static int bn_cmp(const bn_t* a, const bn_t* b) {
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  for (uint32_t i = a->n; i-- > 0;)
    if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
  return 0;
}
static bn_t* bn_add(const bn_t* a, const bn_t* b) {
  if (a->n < b->n) { const bn_t* t = a; a = b; b = t; }
  bn_t* r = bn_new(a->n + 1);
  uint64_t c = 0;
  for (uint32_t i = 0; i < a->n; i++) {
    c += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
    r->d[i] = (uint32_t)c; c >>= 32;
  }
  r->d[a->n] = (uint32_t)c;
  return bn_norm(r);
}
/* |a - b| */
static bn_t* bn_absdiff(const bn_t* a, const bn_t* b) {
  if (bn_cmp(a, b) < 0) { const bn_t* t = a; a = b; b = t; }
  bn_t* r = bn_new(a->n);
  int64_t br = 0;
  for (uint32_t i = 0; i < a->n; i++) {
    int64_t t = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - br;
    br = t < 0; r->d[i] = (uint32_t)t;
  }
  return bn_norm(r);
}
static bn_t* bn_mul(const bn_t* a, const bn_t* b) {
  bn_t* r = bn_new(a->n + b->n);
  memset(r->d, 0, r->n * sizeof(uint32_t));
  for (uint32_t i = 0; i < a->n; i++) {
    uint64_t c = 0;
    for (uint32_t j = 0; j < b->n; j++) {
      c += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
      r->d[i + j] = (uint32_t)c; c >>= 32;
    }
    r->d[i + b->n] = (uint32_t)c;
  }
  return bn_norm(r);
}
/* u mod v (v != 0), Knuth's algorithm D; the normalised copies of u and v
 * are scratch blocks of their own, as in a naive bignum package. */
static bn_t* bn_mod(const bn_t* u, const bn_t* v) {
  if (bn_cmp(u, v) < 0) return bn_copy(u);
  uint32_t n = v->n, m = u->n - v->n;
  if (n == 1) {
    uint64_t rem = 0;
    for (uint32_t i = u->n; i-- > 0;) rem = ((rem << 32) | u->d[i]) % v->d[0];
    return bn_u64(rem);
  }
  int s = __builtin_clz(v->d[n - 1]);
  uint32_t* vn = bench_xmalloc(n * 4);
  uint32_t* un = bench_xmalloc((u->n + 1) * 4);
  n_allocs += 2;
  for (uint32_t i = n - 1; i > 0; i--)
    vn[i] = (v->d[i] << s) | (s ? (uint32_t)((uint64_t)v->d[i - 1] >> (32 - s)) : 0);
  vn[0] = v->d[0] << s;
  un[u->n] = s ? (uint32_t)((uint64_t)u->d[u->n - 1] >> (32 - s)) : 0;
  for (uint32_t i = u->n - 1; i > 0; i--)
    un[i] = (u->d[i] << s) | (s ? (uint32_t)((uint64_t)u->d[i - 1] >> (32 - s)) : 0);
  un[0] = u->d[0] << s;
  for (int64_t j = m; j >= 0; j--) {
    uint64_t num = ((uint64_t)un[j + n] << 32) | un[j + n - 1];
    uint64_t qhat = num / vn[n - 1], rhat = num % vn[n - 1];
    while (qhat >> 32 || qhat * vn[n - 2] > ((rhat << 32) | un[j + n - 2])) {
      qhat--; rhat += vn[n - 1];
      if (rhat >> 32) break;
    }
    int64_t k = 0, t;
    for (uint32_t i = 0; i < n; i++) {
      uint64_t p = qhat * vn[i];
      t = (int64_t)un[i + j] - k - (int64_t)(p & 0xFFFFFFFFu);
      un[i + j] = (uint32_t)t;
      k = (int64_t)(p >> 32) - (t >> 32);
    }
    t = (int64_t)un[j + n] - k;
    un[j + n] = (uint32_t)t;
    if (t < 0) {                       /* qhat was one too big: add v back */
      uint64_t c = 0;
      for (uint32_t i = 0; i < n; i++) {
        c += (uint64_t)un[i + j] + vn[i];
        un[i + j] = (uint32_t)c; c >>= 32;
      }
      un[j + n] += (uint32_t)c;
    }
  }
  bn_t* r = bn_new(n);
  for (uint32_t i = 0; i < n; i++)
    r->d[i] = (un[i] >> s) | (s ? (uint32_t)((uint64_t)un[i + 1] << (32 - s)) : 0);
  free(vn); free(un);
  return bn_norm(r);
}
static bn_t* bn_gcd(const bn_t* a0, const bn_t* b0) {
  bn_t* a = bn_copy(a0);
  bn_t* b = bn_copy(b0);
  while (b->n != 0) {
    bn_t* r = bn_mod(a, b);
    free(a); a = b; b = r;
  }
  free(b);
  return a;
}
/* x*x + c mod n */
static bn_t* rho_step(const bn_t* x, const bn_t* c, const bn_t* n) {
  bn_t* sq = bn_mul(x, x);
  bn_t* s = bn_add(sq, c);
  bn_t* r = bn_mod(s, n);
  free(sq); free(s);
  return r;
}
static int is_one(const bn_t* a) { return a->n == 1 && a->d[0] == 1; }

/* A nontrivial factor of n, by Pollard's rho. */
static bn_t* rho(const bn_t* n) {
  for (uint64_t cv = 1;; cv++) {
    bn_t* c = bn_u64(cv);
    bn_t *x = bn_u64(2), *y = bn_u64(2), *q = bn_u64(1), *d = NULL;
    int batch = 32;
    for (long it = 1; d == NULL || is_one(d); it++) {
      bn_t* t = rho_step(x, c, n); free(x); x = t;
      t = rho_step(y, c, n); free(y); y = t;
      t = rho_step(y, c, n); free(y); y = t;
      bn_t* diff = bn_absdiff(x, y);
      bn_t* pr = bn_mul(q, diff);
      free(q); q = bn_mod(pr, n);
      free(pr); free(diff);
      if (it % batch == 0 || q->n == 0) {
        free(d);
        d = q->n == 0 ? NULL : bn_gcd(q, n);
        if (q->n == 0) break;           /* the batch hit a multiple of n: retry with another c */
      }
    }
    free(x); free(y); free(q); free(c);
    if (d != NULL && bn_cmp(d, n) != 0) return d;
    free(d);
  }
}

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m) { return (uint64_t)((unsigned __int128)a * b % m); }
static int is_prime(uint64_t n) {
  if (n < 4) return n >= 2;
  if (n % 2 == 0) return 0;
  uint64_t d = n - 1; int r = 0;
  while (d % 2 == 0) { d /= 2; r++; }
  static const uint64_t bases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  for (int i = 0; i < 12; i++) {
    uint64_t a = bases[i] % n, x = 1, p = a, e = d;
    if (a == 0) continue;
    while (e) { if (e & 1) x = mulmod(x, p, n); p = mulmod(p, p, n); e >>= 1; }
    if (x == 1 || x == n - 1) continue;
    int comp = 1;
    for (int k = 1; k < r && comp; k++) { x = mulmod(x, x, n); if (x == n - 1) comp = 0; }
    if (comp) return 0;
  }
  return 1;
}
static uint64_t random_prime(bench_rng_t* r, int bits) {
  for (;;) {
    uint64_t v = (bench_rand(r) >> (64 - bits)) | (1ull << (bits - 1)) | 1;
    if (is_prime(v)) return v;
  }
}

int main(int argc, char** argv) {
  int quick = bench_flag(argc, argv, "--quick");
  long numbers = bench_opt(argc, argv, "--numbers", quick ? 10 : 100);
  int bits = (int)bench_opt(argc, argv, "--bits", 28);
  bench_rng_t rng;
  bench_seed(&rng, 42);
  double t0 = bench_now();
  for (long k = 0; k < numbers; k++) {
    uint64_t p = random_prime(&rng, bits), q = random_prime(&rng, bits + 16);
    bn_t* n = bn_u128((unsigned __int128)p * q);
    bn_t* d = rho(n);
    bn_t* rem = bn_mod(n, d);
    bn_t *bp = bn_u64(p), *bq = bn_u64(q);
    if (rem->n != 0 || (bn_cmp(d, bp) != 0 && bn_cmp(d, bq) != 0))
      bench_fail("factor of %llu*%llu is wrong", (unsigned long long)p, (unsigned long long)q);
    free(rem); free(bp); free(bq); free(d); free(n);
  }
  double t = bench_now() - t0;
  char extra[64];
  snprintf(extra, sizeof extra, "numbers=%ld", numbers);
  bench_report("cfrac", t, (double)n_allocs, extra);
  return 0;
}
