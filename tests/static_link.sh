#!/usr/bin/env bash
# static_link.sh - link static_prog.c with -static against libtessera.a and
# run it.  The link is done here, at test time, so a failure ("multiple
# definition of `malloc'", an undefined symbol) fails this one test with the
# linker's message instead of breaking the build of the whole suite.
#
# usage: static_link.sh <cc> <libtessera.a> <include dir> <source> <workdir> [extra cflags...]
set -u
cc=$1 lib=$2 inc=$3 src=$4 work=$5
shift 5
mkdir -p "$work"
out=$work/static_prog

echo "static_link: $cc -static ... $lib"
if ! "$cc" -std=gnu11 -O1 -g -fno-builtin -static "$@" -I"$inc" -I"$(dirname "$src")" \
    "$src" "$lib" -pthread -o "$out" 2>"$work/link.log"; then
  cat "$work/link.log"
  if grep -q "multiple definition" "$work/link.log"; then
    echo "static_link: FAILED: tessera and glibc's malloc.o both linked (multiple definition)"
  else
    echo "static_link: FAILED: the static link did not succeed"
  fi
  exit 1
fi
cat "$work/link.log"

# really static: no interpreter, no dynamic section
if file_out=$(readelf -l "$out" 2>&1) && grep -q "INTERP" <<<"$file_out"; then
  echo "static_link: FAILED: $out is not statically linked"
  exit 1
fi

"$out"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "static_link: FAILED: static_prog exited with $rc"
  exit 1
fi
echo "static_link: ok"
