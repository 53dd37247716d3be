# Shared helpers of scripts/demo and scripts/test (sourced, not run).

say() { printf '[%s] %s\n' "${SCRIPT_NAME:-herald}" "$*" >&2; }
fail() { printf '[%s] error: %s\n' "${SCRIPT_NAME:-herald}" "$*" >&2; exit 1; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || fail "apt-get is missing: install $* by hand"
  say "installing $* with apt-get"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Rust comes with the machine (rustup); Java 17 and Maven come from Debian when missing.
# PostgreSQL is installed by scripts/stack.
ensure_toolchain() {
  command -v cargo >/dev/null || fail "cargo is missing: install Rust (https://rustup.rs), then run this again"
  local need=()
  command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null || need+=(maven)
  command -v psql >/dev/null || need+=(postgresql-client)
  command -v curl >/dev/null || need+=(curl)
  command -v python3 >/dev/null || need+=(python3)
  if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
  fi
}

# The tests' webhook receivers verify signatures with the independent standardwebhooks package
# (PyPI); scripts/api-conformance validates the OpenAPI document with openapi-spec-validator and
# runs schemathesis against a herald. All pinned, in a virtual environment of the stack.
PYTHON_PACKAGES=('standardwebhooks==1.1.0' 'openapi-spec-validator==0.9.0' 'schemathesis==4.32.5')
ensure_python_venv() {
  local venv="$REPO_ROOT/.stack/venv"
  local installed package missing=0
  if [ -x "$venv/bin/pip" ]; then
    installed=$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null || true)
    for package in "${PYTHON_PACKAGES[@]}"; do
      grep -qixF -- "$package" <<<"$installed" || missing=1
    done
    [ "$missing" -eq 0 ] && return 0
  fi
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  say "installing ${PYTHON_PACKAGES[*]} (PyPI) in .stack/venv"
  mkdir -p "$REPO_ROOT/.stack"
  [ -x "$venv/bin/python" ] ||
    python3 -m venv "$venv" || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_PACKAGES[@]}" ||
    fail "could not install ${PYTHON_PACKAGES[*]} from PyPI into .stack/venv"
}
