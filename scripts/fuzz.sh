#!/usr/bin/env bash
# Build and run libFuzzer targets for a bounded time each.
#
#   scripts/fuzz.sh SECONDS fuzz/fuzz_a.c fuzz/fuzz_b.c ...
#
# Every src/**/*.c except src/main.c is compiled once per invocation (objects
# are reused while neither they, their headers nor the flags changed) into
# build/fuzz/obj/ and archived; each target is then linked against that.
# A target fuzz/fuzz_NAME.c runs on a scratch copy of fuzz/corpus/NAME/ (when
# that exists) under build/fuzz/corpus/NAME/, so the repository's seed corpus
# is never written to; crash files land in build/fuzz/artifacts/NAME/ and the
# full output in build/fuzz/NAME.log.
#
# Prints "fuzz NAME: OK (N runs)" per target; exits non-zero when any target
# failed to build or crashed (the crash file's path is printed). No targets:
# nothing to do, exit 0. FUZZ_CC overrides the compiler (default clang).
set -uo pipefail

usage() {
    echo "usage: $0 SECONDS fuzz/fuzz_NAME.c..." >&2
    exit 2
}

[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in
    '' | *[!0-9]*) usage ;;
esac
[ "$secs" -gt 0 ] || usage
[ $# -gt 0 ] || exit 0

# Targets may be given relative to the caller's directory; work from the root.
targets=()
for t in "$@"; do
    case $t in
        /*) targets+=("$t") ;;
        *) targets+=("$PWD/$t") ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

CC=${FUZZ_CC:-clang}
out=build/fuzz
obj=$out/obj
pkg=$(pkg-config --cflags libfyaml libxxhash libpcre2-8 openssl libnghttp2 libcares libmaxminddb) || { echo "fuzz: pkg-config failed" >&2; exit 1; }
libs="$(pkg-config --libs libfyaml libxxhash libpcre2-8 openssl libnghttp2 libcares libmaxminddb) -lcrypt -lpthread -lm"
# -fno-sanitize-recover: a UBSan report must stop the run like an ASan one,
# or libFuzzer would carry on and call the target fine.
common="-g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc $pkg -fno-sanitize-recover=undefined"
objflags="$common -fsanitize=fuzzer-no-link,address,undefined"
tgtflags="$common -fsanitize=fuzzer,address,undefined"

mkdir -p "$obj" || exit 1
# Objects built with other flags (or another compiler) are thrown away.
stamp="$CC $objflags"
if [ "$(cat "$obj/.flags" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$obj"
    mkdir -p "$obj" || exit 1
    printf '%s\n' "$stamp" >"$obj/.flags"
fi

# True when $1 (an object) must be rebuilt: missing, or older than a file its
# .d lists (the source and every header it included).
stale() {
    local o=$1 d=${1%.o}.d f
    [ -f "$o" ] && [ -f "$d" ] || return 0
    # shellcheck disable=SC2013  # words: a .d lists several files a line
    for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$d"); do
        [ "$f" -nt "$o" ] && return 0
    done
    return 1
}

compile() {
    local src=$1 o=$obj/${1%.c}.o
    mkdir -p "$(dirname "$o")" || return 1
    # shellcheck disable=SC2086
    $CC $objflags -MMD -MP -c -o "$o" "$src" || { rm -f "$o"; return 1; }
}

mapfile -t srcs < <(find src -name '*.c' ! -path src/main.c | sort)
jobs=$(nproc 2>/dev/null || echo 2)
running=0
failed_srcs=0
objs=()
for src in "${srcs[@]}"; do
    o=$obj/${src%.c}.o
    objs+=("$o")
    stale "$o" || continue
    compile "$src" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed_srcs=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed_srcs=1
    running=$((running - 1))
done
if [ "$failed_srcs" -ne 0 ]; then
    echo "fuzz: some sources under src/ do not compile (errors above); no target run" >&2
    exit 1
fi

lib=$out/libsluice-fuzz.a
rm -f "$lib"
libarg=()
if [ "${#objs[@]}" -gt 0 ]; then
    ar rcs "$lib" "${objs[@]}" || exit 1
    libarg=("$lib")
fi

status=0
for t in "${targets[@]}"; do
    base=$(basename "$t" .c)
    name=${base#fuzz_}
    bin=$out/$base
    log=$out/$name.log
    corpus=$out/corpus/$name
    art=$out/artifacts/$name

    if [ ! -f "$t" ]; then
        echo "fuzz $name: FAILED (no such file: $t)"
        status=1
        continue
    fi
    # shellcheck disable=SC2086
    if ! $CC $tgtflags -o "$bin" "$t" "${libarg[@]}" $libs >"$log" 2>&1; then
        cat "$log" >&2
        echo "fuzz $name: FAILED (build; see $log)"
        status=1
        continue
    fi

    rm -rf "$corpus" "$art"
    mkdir -p "$corpus" "$art" || exit 1
    if [ -d "fuzz/corpus/$name" ]; then
        cp -R "fuzz/corpus/$name/." "$corpus/" || exit 1
    fi

    "$bin" -max_total_time="$secs" -artifact_prefix="$art/" "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        echo "fuzz $name: OK ($runs runs)"
        continue
    fi
    status=1
    tail -n 40 "$log" >&2
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$crash" ]; then
        echo "fuzz $name: CRASH ($crash; reproduce: $bin $crash; log: $log)"
    else
        echo "fuzz $name: FAILED (exit $rc; log: $log)"
    fi
done
exit "$status"
