// cxx_new_delete.cpp - every form of operator new / delete ends in tessera.
//
// Small objects: tess_usable_size(p) >= the size (tessera knows the block).
// Big objects (8 MiB, above the 2 MiB large limit, so each is a huge block
// with its own mapping): tess_stats_get's huge_count rises by one at new and
// falls back at delete, which proves both sides went through tessera.
// Impossible sizes: operator new throws std::bad_alloc (after calling the
// new-handler), the nothrow forms return nullptr, also when the new-handler
// throws.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "harness.h"
#include "tessera.h"

namespace {

constexpr std::size_t kHuge = std::size_t(8) << 20;

struct alignas(256) Aligned256 {
  unsigned char bytes[256];
};
struct alignas(4096) Aligned4096 {
  unsigned char bytes[100];
};
struct alignas(64) Aligned64 {
  int x;
};

std::size_t huge_count() {
  tess_stats_t s;
  tess_stats_get(&s);
  return s.huge_count;
}

bool aligned_to(const void* p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }

// The block at p is tessera's and at least n bytes.
void small_ok(const char* what, const void* p, std::size_t n, std::size_t align = 16) {
  CHECK_MSG(p != nullptr, "%s returned null", what);
  if (!p) return;
  std::size_t u = tess_usable_size(p);
  CHECK_MSG(u >= n, "%s: tess_usable_size %zu < %zu (not tessera's block?)", what, u, n);
  CHECK_MSG(aligned_to(p, align), "%s: %p not aligned to %zu", what, p, align);
}

// Allocate a huge block with `alloc`, release it with `release`, and check
// huge_count goes up by one and back.
template <class Alloc, class Release>
void huge_round_trip(const char* what, Alloc alloc, Release release, std::size_t align = 16) {
  std::size_t h0 = huge_count();
  void* p = alloc();
  std::size_t h1 = huge_count();
  CHECK_MSG(p != nullptr, "%s returned null", what);
  CHECK_MSG(h1 == h0 + 1, "%s: huge_count %zu -> %zu: not served by tessera", what, h0, h1);
  if (p) {
    CHECK_MSG(aligned_to(p, align), "%s: %p not aligned to %zu", what, p, align);
    CHECK_MSG(tess_usable_size(p) >= kHuge, "%s: usable %zu", what, tess_usable_size(p));
    std::memset(p, 0x5a, kHuge);
  }
  release(p);
  std::size_t h2 = huge_count();
  CHECK_MSG(h2 == h0, "%s: huge_count %zu after delete, %zu before: delete did not reach tessera",
            what, h2, h0);
}

void test_small_forms() {
  int* a = new int(7);
  small_ok("new int", a, sizeof(int));
  delete a;

  int* b = new int[100];
  small_ok("new int[100]", b, 100 * sizeof(int));
  delete[] b;

  int* c = new (std::nothrow) int(3);
  small_ok("new (nothrow) int", c, sizeof(int));
  delete c;

  char* d = new (std::nothrow) char[5000];
  small_ok("new (nothrow) char[5000]", d, 5000);
  delete[] d;

  void* e = ::operator new(300);
  small_ok("operator new(300)", e, 300);
  ::operator delete(e, 300);  // sized delete

  void* f = ::operator new[](700);
  small_ok("operator new[](700)", f, 700);
  ::operator delete[](f, 700);  // sized array delete

  Aligned256* g = new Aligned256;
  small_ok("new alignas(256)", g, sizeof(Aligned256), 256);
  delete g;

  Aligned256* h = new Aligned256[10];
  small_ok("new alignas(256)[10]", h, 10 * sizeof(Aligned256), 256);
  delete[] h;

  Aligned4096* i = new (std::nothrow) Aligned4096;
  small_ok("new (nothrow) alignas(4096)", i, sizeof(Aligned4096), 4096);
  delete i;

  Aligned64* j = new (std::nothrow) Aligned64[33];
  small_ok("new (nothrow) alignas(64)[33]", j, 33 * sizeof(Aligned64), 64);
  delete[] j;

  void* k = ::operator new(1000, std::align_val_t(512));
  small_ok("operator new(1000, align 512)", k, 1000, 512);
  ::operator delete(k, 1000, std::align_val_t(512));  // sized aligned delete

  void* l = ::operator new[](1000, std::align_val_t(1024), std::nothrow);
  small_ok("operator new[](1000, align 1024, nothrow)", l, 1000, 1024);
  ::operator delete[](l, std::align_val_t(1024), std::nothrow);

  void* m = ::operator new(0);
  small_ok("operator new(0)", m, 0);
  void* m2 = ::operator new(0);
  CHECK(m2 != nullptr && m2 != m);
  ::operator delete(m);
  ::operator delete(m2);
}

void test_huge_forms() {
  huge_round_trip(
      "new char[8 MiB] / delete[]", [] { return static_cast<void*>(new char[kHuge]); },
      [](void* p) { delete[] static_cast<char*>(p); });
  huge_round_trip(
      "operator new / operator delete", [] { return ::operator new(kHuge); },
      [](void* p) { ::operator delete(p); });
  huge_round_trip(
      "operator new / sized delete", [] { return ::operator new(kHuge); },
      [](void* p) { ::operator delete(p, kHuge); });
  huge_round_trip(
      "operator new[] / sized delete[]", [] { return ::operator new[](kHuge); },
      [](void* p) { ::operator delete[](p, kHuge); });
  huge_round_trip(
      "operator new(nothrow) / delete(nothrow)", [] { return ::operator new(kHuge, std::nothrow); },
      [](void* p) { ::operator delete(p, std::nothrow); });
  huge_round_trip(
      "operator new[](nothrow) / delete[](nothrow)",
      [] { return ::operator new[](kHuge, std::nothrow); },
      [](void* p) { ::operator delete[](p, std::nothrow); });
  huge_round_trip(
      "operator new(align 256) / delete(align)",
      [] { return ::operator new(kHuge, std::align_val_t(256)); },
      [](void* p) { ::operator delete(p, std::align_val_t(256)); }, 256);
  huge_round_trip(
      "operator new(align 64 KiB) / sized aligned delete",
      [] { return ::operator new(kHuge, std::align_val_t(65536)); },
      [](void* p) { ::operator delete(p, kHuge, std::align_val_t(65536)); }, 65536);
  huge_round_trip(
      "operator new[](align 4096, nothrow) / delete[](align, nothrow)",
      [] { return ::operator new[](kHuge, std::align_val_t(4096), std::nothrow); },
      [](void* p) { ::operator delete[](p, std::align_val_t(4096), std::nothrow); }, 4096);
  huge_round_trip(
      "operator new[](align 256) / sized aligned delete[]",
      [] { return ::operator new[](kHuge, std::align_val_t(256)); },
      [](void* p) { ::operator delete[](p, kHuge, std::align_val_t(256)); }, 256);
  // new-expressions of an over-aligned type
  constexpr std::size_t n256 = kHuge / sizeof(Aligned256);
  huge_round_trip(
      "new alignas(256)[...] / delete[]", [] { return static_cast<void*>(new Aligned256[n256]); },
      [](void* p) { delete[] static_cast<Aligned256*>(p); }, 256);
  huge_round_trip(
      "new (nothrow) alignas(256)[...] / delete[]",
      [] { return static_cast<void*>(new (std::nothrow) Aligned256[n256]); },
      [](void* p) { delete[] static_cast<Aligned256*>(p); }, 256);
}

int handler_calls;
void counting_handler() {
  handler_calls++;
  std::set_new_handler(nullptr);  // next failure throws
}
void throwing_handler() {
  handler_calls++;
  throw std::bad_alloc();
}

void test_impossible() {
  volatile std::size_t impossible = SIZE_MAX / 2;  // volatile: no constant folding

  bool threw = false;
  try {
    void* p = ::operator new(impossible);
    CHECK_MSG(p == nullptr, "operator new(SIZE_MAX/2) returned %p", p);
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK_MSG(threw, "operator new(SIZE_MAX/2) did not throw std::bad_alloc");

  threw = false;
  try {
    void* p = ::operator new[](impossible, std::align_val_t(64));
    ::operator delete[](p, std::align_val_t(64));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK_MSG(threw, "aligned operator new[](SIZE_MAX/2) did not throw std::bad_alloc");

  threw = false;
  try {
    char* p = new char[impossible];
    delete[] p;
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK_MSG(threw, "new char[SIZE_MAX/2] did not throw std::bad_alloc");

  void* q = ::operator new(impossible, std::nothrow);
  CHECK_MSG(q == nullptr, "operator new(SIZE_MAX/2, nothrow) = %p", q);
  q = ::operator new[](impossible, std::nothrow);
  CHECK_MSG(q == nullptr, "operator new[](SIZE_MAX/2, nothrow) = %p", q);
  q = ::operator new(impossible, std::align_val_t(256), std::nothrow);
  CHECK_MSG(q == nullptr, "operator new(SIZE_MAX/2, align 256, nothrow) = %p", q);
  char* r = new (std::nothrow) char[impossible];
  CHECK_MSG(r == nullptr, "new (nothrow) char[SIZE_MAX/2] = %p", static_cast<void*>(r));

  // The new-handler is called before bad_alloc is thrown.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  threw = false;
  try {
    void* p = ::operator new(impossible);
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK_MSG(threw, "operator new with a new-handler did not throw in the end");
  CHECK_MSG(handler_calls == 1, "the new-handler was called %d times, want 1", handler_calls);

  // A new-handler that throws std::bad_alloc: the nothrow forms return
  // nullptr (the exception must not escape them, which are noexcept: it
  // would end in std::terminate), after calling the handler once.
  std::set_new_handler(throwing_handler);
  struct Form {
    const char* name;
    void* (*call)(std::size_t);
  };
  const Form forms[] = {
      {"operator new(nothrow)", [](std::size_t n) { return ::operator new(n, std::nothrow); }},
      {"operator new[](nothrow)", [](std::size_t n) { return ::operator new[](n, std::nothrow); }},
      {"operator new(align 64, nothrow)",
       [](std::size_t n) { return ::operator new(n, std::align_val_t(64), std::nothrow); }},
      {"operator new[](align 4096, nothrow)",
       [](std::size_t n) { return ::operator new[](n, std::align_val_t(4096), std::nothrow); }},
      {"new (nothrow) char[]", [](std::size_t n) { return static_cast<void*>(new (std::nothrow) char[n]); }},
  };
  for (const Form& f : forms) {
    handler_calls = 0;
    void* p = reinterpret_cast<void*>(1);
    try {
      p = f.call(impossible);
    } catch (...) {
      CHECK_MSG(false, "%s let the new-handler's exception escape", f.name);
    }
    CHECK_MSG(p == nullptr, "%s with a throwing new-handler = %p", f.name, p);
    CHECK_MSG(handler_calls == 1, "%s called the throwing new-handler %d times, want 1", f.name, handler_calls);
  }
  // A real request still succeeds with that handler installed.
  void* ok = ::operator new(64, std::nothrow);
  small_ok("operator new(64, nothrow) with a throwing handler", ok, 64);
  ::operator delete(ok);
  std::set_new_handler(nullptr);
}

}  // namespace

int main() {
  test_small_forms();
  test_huge_forms();
  test_impossible();
  return th_done();
}
