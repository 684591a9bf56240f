#!/usr/bin/env bash
# setup-deps.sh - install what building and testing tessera needs (Debian).
#
# Checks each tool first and runs `apt-get update` + `apt-get install` only
# when something is missing, so a prepared machine makes no network call.
# Safe to run without a terminal (CI): noninteractive, no prompts.
# SETUP_DEPS_DRY_RUN=1 prints the apt-get commands instead of running them.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# command (or file) to look for -> Debian package providing it
declare -A need=(
  [cmake]=cmake
  [gcc]=gcc
  [g++]=g++
  [clang]=clang
  [make]=make
  [/usr/bin/python3]=python3
  [perl]=perl
  [ruby]=ruby
  [sqlite3]=sqlite3
  [git]=git
  [xz]=xz-utils
  [/usr/include/stdio.h]=libc6-dev
  [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
)

missing=()
for what in "${!need[@]}"; do
  if [[ $what == /* ]]; then
    [[ -e $what ]] && continue
  else
    command -v "$what" >/dev/null 2>&1 && continue
  fi
  pkg=${need[$what]}
  [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "setup-deps: everything needed is installed"
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
sudo=()
if [[ -n ${SETUP_DEPS_DRY_RUN:-} ]]; then
  sudo=(echo "would run:")
elif [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "setup-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
