// cxx_replaced.cpp - a program that replaces some forms of operator new and
// delete, run with tessera preloaded: every other form must reach the
// program's, as the standard defines them (new[] calls new, the nothrow
// forms call the throwing ones, delete[] and the sized and nothrow deletes
// call delete), and never hand the program's blocks to tessera.
//
// The plain family: the program replaces new(size) and delete(ptr) with a
// pool (a static arena, blocks tessera would refuse to free) that counts
// its calls.  The aligned family: it replaces only new[](size, align) and
// delete[](ptr, align), so the aligned array forms go to the program and
// the single ones stay tessera's.  Without tessera preloaded (run alone)
// the test checks the C++ runtime's own forms instead.
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "harness.h"

// Replacing only some forms is the point here, and the pool is not the heap.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wsized-deallocation"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#endif

namespace {

alignas(256) unsigned char pool[1 << 16];
std::size_t pool_used;
int news, deletes, array_news_aligned, array_deletes_aligned;

bool in_pool(const void* p) {
  auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(pool);
  return a >= b && a < b + sizeof pool;
}

void* pool_take(std::size_t n, std::size_t align) {
  std::size_t at = (pool_used + align - 1) & ~(align - 1);
  if (at + n > sizeof pool) throw std::bad_alloc();
  pool_used = at + n;
  return pool + at;
}

struct Obj {  // a destructor, so new[] keeps a count and delete[] gets a size
  int v = 7;
  ~Obj() { v = 0; }
};
struct alignas(128) Big {
  unsigned char bytes[128];
};

template <typename T>
T* launder_ptr(T* p) {
  __asm__ volatile("" : "+r"(p));  // the compiler must not elide a new/delete pair
  return p;
}

}  // namespace

void* operator new(std::size_t n) {
  news++;
  return pool_take(n ? n : 1, alignof(std::max_align_t));
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  CHECK_MSG(in_pool(p), "operator delete got %p, not from the program's new", p);
  deletes++;
}
void* operator new[](std::size_t n, std::align_val_t a) {
  array_news_aligned++;
  return pool_take(n ? n : 1, static_cast<std::size_t>(a));
}
void operator delete[](void* p, std::align_val_t) noexcept {
  if (p == nullptr) return;
  CHECK_MSG(in_pool(p), "operator delete[](align) got %p, not from the program's new[]", p);
  array_deletes_aligned++;
}

int main(int argc, char** argv) {
  bool preloaded = dlsym(RTLD_DEFAULT, "tess_malloc") != nullptr;
  if (argc > 1 && std::strcmp(argv[1], "--expect-tessera") == 0) {
    CHECK_MSG(preloaded, "tessera is not preloaded");
  }
  std::printf("cxx_replaced: %s\n", preloaded ? "tessera preloaded" : "the C++ runtime alone");

  // plain family: every form through the program's new and delete
  int n0 = news, d0 = deletes;
  Obj* a = launder_ptr(new Obj[3]);
  CHECK(in_pool(a) && a[2].v == 7);
  delete[] a;  // sized (the array has a cookie)
  Obj* b = launder_ptr(new (std::nothrow) Obj);
  CHECK(in_pool(b));
  delete b;  // sized
  Obj* c = launder_ptr(new (std::nothrow) Obj[2]);
  CHECK(in_pool(c));
  delete[] c;
  void* d = ::operator new[](40);
  CHECK(in_pool(d));
  ::operator delete[](d);
  void* e = ::operator new(24, std::nothrow);
  CHECK(in_pool(e));
  ::operator delete(e, std::nothrow);
  void* f = ::operator new[](24, std::nothrow);
  CHECK(in_pool(f));
  ::operator delete[](f, std::nothrow);
  void* g = ::operator new(48);
  ::operator delete(g, 48);  // sized
  void* h = ::operator new[](48);
  ::operator delete[](h, 48);
  CHECK_EQ(news - n0, 8);
  CHECK_EQ(deletes - d0, 8);

  // aligned family: the array forms reach the program's, the single ones do not
  int an0 = array_news_aligned, ad0 = array_deletes_aligned;
  Big* x = launder_ptr(new Big[4]);
  CHECK(in_pool(x) && reinterpret_cast<std::uintptr_t>(x) % 128 == 0);
  delete[] x;
  Big* y = launder_ptr(new (std::nothrow) Big[2]);
  CHECK(in_pool(y));
  delete[] y;
  void* z = ::operator new[](256, std::align_val_t(128), std::nothrow);
  CHECK(in_pool(z));
  ::operator delete[](z, std::align_val_t(128), std::nothrow);
  void* w = ::operator new[](256, std::align_val_t(128));
  ::operator delete[](w, 256, std::align_val_t(128));  // sized
  CHECK_EQ(array_news_aligned - an0, 4);
  CHECK_EQ(array_deletes_aligned - ad0, 4);
  Big* s = launder_ptr(new Big);  // aligned single: not replaced, so not the pool
  CHECK(!in_pool(s) && reinterpret_cast<std::uintptr_t>(s) % 128 == 0);
  delete s;
  CHECK_EQ(array_news_aligned - an0, 4);

  // malloc is untouched by all this
  void* m = std::malloc(100);
  CHECK(m != nullptr && !in_pool(m));
  std::free(m);
  return th_done();
}
