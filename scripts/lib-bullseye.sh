# shellcheck shell=bash
# Debian 11 (bullseye, glibc 2.31) userlands made with debootstrap, cached under .cache/, and
# chroot helpers. Sourced by scripts/package (the build root) and scripts/check-portable (the
# clean run root). Needs root (debootstrap, mount, chroot).

BULLSEYE_SUITE=bullseye

bullseye_die() {
  echo "error: $*" >&2
  exit 1
}

bullseye_require_root() {
  [ "$(id -u)" = 0 ] || bullseye_die "$1 needs root (debootstrap, mount and chroot); run it with sudo"
}

# The Debian mirror: $DEBIAN_MIRROR, else the first Debian (non-security) mirror apt is configured
# with, else deb.debian.org.
bullseye_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | sed -n '1p' | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

bullseye_ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return
  echo "installing debootstrap with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  } || bullseye_die "could not install debootstrap"
}

# Fails when anything is still mounted at or below $1 (so that nothing is ever deleted through a
# bind mount). Compares literal paths (no regular expression built from the path).
bullseye_assert_unmounted() {
  local dir
  dir=$(realpath -m "$1")
  if awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    bullseye_die "$dir still has mounts below it; unmount them first (findmnt -R $dir)"
  fi
}

# bullseye_root NAME PACKAGES: prints the path of a cached rootfs .cache/bullseye-NAME with the
# given extra packages (comma list), creating it when missing or made with other packages.
bullseye_root() {
  local name=$1 include=$2
  local dir="$REPO_ROOT/.cache/bullseye-$name"
  local stamp="suite=$BULLSEYE_SUITE include=$include"
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ]; then
    echo "$dir"
    return
  fi
  bullseye_ensure_debootstrap
  local mirror
  mirror=$(bullseye_mirror)
  echo "debootstrap $BULLSEYE_SUITE ($name: ${include:-minbase only}) from $mirror into $dir" >&2
  mkdir -p "$REPO_ROOT/.cache"
  for d in "$dir" "$dir.tmp"; do
    if [ -e "$d" ]; then
      bullseye_assert_unmounted "$d"
      rm -rf "$d"
    fi
  done
  local args=(--variant=minbase)
  [ -n "$include" ] && args+=("--include=$include")
  if ! debootstrap "${args[@]}" "$BULLSEYE_SUITE" "$dir.tmp" "$mirror" >"$REPO_ROOT/.cache/debootstrap-$name.log" 2>&1; then
    tail -n 20 "$REPO_ROOT/.cache/debootstrap-$name.log" >&2
    bullseye_die "debootstrap failed (log: .cache/debootstrap-$name.log)"
  fi
  mv "$dir.tmp" "$dir"
  echo "$stamp" >"$dir/.complete"
  echo "$dir"
}

# Mount bookkeeping: every mount made through bullseye_mount is undone by bullseye_unmount_all
# (in reverse order), which the callers run from an EXIT trap.
BULLSEYE_MOUNTS=()

bullseye_mount() { # bullseye_mount SOURCE TARGET [mount options...]
  local src=$1 target=$2
  shift 2
  mkdir -p "$target"
  mount "$@" "$src" "$target"
  BULLSEYE_MOUNTS+=("$target")
}

bullseye_unmount_all() {
  local i
  for ((i = ${#BULLSEYE_MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${BULLSEYE_MOUNTS[$i]}" 2>/dev/null || umount -l "${BULLSEYE_MOUNTS[$i]}" 2>/dev/null || true
  done
  BULLSEYE_MOUNTS=()
}

# The glibc version of a rootfs, e.g. 2.31.
bullseye_glibc_version() {
  # (no `head`: with pipefail, an early-closing reader makes the writer's SIGPIPE fail the pipeline)
  chroot "$1" /usr/bin/ldd --version 2>/dev/null | sed -n '1p' | grep -oE '[0-9]+\.[0-9]+$'
}
