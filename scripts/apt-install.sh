# Sourced by the install scripts: `apt_install PKG...` installs Debian packages as root,
# with one `apt-get update`, or says which are missing and how to install them.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "swiftdeploy setup: missing system packages: $*; run as root or: sudo apt-get install $*" >&2
    exit 1
  fi
  echo "swiftdeploy setup: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
