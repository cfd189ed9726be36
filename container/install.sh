#!/usr/bin/env bash
# Install xrmod and its MPI stack into a Debian bookworm image, as root.
#
# ONE script for both images: the Apptainer definition sites build (container/xrmod.def runs
# it in %post) and the Charliecloud image CI builds and tests (container/test-image.sh runs
# it from a Dockerfile), so what is tested is what sites build.
#
# What it installs:
#   system   Debian packages: Open MPI (openmpi-bin libopenmpi-dev), parallel HDF5 for Open
#            MPI (libhdf5-openmpi-dev), compilers, CMake (bookworm: 3.25, what xrmod's
#            pyproject.toml accepts, so the build never downloads one), python3-venv/-dev,
#            pkg-config; plus HEASoft's build prerequisites when HEASoft is built.
#   python   a venv in $XRMOD_PREFIX/venv (Debian's python3) with mpi4py built against Open
#            MPI and h5py built against Debian's parallel HDF5 (HDF5_MPI=ON), both from
#            source; then xrmod's build requirements and runtime dependencies, read from
#            $XRMOD_SRC/pyproject.toml (this stage needs only that file, so an image build
#            can cache it and redo only the `app` stage when the sources change).
#   heasoft  optional (WITH_HEASOFT): HEASoft (XSPEC + PyXSPEC) built from the source
#            tarball the site supplies; see container/README.md for which tarball and how
#            long it takes. PyXSPEC is built for the venv's Python, so the xspec engine can
#            import it; xrmod's native engine uses this HEASoft's XSPEC model library when
#            it is complete, else the copy xspectrampoline bundles (xrmod.xspec_library).
#   app      xrmod itself from $XRMOD_SRC (compiled with scikit-build-core, CMake, Cython);
#            writes $XRMOD_PREFIX/env.sh (venv + HEASoft environment), the wrapper
#            $XRMOD_PREFIX/bin/xrmod-env (runs a command in that environment) and copies
#            tiny.toml, tiny-xspec.toml and check_library.py (the image tests) to
#            $XRMOD_PREFIX/share.
#
# Usage: install.sh [STAGE...]      STAGE: system python heasoft app (default: all four)
#
# Environment (all optional):
#   XRMOD_SRC        xrmod source tree                 (default: the directory above this script)
#   XRMOD_PREFIX     install prefix                    (default: /opt/xrmod)
#   WITH_HEASOFT     auto | 1 | 0: build HEASoft        (default: auto = when a tarball is found)
#   HEASOFT_TARBALL  heasoft-6.3x[src].tar[.gz]         (default: newest heasoft-*.tar* in
#                                                       $XRMOD_SRC/container/heasoft/)
#   HEASOFT_PREFIX   HEASoft install prefix            (default: /opt/heasoft)
#   HEASOFT_BUILD    scratch directory for the build   (default: /tmp/heasoft-build; removed)
#   HEASOFT_PYTHON   Python that PyXSPEC is built for  (default: the venv's; its base
#                                                       interpreter is what configure sees)
#   HEASOFT_CACHE    directory of built HEASoft trees  (default: none, always build). An
#                    entry is used when its key matches this build's: the SHA-256 of the
#                    tarball and of this script, the prefix, the Python, the system and the
#                    compilers; and when the entry's own SHA-256 checks.
#
# Re-running a stage is safe: apt-get and pip skip what is installed, the venv is reused, and
# an installed HEASoft with this build's key is not rebuilt (one with another key is an
# error: delete $HEASOFT_PREFIX or choose another).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XRMOD_SRC=${XRMOD_SRC:-$(dirname "$here")}
XRMOD_PREFIX=${XRMOD_PREFIX:-/opt/xrmod}
WITH_HEASOFT=${WITH_HEASOFT:-auto}
HEASOFT_PREFIX=${HEASOFT_PREFIX:-/opt/heasoft}
HEASOFT_BUILD=${HEASOFT_BUILD:-/tmp/heasoft-build}
HEASOFT_CACHE=${HEASOFT_CACHE:-}
VENV=$XRMOD_PREFIX/venv
PY=$VENV/bin/python
MPI_CC=/usr/bin/mpicc                            # Open MPI's wrapper, by full path
HDF5_DIR=/usr/lib/x86_64-linux-gnu/hdf5/openmpi  # Debian's parallel HDF5 for Open MPI

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1
# pip uses its own CA bundle unless told otherwise; the system one also holds any site (or
# proxy) certificate installed into /usr/local/share/ca-certificates before this runs.
if [ -z "${PIP_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi

t0=$(date +%s)
step() { echo; echo "=== install.sh [$(( $(date +%s) - t0 ))s] $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (inside the image build)"

heasoft_tarball() {  # print the tarball to build, or nothing
    if [ -n "${HEASOFT_TARBALL:-}" ]; then
        [ -f "$HEASOFT_TARBALL" ] || die "HEASOFT_TARBALL=$HEASOFT_TARBALL does not exist"
        echo "$HEASOFT_TARBALL"
        return
    fi
    local found
    found=$(find "$XRMOD_SRC/container/heasoft" -maxdepth 1 -name 'heasoft-*.tar*' 2>/dev/null \
        | sort -V | tail -n 1)
    echo "$found"
}

want_heasoft() {  # true when HEASoft is to be built
    case "$WITH_HEASOFT" in
        1|yes|true) [ -n "$(heasoft_tarball)" ] \
            || die "WITH_HEASOFT=$WITH_HEASOFT but no tarball: set HEASOFT_TARBALL or put" \
                   "heasoft-6.3x[src].tar.gz in $XRMOD_SRC/container/heasoft/"
            return 0 ;;
        0|no|false) return 1 ;;
        auto) [ -n "$(heasoft_tarball)" ] ;;
        *) die "WITH_HEASOFT must be auto, 1 or 0 (got '$WITH_HEASOFT')" ;;
    esac
}

stage_system() {
    step "system packages (Debian: Open MPI, parallel HDF5, compilers, CMake, Python)"
    local pkgs=(
        ca-certificates build-essential cmake ninja-build pkg-config
        python3 python3-venv python3-dev
        openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
    )
    if want_heasoft; then pkgs+=("${HEASOFT_PACKAGES[@]}"); fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    update-ca-certificates >/dev/null
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    echo "Open MPI: $(dpkg-query -W -f='${Version}' openmpi-bin)," \
        "HDF5 (openmpi): $(dpkg-query -W -f='${Version}' libhdf5-openmpi-dev)," \
        "CMake: $(cmake --version | head -n 1 | awk '{print $3}')," \
        "Python: $(python3 -c 'import platform; print(platform.python_version())')"
}

pip_install() { "$PY" -m pip install -q --no-cache-dir "$@"; }

stage_python() {
    step "venv $VENV (Debian's python3)"
    [ -x "$PY" ] || /usr/bin/python3 -m venv "$VENV"
    pip_install --upgrade pip
    # build tools h5py and mpi4py need without build isolation
    pip_install 'setuptools>=77' wheel 'Cython>=3,<4' pkgconfig numpy

    step "mpi4py from source against Open MPI"
    # --no-cache-dir (above): pip would reuse a cached wheel built against another MPI
    CC=$MPI_CC MPICC=$MPI_CC pip_install --no-binary=mpi4py --no-build-isolation mpi4py
    "$PY" -c "from mpi4py import MPI; v = MPI.Get_library_version(); \
assert 'Open MPI' in v, v; print(v.splitlines()[0])"

    step "h5py from source against Debian's parallel HDF5 (HDF5_MPI=ON)"
    # --no-build-isolation: otherwise h5py builds its own mpi4py (and has used > 20 GB)
    HDF5_MPI=ON CC=$MPI_CC HDF5_DIR=$HDF5_DIR \
        pip_install --no-binary=h5py --no-build-isolation h5py
    "$PY" -c "import h5py, sys; print('h5py', h5py.__version__, 'HDF5', h5py.version.hdf5_version, \
'mpi', h5py.get_config().mpi); sys.exit(0 if h5py.get_config().mpi else 'h5py has no MPI')"

    local pyproject=$XRMOD_SRC/pyproject.toml
    if [ -f "$pyproject" ]; then
        step "xrmod's build requirements and dependencies (from $pyproject)"
        local reqs
        mapfile -t reqs < <("$PY" - "$pyproject" <<'PYEOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    meta = tomllib.load(f)
reqs = meta["build-system"]["requires"] + meta["project"]["dependencies"]
reqs += meta["project"].get("optional-dependencies", {}).get("mpi", [])
print("\n".join(reqs))
PYEOF
        )
        [ ${#reqs[@]} -gt 0 ] || die "could not read the requirements from $pyproject"
        # xrmod is built without isolation (app stage), so its build requirements are
        # installed here; h5py, mpi4py and numpy are satisfied and stay as built above
        pip_install "${reqs[@]}"
    fi
}

# ----------------------------------------------------------------------------- HEASoft
# The HEASoft stage builds heacore, tcltk and Xspec (XSPEC + PyXSPEC) and nothing else. A
# build is kept in a cache keyed by everything that decides its result (heasoft_key), so a
# second image, or CI's next run on the same machine, unpacks it instead of compiling for
# ~15 minutes; an entry is used only when its key and its checksum both match.

# What heacore, tcltk and Xspec need to build and run. configure leaves the GUIs out by
# itself; PGPLOT's X driver links libX11 where it is found, so it is always there: a build
# is the same on every machine (a cached one runs wherever its key matches).
HEASOFT_PACKAGES=(gfortran libreadline-dev libncurses-dev libx11-dev perl zlib1g-dev make)

heasoft_prerequisites() {  # install HEASOFT_PACKAGES that are missing (Debian)
    local missing=() p
    for p in "${HEASOFT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "apt-get install ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

heasoft_python() {  # the interpreter PyXSPEC is built for: the base of $HEASOFT_PYTHON's venv
    local py=${HEASOFT_PYTHON:-$PY}
    [ -x "$py" ] || die "no Python for PyXSPEC: $py (set HEASOFT_PYTHON or run the python stage)"
    # configure reads the headers and flags with <python>-config beside the interpreter,
    # which a venv does not have: give it the interpreter the venv was made from
    "$py" -c 'import os, sys; print(os.path.realpath(sys._base_executable))'
}

heasoft_key() {  # heasoft_key TARBALL PYTHON: what a build depends on, one line each
    local tarball=$1 python=$2
    echo "tarball $(sha256sum "$tarball" | cut -d' ' -f1)"
    echo "install.sh $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
    echo "prefix $HEASOFT_PREFIX"
    echo "python $python $("$python" -c 'import sys, sysconfig; \
print(sys.version.split()[0], sysconfig.get_config_var("EXT_SUFFIX"))')"
    echo "system $(uname -m) $(. /etc/os-release && echo "$ID $VERSION_ID")"
    echo "compilers $(gcc -dumpfullversion) $(g++ -dumpfullversion) $(gfortran -dumpfullversion)"
}

heasoft_headas() {  # the installed $HEADAS (PREFIX/<platform>), or nothing
    local dir
    for dir in "$HEASOFT_PREFIX"/*-linux-gnu*; do
        if [ -f "$dir/headas-init.sh" ]; then echo "$dir"; return; fi
    done
}

heasoft_patch() {  # heasoft_patch SRC: the fixes modern compilers need, each only where it applies
    local src=$1 f
    # 1. gfortran >= 10 refuses a call with fewer arguments than elsewhere in the file
    #    (XSPEC 12.9: xwrite(msg, chatter) called once without its chatter level)
    f=$src/Xspec/src/XSFunctions/eqpairsubs.f
    if [ -f "$f" ] && grep -q "CALL xwrite('failed ifitsread')" "$f"; then
        sed -i "s/CALL xwrite('failed ifitsread')/CALL xwrite('failed ifitsread', 5)/" "$f"
        echo "patched $f: xwrite's second argument"
    fi
}

heasoft_patch_configured() {  # the same for files configure writes
    local src=$1 f
    # 2. heacore's lynx (the help browser) does not compile against ncurses 6, whose
    #    TERMINAL is opaque; XSPEC needs neither it nor perl, fhelp, help and refdata
    f=$src/heacore/BUILD_DIR/Makefile
    if [ -f "$f" ] && grep -qE '^HD_SUBDIRS.*lynx' "$f"; then
        sed -i -E '/^HD_SUBDIRS/{s/[[:space:]](lynx|perl|fhelp|help|refdata)\b//g}' "$f"
        echo "patched $f: HD_SUBDIRS = $(sed -n 's/^HD_SUBDIRS[[:space:]]*=//p' "$f")"
    fi
    # 3. XSPEC 12.9's configure takes the Python version with grep -o '[0-9].[0-9]', which
    #    splits 3.11 into two matches and writes -DXS_PYTHON_VERSION=31\ 1.x: PyXSPEC then
    #    does not compile. Write the major and minor digits instead (311).
    f=$src/Xspec/BUILD_DIR/hmakerc
    if [ -f "$f" ] && grep -qE 'XS_PYTHON_VERSION=[0-9]+\\ ' "$f"; then
        local version
        version=$("$(heasoft_python)" -c 'import sys; print("%d%d" % sys.version_info[:2])')
        sed -i -E "s/XS_PYTHON_VERSION=[0-9]+\\\\ [0-9.]+/XS_PYTHON_VERSION=$version/" "$f"
        echo "patched $f: XS_PYTHON_VERSION=$version"
    fi
}

heasoft_build() {  # heasoft_build TARBALL PYTHON: compile and install into $HEASOFT_PREFIX
    local tarball=$1 python=$2 src build_dir component
    rm -rf "$HEASOFT_BUILD"
    mkdir -p "$HEASOFT_BUILD" "$HEASOFT_PREFIX"
    tar -xf "$tarball" -C "$HEASOFT_BUILD"
    build_dir=$(find "$HEASOFT_BUILD" -mindepth 2 -maxdepth 2 -type d -name BUILD_DIR | head -n 1)
    [ -n "$build_dir" ] || die "$tarball: no heasoft-*/BUILD_DIR inside"
    src=$(dirname "$build_dir")
    heasoft_patch "$src"
    (
        cd "$build_dir"
        unset CFLAGS CXXFLAGS FFLAGS LDFLAGS build_alias host_alias
        export CC=/usr/bin/gcc CXX=/usr/bin/g++ FC=/usr/bin/gfortran PERL=/usr/bin/perl
        # Old C (implicit declarations, int conversions) and Fortran (argument mismatches)
        # that gcc >= 10 rejects by default; XSPEC 12.9's C++ uses dynamic exception
        # specifications, ill-formed in C++17 (g++ 11's default): gnu++11. -O2 is in the
        # flags because configure drops its own optimisation when they are set.
        export CFLAGS="-O2 -fcommon -w -Wno-implicit-function-declaration -Wno-implicit-int \
-Wno-int-conversion -Wno-incompatible-pointer-types"
        export CXXFLAGS="-O2 -std=gnu++11 -fpermissive -w"
        export FFLAGS="-O2 -fallow-argument-mismatch -std=legacy -w"
        export PYTHON=$python
        echo "configure --prefix=$HEASOFT_PREFIX (log: $build_dir/configure.out)"
        ./configure --prefix="$HEASOFT_PREFIX" --with-components="heacore tcltk Xspec" \
            --with-copt=-O2 --with-cxxopt=-O2 --with-fopt=-O2 >configure.out 2>&1 \
            || { tail -n 50 configure.out; die "HEASoft configure failed"; }
        heasoft_patch_configured "$src"
        # one component at a time, each with -j: a parallel top-level make races on
        # heacore's installed headers (cfortran.h) that Xspec includes
        for component in heacore tcltk Xspec; do
            [ -f "../$component/BUILD_DIR/hmake" ] || continue
            echo "make $component (log: $build_dir/build-$component.log)"
            (cd "../$component/BUILD_DIR" && ./hmake -j"$(nproc)" all) \
                >"build-$component.log" 2>&1 \
                || { tail -n 80 "build-$component.log"; die "HEASoft: building $component failed"; }
        done
        echo "make install (log: $build_dir/install.log)"
        # hd_install is the top-level make's own helper, which "make all" would build
        { make hd_install && make install; } >install.log 2>&1 \
            || { tail -n 80 install.log; die "HEASoft install failed"; }
    )
}

heasoft_check() {  # heasoft_check HEADAS PYTHON: XSPEC's model library and PyXSPEC are there
    local headas=$1 python=$2
    ls "$headas"/lib/libXSFunctions* >/dev/null 2>&1 \
        || die "HEASoft in $headas has no XSPEC model library (libXSFunctions): was XSPEC" \
               "selected when the tarball was downloaded?"
    # byte-compiled now, as root: PyXSPEC 2.0's sources warn (SyntaxWarning) when compiled,
    # and an unprivileged user of the image could not write the cache
    "$python" -m compileall -q "$headas/lib/python" >/dev/null 2>&1 || true
    (
        set +u   # headas-init.sh reads variables that may be unset
        export HEADAS=$headas
        export HOME=${HOME:-/root}   # XSPEC aborts without it (an image build may not set it)
        . "$headas/headas-init.sh"
        "$python" -W error -c 'import xspec; print("PyXSPEC", *xspec.Xset.version)' </dev/null
    ) || die "PyXSPEC does not import from $headas with $python"
}

stage_heasoft() {
    if ! want_heasoft; then
        step "HEASoft: skipped (WITH_HEASOFT=$WITH_HEASOFT, tarball: ${HEASOFT_TARBALL:-none found})"
        return
    fi
    local tarball python key hash headas entry
    heasoft_prerequisites
    tarball=$(heasoft_tarball)
    python=$(heasoft_python)
    key=$(heasoft_key "$tarball" "$python")
    hash=$(echo "$key" | sha256sum | cut -c1-16)
    headas=$(heasoft_headas)
    if [ -n "$headas" ]; then
        if cmp -s <(echo "$key") "$HEASOFT_PREFIX/.xrmod-heasoft-key"; then
            step "HEASoft: $headas is this build already (key $hash)"
            return
        fi
        # an earlier build of this script, from another tarball or version of the script,
        # is replaced; a HEASoft installed otherwise (no key file) is never touched
        [ -f "$HEASOFT_PREFIX/.xrmod-heasoft-key" ] \
            || die "$HEASOFT_PREFIX holds a HEASoft this script did not install: remove it" \
                   "or set HEASOFT_PREFIX"
        echo "HEASoft in $HEASOFT_PREFIX was built under another key: replacing it"
        rm -rf "${HEASOFT_PREFIX:?}"
    fi

    entry=${HEASOFT_CACHE:+$HEASOFT_CACHE/heasoft-$hash}
    if [ -n "$entry" ] && [ -f "$entry.tar" ] && cmp -s <(echo "$key") "$entry.key" \
            && (cd "$(dirname "$entry")" && sha256sum --status -c "$entry.sha256"); then
        step "HEASoft from the cache: $entry.tar (key $hash)"
        mkdir -p "$HEASOFT_PREFIX"
        tar -xf "$entry.tar" -C "$HEASOFT_PREFIX"
    else
        [ -z "$entry" ] || [ ! -e "$entry.tar" ] \
            || echo "HEASoft cache entry $entry.tar does not match its key or checksum: rebuilding"
        step "HEASoft from $tarball (key $hash; ~15 min on 2 cores)"
        local t_build=$SECONDS
        heasoft_build "$tarball" "$python"
        echo "HEASoft built and installed in $((SECONDS - t_build)) s"
        rm -rf "$HEASOFT_BUILD"
    fi
    headas=$(heasoft_headas)
    [ -n "$headas" ] || die "HEASoft installed no $HEASOFT_PREFIX/*-linux-gnu*/headas-init.sh"
    heasoft_check "$headas" "$python"
    echo "$key" >"$HEASOFT_PREFIX/.xrmod-heasoft-key"
    if [ -n "$entry" ] && [ ! -f "$entry.tar" ]; then
        # written under temporary names and renamed: a cut-short copy is never an entry
        mkdir -p "$HEASOFT_CACHE"
        tar -C "$HEASOFT_PREFIX" -cf "$entry.tar.part" .
        (cd "$HEASOFT_CACHE" && sha256sum "$(basename "$entry").tar.part" \
            | sed 's/\.part$//' >"$entry.sha256.part")
        echo "$key" >"$entry.key.part"
        mv "$entry.tar.part" "$entry.tar"
        mv "$entry.key.part" "$entry.key"
        mv "$entry.sha256.part" "$entry.sha256"
        echo "HEASoft cached as $entry.tar ($(du -h "$entry.tar" | cut -f1))"
    fi
    echo "HEADAS=$headas"
}

write_env() {  # $XRMOD_PREFIX/env.sh: the environment every entry point uses
    local headas
    headas=$(find "$HEASOFT_PREFIX" -maxdepth 1 -type d -name 'x86_64-*' 2>/dev/null \
        | head -n 1 || true)   # no HEASoft: no $HEASOFT_PREFIX, find fails
    mkdir -p "$XRMOD_PREFIX/bin" "$XRMOD_PREFIX/share"
    {
        echo "# Generated by container/install.sh: source it (POSIX sh) to use xrmod."
        echo "export XRMOD_PREFIX=$XRMOD_PREFIX"
        echo "export VIRTUAL_ENV=$VENV"
        echo "export PATH=$VENV/bin:\${PATH:-/usr/local/bin:/usr/bin:/bin}"
        echo "# one thread per MPI rank (the engine is single-threaded)"
        echo "export OMP_NUM_THREADS=\${OMP_NUM_THREADS:-1}"
        if [ -n "$headas" ] && [ -f "$headas/headas-init.sh" ]; then
            echo "# HEASoft: xrmod's native engine loads XSPEC's model library from \$HEADAS;"
            echo "# headas-init.sh puts PyXSPEC (\$HEADAS/lib/python) on PYTHONPATH."
            echo "export HEADAS=$headas"
            echo "# XSPEC needs a writable \$HOME (it keeps ~/.xspec there and aborts without"
            echo "# one): in a read-only image with no home bound, use a private one in /tmp."
            echo 'if [ -z "${HOME:-}" ] || [ ! -d "$HOME" ] || [ ! -w "$HOME" ]; then'
            echo '    HOME=${TMPDIR:-/tmp}/xrmod-home-$(id -u)'
            echo '    mkdir -p "$HOME" && chmod 700 "$HOME"'
            echo '    export HOME'
            echo 'fi'
            echo ". \"\$HEADAS/headas-init.sh\""
        fi
    } >"$XRMOD_PREFIX/env.sh"
    cat >"$XRMOD_PREFIX/bin/xrmod-env" <<EOF
#!/bin/sh
# Run a command in xrmod's environment ($XRMOD_PREFIX/env.sh), e.g.
#   xrmod-env mpirun -n 2 xrmod-gen CONFIG
. "$XRMOD_PREFIX/env.sh"
exec "\$@"
EOF
    chmod 755 "$XRMOD_PREFIX/bin/xrmod-env"
}

stage_app() {
    [ -x "$PY" ] || die "the app stage needs the python stage first"
    [ -f "$XRMOD_SRC/pyproject.toml" ] || die "XRMOD_SRC=$XRMOD_SRC is not xrmod's source tree"
    step "xrmod from $XRMOD_SRC"
    # --no-build-isolation: the build requirements are in the venv already (python stage);
    # CMake is Debian's (pyproject.toml's cmake.version accepts it, nothing is downloaded)
    pip_install --no-build-isolation "$XRMOD_SRC"
    write_env
    cp "$here/tiny.toml" "$here/tiny-xspec.toml" "$here/check_library.py" "$XRMOD_PREFIX/share/"

    step "check the installation"
    # shellcheck disable=SC1091
    (
        set +u   # HEASoft's headas-init.sh reads variables that may be unset
        . "$XRMOD_PREFIX/env.sh"
        set -u
        xrmod-gen --version
        python -c "from mpi4py import MPI; assert 'Open MPI' in MPI.Get_library_version()"
        python -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else \
'h5py lost its MPI build (a dependency replaced it)')"
        python -c "import xrmod._modify, xrmod._grid"
        if [ -n "${HEADAS:-}" ]; then
            HOME=${HOME:-/root} python -c "import xspec; print('PyXSPEC', *xspec.Xset.version)"
        fi
    )
    echo "environment: $XRMOD_PREFIX/env.sh"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(system python heasoft app)
for s in "${stages[@]}"; do
    case "$s" in
        system|python|heasoft|app) "stage_$s" ;;
        *) die "unknown stage '$s' (system, python, heasoft, app)" ;;
    esac
done
step "done: ${stages[*]}"
