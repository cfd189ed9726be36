#!/usr/bin/env bash
# Build xrmod's container image with Charliecloud and test it: what CI runs (.ci/run).
#
# Apptainer cannot be installed on the CI machines; Charliecloud (Debian package
# `charliecloud`) can, and it builds from a Dockerfile without a daemon. The image is built
# the way container/xrmod.def builds the site image: Debian bookworm, then
# container/install.sh (the same script, stage for stage), without HEASoft. Then:
#   - `mpirun -n 2 xrmod-gen tiny.toml --writer mpio` runs INSIDE the image (ch-run), with the
#     image's Open MPI and parallel h5py, writing to a host directory bound at /mnt;
#   - when the host has Open MPI 4.1 (as the image), the hybrid model too: the host's
#     `mpirun -n 2` starting one `ch-run --join ... xrmod-gen` per rank;
#   - the library is checked FROM OUTSIDE with the host's Python + h5py (check_library.py:
#     every point done, axis order kept, provenance attributes, 2 ranks, writer mpio), or
#     with the image's Python if the host's has no h5py; `xrmod info` runs inside.
#
# Steps (timed): tools (apt: charliecloud, debootstrap, git), base image (debootstrap
# --variant=minbase bookworm from the host's Debian mirror, tar without /dev, ch-image
# import; skipped when the store has it), build (ch-image build --force; cached: a change to
# the sources redoes only the last layer), run, hybrid run, check; with HEASoft also the
# xspec engine (mpirun -n 2 with the mpio writer) and check-engines native,xspec inside.
#
# HEASoft: when a source tarball is in container/heasoft/ (CI copies the site tarball there),
# the image gets install.sh's heasoft stage too, between the python and app stages as in
# container/xrmod.def. The stage unpacks a build from HEASOFT_CACHE when one has this build's
# key (the host's CI step built it: same tarball, script, prefix, Python, system, compilers),
# so the image does not compile HEASoft a second time; otherwise it builds (~15 min).
#
# Runs as root (debootstrap and apt need it; CI runs as root). Needs network access to the
# Debian mirror and the Python package index only.
#
# Environment (all optional):
#   XRMOD_CH_WORK      work directory                  (default /var/tmp/xrmod-ch)
#   CH_IMAGE_STORAGE   Charliecloud image store        (default $XRMOD_CH_WORK/storage)
#   XRMOD_CH_IMAGE     image name                      (default xrmod)
#   XRMOD_CH_BASE      base image name                 (default xrmod-base-bookworm)
#   XRMOD_CH_REBUILD   1: rebuild the base and every layer (default: reuse the store)
#   XRMOD_DEBIAN_MIRROR  Debian mirror for debootstrap (default: from the host's apt sources)
#   XRMOD_HOST_PYTHON  Python with h5py for the outside check (default: python3 on PATH)
#   XRMOD_CH_HEASOFT   auto | 1 | 0: HEASoft in the image (default auto: when a tarball is
#                      in container/heasoft/)
#   HEASOFT_CACHE      the host's cache of HEASoft builds, offered to the image (optional)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

# The host's Python (e.g. CI's active venv), found before PATH is narrowed below.
HOST_PYTHON=${XRMOD_HOST_PYTHON:-$(command -v python3 || command -v python || true)}
# ch-image is a Python script that needs Debian's python3 (python3-lark): /usr/bin first.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export USER=${USER:-$(id -un)}   # ch-image and ch-run refuse to run without it
WORK=${XRMOD_CH_WORK:-/var/tmp/xrmod-ch}
export CH_IMAGE_STORAGE=${CH_IMAGE_STORAGE:-$WORK/storage}
IMAGE=${XRMOD_CH_IMAGE:-xrmod}
BASE=${XRMOD_CH_BASE:-xrmod-base-bookworm}
REBUILD=${XRMOD_CH_REBUILD:-0}
NP=2
HEASOFT=${XRMOD_CH_HEASOFT:-auto}
tarball=$(find "$here/heasoft" -maxdepth 1 -name 'heasoft-*.tar*' 2>/dev/null | sort -V | tail -n 1)
case "$HEASOFT" in
    auto) HEASOFT=$([ -n "$tarball" ] && echo 1 || echo 0) ;;
    1) [ -n "$tarball" ] || { echo "test-image.sh: XRMOD_CH_HEASOFT=1 but no tarball in" \
        "$here/heasoft/" >&2; exit 1; } ;;
    0) ;;
    *) echo "test-image.sh: XRMOD_CH_HEASOFT must be auto, 1 or 0" >&2; exit 1 ;;
esac

t_start=$(date +%s)
t_step=$t_start
current="start"
timings=()
step() {  # step NAME: close the previous step's timer and open NAME's
    local now
    now=$(date +%s)
    if [ "$current" != "start" ]; then timings+=("$(printf '%5ds  %s' $((now - t_step)) "$current")"); fi
    current=$1
    t_step=$now
    echo
    echo "=== test-image.sh [$((now - t_start))s] $current"
}
summary() {
    echo
    echo "=== test-image.sh: time per step"
    printf '%s\n' "${timings[@]}"
    printf '%5ds  %s\n' $(( $(date +%s) - t_step )) "$current"
    printf '%5ds  total\n' $(( $(date +%s) - t_start ))
    if [ -d "$CH_IMAGE_STORAGE" ]; then
        echo "image store $CH_IMAGE_STORAGE: $(du -sh "$CH_IMAGE_STORAGE" 2>/dev/null | cut -f1)"
    fi
}
on_exit() {
    local rc=$?
    summary
    if [ "$rc" -ne 0 ]; then
        echo >&2
        echo "test-image.sh: FAILED (exit $rc) in step: $current" >&2
    fi
}
trap on_exit EXIT
die() { echo "test-image.sh: error: $*" >&2; exit 1; }
run_logged() {  # run_logged LOG CMD...: quiet unless it fails, then show the log's tail
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "'$*' failed (full log: $log)"
    fi
}

mkdir -p "$WORK"

# --------------------------------------------------------------------------- tools
step "tools: charliecloud, debootstrap, git"
need=()
command -v ch-image >/dev/null || need+=(charliecloud)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v git >/dev/null || need+=(git)   # ch-image's build cache is a git repository
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi
echo "charliecloud $(ch-image --version 2>&1), $(debootstrap --version 2>&1 | head -n 1)"

# --------------------------------------------------------------------------- base image
host_uris() {  # every URI in the host's apt sources (deb822 .sources and one-line .list)
    {
        grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
        grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list \
            /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}'
    } | sed -E 's:/+$::' | grep -v '^$' || true
}

step "base image $BASE (debootstrap minbase bookworm, import)"
if [ "$REBUILD" != 1 ] && ch-image list | grep -x "$BASE" >/dev/null; then
    echo "$BASE is in $CH_IMAGE_STORAGE already"
else
    mirror=${XRMOD_DEBIAN_MIRROR:-$(host_uris | grep -E '/debian$' | head -n 1)}
    mirror=${mirror:-http://deb.debian.org/debian}
    security=$(host_uris | grep -E '/debian-security$' | head -n 1)
    echo "Debian mirror (the host's): $mirror${security:+, security: $security}"
    rootfs=$WORK/rootfs
    rm -rf "$rootfs" "$WORK/base.tar"
    run_logged "$WORK/debootstrap.log" \
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        if [ -n "$security" ]; then echo "deb $security bookworm-security main"; fi
    } >"$rootfs/etc/apt/sources.list"
    rm -f "$rootfs"/etc/apt/sources.list.d/*
    tar -C "$rootfs" --exclude=./dev -cf "$WORK/base.tar" .
    ch-image import "$WORK/base.tar" "$BASE"
    rm -rf "$rootfs" "$WORK/base.tar"
fi

# --------------------------------------------------------------------------- build context
step "build context"
ctx=$WORK/context
rm -rf "$ctx"
mkdir -p "$ctx/certs" "$ctx/xrmod"
# the host's extra CA certificates (a site or proxy CA): pip inside the image needs them
find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp -p {} "$ctx/certs/" \;
echo "extra CA certificates from the host: $(find "$ctx/certs" -name '*.crt' | wc -l)"
touch -d @0 "$ctx/certs/.keep"   # never an empty directory; a fixed time keeps the cache
cp -p "$here/install.sh" "$ctx/install.sh"
cp -p "$repo/pyproject.toml" "$ctx/pyproject.toml"
# The application: the working tree without build products, venvs or HEASoft tarballs
# (whatever git ignores); a plain copy with the usual exclusions outside a git checkout.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf -) | tar -C "$ctx/xrmod" -xf -
else
    tar -C "$repo" --exclude=.git --exclude=build --exclude=dist --exclude='*.egg-info' \
        --exclude=.venv --exclude=venv --exclude=__pycache__ --exclude='*.so' --exclude='*.h5' \
        --exclude='container/heasoft/*.tar*' -cf - . | tar -C "$ctx/xrmod" -xf -
fi
# COPY's cache key includes modification times: pin the directories' (files keep theirs),
# so an unchanged tree reuses the cached layers
find "$ctx" -type d -exec touch -h -d @0 {} +
echo "application: $(find "$ctx/xrmod" -type f | wc -l) files, $(du -sh "$ctx/xrmod" | cut -f1)"

# HEASoft: the site's tarball, and the host's cached builds of it (their .key files name
# the tarball's SHA-256; the stage checks the rest of the key and each entry's checksum)
mkdir -p "$ctx/heasoft/cache"
heasoft_run="echo 'no HEASoft in this image'"
if [ "$HEASOFT" = 1 ]; then
    cp -p "$tarball" "$ctx/heasoft/"
    sha=$(sha256sum "$tarball" | cut -d' ' -f1)
    for key in "${HEASOFT_CACHE:-/nonexistent}"/heasoft-*.key; do
        [ -f "$key" ] && grep -qx "tarball $sha" "$key" || continue
        entry=${key%.key}
        cp -p "$entry.key" "$entry.sha256" "$entry.tar" "$ctx/heasoft/cache/"
    done
    echo "HEASoft: $(basename "$tarball"), $(find "$ctx/heasoft/cache" -name '*.tar' | wc -l)" \
        "cached build(s) offered from ${HEASOFT_CACHE:-(no HEASOFT_CACHE)}"
    heasoft_run="WITH_HEASOFT=1 HEASOFT_TARBALL=/opt/xrmod/heasoft-site/$(basename "$tarball") \
HEASOFT_CACHE=/opt/xrmod/heasoft-site/cache /opt/xrmod/build/install.sh heasoft"
fi
touch -d @0 "$ctx/heasoft/cache/.keep"

cat >"$ctx/Dockerfile" <<EOF
# Generated by container/test-image.sh: the Charliecloud twin of container/xrmod.def,
# the same install.sh stages in layers, the application copied last for the build cache.
FROM $BASE
ENV LANG=C.UTF-8
COPY certs/ /usr/local/share/ca-certificates/
COPY install.sh /opt/xrmod/build/install.sh
# The word apt-get below is for ch-image --force: it wraps RUNs that name apt-get in
# fakeroot (and sets APT::Sandbox::User root), without which apt fails in the unprivileged
# build (setgroups: Operation not permitted). The shell ignores the comment.
RUN WITH_HEASOFT=0 /opt/xrmod/build/install.sh system  # apt-get
COPY pyproject.toml /opt/xrmod/src/pyproject.toml
RUN WITH_HEASOFT=0 XRMOD_SRC=/opt/xrmod/src /opt/xrmod/build/install.sh python
COPY heasoft/ /opt/xrmod/heasoft-site/
RUN $heasoft_run && rm -rf /opt/xrmod/heasoft-site  # apt-get
COPY xrmod/ /opt/xrmod/src/
RUN XRMOD_SRC=/opt/xrmod/src /opt/xrmod/src/container/install.sh app
EOF

# --------------------------------------------------------------------------- build
step "image build: ch-image build --force $IMAGE"
build_args=(--force -t "$IMAGE" -f "$ctx/Dockerfile")
if [ "$REBUILD" = 1 ]; then build_args+=(--rebuild); fi
ch-image build "${build_args[@]}" "$ctx"
ch-image list | grep -x "$IMAGE" >/dev/null || die "ch-image built no image '$IMAGE'"

# --------------------------------------------------------------------------- run
out=$WORK/out
rm -rf "$out"
mkdir -p "$out"
# The image's environment only (--unset-env='*' then --set-env = /ch/environment), plus a
# PATH and what Open MPI needs here: root maps to uid 0 in the container, so Open MPI must
# be allowed to run as root; oversubscription lets 2 ranks run on any machine.
ch_run() {
    ch-run --unset-env='*' --set-env \
        --set-env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --set-env=HOME=/root \
        --set-env=OMPI_ALLOW_RUN_AS_ROOT=1 --set-env=OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        --set-env=OMPI_MCA_rmaps_base_oversubscribe=1 \
        -b "$out:/mnt" -c /mnt "$IMAGE" -- /opt/xrmod/bin/xrmod-env "$@"
}

step "run: mpirun -n $NP xrmod-gen tiny.toml --writer mpio (inside the image)"
ch_run mpirun --version | head -n 1
ch_run mpirun -n "$NP" xrmod-gen /opt/xrmod/share/tiny.toml -o /mnt/tiny.h5 \
    --writer mpio --no-progress
[ -f "$out/tiny.h5" ] || die "no library $out/tiny.h5 after the run"

# The hybrid model (README: host MPI across nodes), when the host has Open MPI 4.1 like the
# image: the host's mpirun starts one `ch-run --join` per rank, and the image's Open MPI
# joins it. A clean environment (env -i): nothing of the host's shell leaks into the ranks.
libs=(tiny.h5)
if [ -x /usr/bin/mpirun ] && /usr/bin/mpirun --version 2>/dev/null | grep -E 'Open MPI\) 4\.1' >/dev/null
then
    step "run: host mpirun -n $NP ch-run --join xrmod-gen (hybrid model)"
    /usr/bin/mpirun --version | head -n 1
    env -i PATH="$PATH" USER="$USER" HOME="${HOME:-/root}" CH_IMAGE_STORAGE="$CH_IMAGE_STORAGE" \
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_rmaps_base_oversubscribe=1 \
        /usr/bin/mpirun -n "$NP" ch-run --join -b "$out:/mnt" -c /mnt "$IMAGE" -- \
        /opt/xrmod/bin/xrmod-env xrmod-gen /opt/xrmod/share/tiny.toml -o /mnt/hybrid.h5 \
        --writer mpio --no-progress
    libs+=(hybrid.h5)
else
    echo "(no Open MPI 4.1 mpirun on the host: hybrid model not tried)"
fi

# --------------------------------------------------------------------------- check
step "check the libraries: ${libs[*]}"
ch_run xrmod info /mnt/tiny.h5
check_args=(--axes "mu,sigma,amp" --ranks "$NP" --writer mpio)
for lib in "${libs[@]}"; do
    if [ -n "$HOST_PYTHON" ] && "$HOST_PYTHON" -c "import h5py, numpy" 2>/dev/null; then
        echo "from outside the image: $HOST_PYTHON (h5py $("$HOST_PYTHON" -c \
            'import h5py; print(h5py.__version__)'))"
        "$HOST_PYTHON" "$here/check_library.py" "$out/$lib" "${check_args[@]}"
    else
        echo "the host's Python has no h5py: checking with the image's Python"
        ch_run python /opt/xrmod/share/check_library.py "/mnt/$lib" "${check_args[@]}"
    fi
done

# --------------------------------------------------------------------------- XSPEC
if [ "$HEASOFT" = 1 ]; then
    step "xspec engine: mpirun -n $NP xrmod-gen tiny-xspec.toml --writer mpio (inside)"
    ch_run sh -c 'echo "HEADAS=$HEADAS"; python -c "import xspec; print(\"PyXSPEC\", *xspec.Xset.version)"'
    ch_run mpirun -n "$NP" xrmod-gen /opt/xrmod/share/tiny-xspec.toml -o /mnt/tiny-xspec.h5 \
        --writer mpio --no-progress
    ch_run xrmod info /mnt/tiny-xspec.h5
    xspec_args=(--axes "mu,sigma,amp" --ranks "$NP" --writer mpio --engine xspec)
    if [ -n "$HOST_PYTHON" ] && "$HOST_PYTHON" -c "import h5py, numpy" 2>/dev/null; then
        "$HOST_PYTHON" "$here/check_library.py" "$out/tiny-xspec.h5" "${xspec_args[@]}"
    else
        ch_run python /opt/xrmod/share/check_library.py /mnt/tiny-xspec.h5 "${xspec_args[@]}"
    fi

    step "xrmod check-engines native,xspec (inside the image)"
    ch_run xrmod check-engines /opt/xrmod/share/tiny-xspec.toml --engines native,xspec
fi

step "done"
echo "test-image.sh: image $IMAGE passed"
