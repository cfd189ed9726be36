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
#            long it takes. PyXSPEC is built for the venv's Python; xrmod's native engine
#            then loads XSPEC's model library from this HEASoft ($HEADAS) instead of the copy
#            xspectrampoline bundles, and the xspec engine can import PyXSPEC.
#   app      xrmod itself from $XRMOD_SRC (compiled with scikit-build-core, CMake, Cython);
#            writes $XRMOD_PREFIX/env.sh (venv + HEASoft environment), the wrapper
#            $XRMOD_PREFIX/bin/xrmod-env (runs a command in that environment) and copies
#            tiny.toml and check_library.py (the image tests) to $XRMOD_PREFIX/share.
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
#
# Re-running a stage is safe: apt-get and pip skip what is installed, the venv is reused, and
# an installed HEASoft is not rebuilt (delete $HEASOFT_PREFIX to force it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XRMOD_SRC=${XRMOD_SRC:-$(dirname "$here")}
XRMOD_PREFIX=${XRMOD_PREFIX:-/opt/xrmod}
WITH_HEASOFT=${WITH_HEASOFT:-auto}
HEASOFT_PREFIX=${HEASOFT_PREFIX:-/opt/heasoft}
HEASOFT_BUILD=${HEASOFT_BUILD:-/tmp/heasoft-build}
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
    if want_heasoft; then
        # HEASoft's documented prerequisites on Debian/Ubuntu (HEASARC's own Dockerfile
        # example lists these), plus gfortran for XSPEC's Fortran models
        pkgs+=(
            gfortran libreadline-dev libncurses-dev libcurl4-gnutls-dev curl xorg-dev
            perl-modules libfile-which-perl libdevel-checklib-perl
        )
    fi
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

stage_heasoft() {
    if ! want_heasoft; then
        step "HEASoft: skipped (WITH_HEASOFT=$WITH_HEASOFT, tarball: ${HEASOFT_TARBALL:-none found})"
        return
    fi
    local tarball headas
    tarball=$(heasoft_tarball)
    if headas=$(find "$HEASOFT_PREFIX" -maxdepth 1 -type d -name 'x86_64-*' 2>/dev/null \
            | head -n 1) && [ -n "$headas" ] && [ -f "$headas/headas-init.sh" ]; then
        step "HEASoft: already installed in $headas (delete $HEASOFT_PREFIX to rebuild)"
        return
    fi
    [ -x "$PY" ] || die "the heasoft stage needs the python stage first (PyXSPEC uses $PY)"

    step "HEASoft from $tarball (hours: see container/README.md)"
    rm -rf "$HEASOFT_BUILD"
    mkdir -p "$HEASOFT_BUILD" "$HEASOFT_PREFIX"
    tar -xf "$tarball" -C "$HEASOFT_BUILD"
    local build_dir
    build_dir=$(find "$HEASOFT_BUILD" -mindepth 2 -maxdepth 2 -type d -name BUILD_DIR | head -n 1)
    [ -n "$build_dir" ] || die "$tarball: no heasoft-*/BUILD_DIR inside"
    (
        cd "$build_dir"
        # HEASoft's configure finds compilers and interpreters through these variables.
        # PYTHON selects the Python that PyXSPEC is built for (it is built whenever that
        # Python's headers are present: python3-dev): the venv's, which is Debian's python3.
        unset CFLAGS CXXFLAGS FFLAGS LDFLAGS build_alias host_alias
        export CC=/usr/bin/gcc CXX=/usr/bin/g++ FC=/usr/bin/gfortran PERL=/usr/bin/perl
        export PYTHON=$PY
        echo "configure --prefix=$HEASOFT_PREFIX (log: $build_dir/configure.out)"
        ./configure --prefix="$HEASOFT_PREFIX" >configure.out 2>&1 \
            || { tail -n 50 configure.out; die "HEASoft configure failed"; }
        echo "make (log: $build_dir/build.log)"
        make >build.log 2>&1 || { tail -n 80 build.log; die "HEASoft make failed"; }
        echo "make install (log: $build_dir/install.log)"
        make install >install.log 2>&1 || { tail -n 80 install.log; die "HEASoft install failed"; }
    )
    headas=$(find "$HEASOFT_PREFIX" -maxdepth 1 -type d -name 'x86_64-*' | head -n 1)
    if [ -z "$headas" ] || [ ! -f "$headas/headas-init.sh" ]; then
        die "HEASoft installed no $HEASOFT_PREFIX/x86_64-*/headas-init.sh"
    fi
    ls "$headas"/lib/libXSFunctions* >/dev/null 2>&1 \
        || die "HEASoft in $headas has no XSPEC model library (libXSFunctions): was XSPEC" \
               "selected when the tarball was downloaded?"
    rm -rf "$HEASOFT_BUILD"
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
    cp "$here/tiny.toml" "$here/check_library.py" "$XRMOD_PREFIX/share/"

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
            python -c "import xspec; print('PyXSPEC', xspec.__version__ if hasattr(xspec, \
'__version__') else '(no version)')"
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
