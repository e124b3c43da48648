#!/usr/bin/env bash
# Installs mlfleet from this built tree as systemd services: systemd/README.md's manual steps as
# one idempotent script. A second run with the same tree changes nothing; a run after a new build
# replaces only what changed. Config files are written once and never overwritten (edit them).
#
#   scripts/install.sh --coordinator|--agent [--root DIR] [--prefix DIR] [--bindir DIR]
#                      [--task-user] [--join-token-file FILE]
#
# --root DIR puts everything under DIR (a scratch root for tests or an image build): users go to
# DIR/etc/passwd and DIR/etc/group (useradd --prefix), and systemctl is not called. With the real
# root (the default), the script runs `systemctl daemon-reload` and prints what to enable.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/install.sh --coordinator|--agent [options]

  --coordinator           install the coordinator (unit, /etc/mlfleet/coordinator.yaml)
  --agent                 install the agent (unit, /etc/mlfleet/agent.yaml); both may be given
  --root DIR              install under DIR instead of / (no systemctl; users in DIR/etc)
  --prefix DIR            where the tree goes (default /opt/mlfleet)
  --bindir DIR            where the entry points are linked (default /usr/local/bin)
  --task-user             also create mlfleet-task, the user --driver process runs tasks as
  --join-token-file FILE  write MLFLEET_JOIN_TOKEN from FILE to /etc/mlfleet/agent.env (0600)
  -h, --help              this help
EOF
}

die() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }
say() { printf '%s\n' "$*"; }

src=$(cd "$(dirname "$0")/.." && pwd)
root=/
prefix=/opt/mlfleet
bindir=/usr/local/bin
coordinator=0
agent=0
task_user=0
join_token_file=
while [ $# -gt 0 ]; do
  case "$1" in
    --coordinator) coordinator=1 ;;
    --agent) agent=1 ;;
    --task-user) task_user=1 ;;
    --root|--prefix|--bindir|--join-token-file)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
      case "$1" in
        --root) root=$2 ;;
        --prefix) prefix=$2 ;;
        --bindir) bindir=$2 ;;
        --join-token-file) join_token_file=$2 ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[ $coordinator = 1 ] || [ $agent = 1 ] || { usage >&2; die "give --coordinator, --agent or both"; }
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
case "$bindir" in /*) ;; *) die "--bindir must be an absolute path: $bindir" ;; esac
[ -d "$root" ] || die "--root is not a directory: $root"
root=$(cd "$root" && pwd)
[ "$root" = / ] && R= || R=$root
if [ -n "$join_token_file" ]; then
  [ $agent = 1 ] || die "--join-token-file is for --agent"
  [ -r "$join_token_file" ] || die "cannot read --join-token-file $join_token_file"
fi
for part in package.json dist/coordinator/main.js dist/agent/main.js dist/scripts/mlfleetctl.js proto node_modules; do
  [ -e "$src/$part" ] || die "$src is not a built tree (no $part): run npm ci && npm run build first"
done
if [ -z "$R" ] && [ "$(id -u)" != 0 ]; then die "installing to / needs root (or use --root DIR)"; fi

changed=0
note() { changed=1; say "  $*"; }

# Node: system-wide, because the units' ProtectHome= hides one under a home directory (nvm).
node_bin=
for candidate in "$R/usr/bin/node" "$R/usr/local/bin/node"; do [ -x "$candidate" ] && { node_bin=$candidate; break; }; done
if [ -n "$node_bin" ]; then
  major=$("$node_bin" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge 20 ] || die "$node_bin is Node $major; mlfleet needs Node 22 (LTS), at least 20"
  [ "$major" -ge 22 ] || say "warning: $node_bin is Node $major; Node 22 LTS is the supported runtime (20 is past its end of life)"
elif [ -z "$R" ]; then
  die "no system-wide node (/usr/bin/node or /usr/local/bin/node): install Node 22 LTS first"
else
  say "note: $root has no usr/bin/node or usr/local/bin/node; the services need Node 22 there"
fi

# 1. The tree: package.json, dist, proto, node_modules into the prefix. Files keep their
# modification times, so a file whose time and type match is left alone and a run after a new
# build copies only what changed; what the tree no longer has is removed. node_modules is copied
# through its target when it is a symlink; hard links become plain copies.
sync_dir() { # sync_dir SRC DST
  local from=$1 to=$2 p stale
  local -a files=()
  local dirs=0
  if [ ! -e "$to" ]; then # a first install: one plain copy
    mkdir -p "$(dirname "$to")"
    cp -PR --preserve=mode,ownership,timestamps "$from/." "$to"
    note "${to#"$R"}"
    return
  fi
  while IFS= read -r -d '' p; do
    if [ -L "$from/$p" ]; then
      [ -L "$to/$p" ] && [ "$(readlink "$from/$p")" = "$(readlink "$to/$p")" ] && continue
    elif [ -d "$from/$p" ]; then
      if [ ! -d "$to/$p" ] || [ -L "$to/$p" ]; then
        rm -rf -- "${to:?}/$p" && mkdir -p "$to/$p" && chmod --reference="$from/$p" "$to/$p"
        dirs=$((dirs + 1))
      fi
      continue
    elif [ -f "$to/$p" ] && [ ! -L "$to/$p" ] && ! [ "$from/$p" -nt "$to/$p" ] && ! [ "$from/$p" -ot "$to/$p" ]; then
      continue
    fi
    files+=("$p")
  done < <(cd "$from" && find . -mindepth 1 -print0)
  if [ ${#files[@]} -gt 0 ]; then
    (cd "$from" && printf '%s\0' "${files[@]}" |
      xargs -0 cp -P --remove-destination --preserve=mode,ownership,timestamps --parents -t "$to")
  fi
  stale=$(comm -13 <(cd "$from" && find . | LC_ALL=C sort) <(cd "$to" && find . | LC_ALL=C sort))
  if [ -n "$stale" ]; then
    (cd "$to" && printf '%s\n' "$stale" | LC_ALL=C sort -r | while IFS= read -r p; do rm -rf -- "$p"; done)
  fi
  if [ ${#files[@]} -gt 0 ] || [ $dirs -gt 0 ] || [ -n "$stale" ]; then
    note "${to#"$R"}: ${#files[@]} files copied, $(printf '%s' "$stale" | grep -c . || true) removed"
  fi
}
install -d -m 0755 "$R$prefix"
if ! cmp -s "$src/package.json" "$R$prefix/package.json"; then
  install -m 0644 "$src/package.json" "$R$prefix/package.json"
  note "$prefix/package.json"
fi
for dir in dist proto node_modules; do sync_dir "$src/$dir" "$R$prefix/$dir"; done

# The entry points, as relative links so that they resolve inside --root too.
link() { # link NAME TARGET-UNDER-PREFIX
  local at="$R$bindir/$1" target
  target=$(realpath -m --relative-to="$bindir" "$prefix/$2")
  install -d -m 0755 "$R$bindir"
  if [ "$(readlink "$at" 2>/dev/null)" != "$target" ]; then
    ln -sfn "$target" "$at"
    note "$bindir/$1 -> $target"
  fi
}
link mlfleetctl dist/scripts/mlfleetctl.js
[ $coordinator = 1 ] && link mlfleet-coordinator dist/coordinator/main.js
[ $agent = 1 ] && link mlfleet-agent dist/agent/main.js

# 2. Users: mlfleet for both daemons; the docker group the agent's unit names (created empty on
# hosts without Docker, or systemd refuses to start the unit); mlfleet-task on request.
account=()
if [ -n "$R" ]; then
  install -d -m 0755 "$R/etc"
  for f in passwd:0644 group:0644 shadow:0640 gshadow:0640; do
    [ -e "$R/etc/${f%:*}" ] || install -m "${f#*:}" /dev/null "$R/etc/${f%:*}"
  done
  account=(--prefix "$R")
fi
has() { grep -q "^$2:" "$R/etc/$1" 2>/dev/null || { [ -z "$R" ] && getent "$1" "$2" >/dev/null; }; }
if ! has passwd mlfleet; then
  useradd "${account[@]}" --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin mlfleet
  note "user mlfleet"
fi
if [ $agent = 1 ] && ! has group docker; then
  groupadd "${account[@]}" --system docker
  note "group docker (empty: this host has no Docker package)"
fi
if [ $task_user = 1 ] && ! has passwd mlfleet-task; then
  useradd "${account[@]}" --system --user-group --no-create-home --shell /usr/sbin/nologin mlfleet-task
  note "user mlfleet-task"
fi

# 3. Config: the examples, once; an existing file is the operator's and stays as it is.
install -d -m 0755 "$R/etc/mlfleet"
config() { # config NAME
  if [ ! -e "$R/etc/mlfleet/$1.yaml" ]; then
    install -m 0644 "$src/systemd/$1.yaml.example" "$R/etc/mlfleet/$1.yaml"
    note "/etc/mlfleet/$1.yaml (from the example: edit it)"
  fi
}
[ $coordinator = 1 ] && config coordinator
[ $agent = 1 ] && config agent
if [ -n "$join_token_file" ]; then
  env_file="$R/etc/mlfleet/agent.env"
  wanted="MLFLEET_JOIN_TOKEN=$(tr -d '[:space:]' <"$join_token_file")"
  if [ "$wanted" = MLFLEET_JOIN_TOKEN= ]; then die "$join_token_file is empty"; fi
  if [ ! -e "$env_file" ] || [ "$(cat "$env_file")" != "$wanted" ]; then
    (umask 077; printf '%s\n' "$wanted" >"$env_file.tmp") && mv "$env_file.tmp" "$env_file"
    note "/etc/mlfleet/agent.env (the join token; mode 0600)"
  fi
fi

# 4. Units, with ExecStart pointing at --bindir.
units=()
[ $coordinator = 1 ] && units+=(mlfleet-coordinator)
[ $agent = 1 ] && units+=(mlfleet-agent)
install -d -m 0755 "$R/etc/systemd/system"
units_changed=0
for unit in "${units[@]}"; do
  from="$src/systemd/$unit.service" to="$R/etc/systemd/system/$unit.service"
  rendered=$(sed "s#^ExecStart=/usr/local/bin/#ExecStart=$bindir/#" "$from")
  if [ ! -e "$to" ] || [ "$(cat "$to")" != "$rendered" ]; then
    printf '%s\n' "$rendered" >"$to.tmp" && chmod 0644 "$to.tmp" && mv "$to.tmp" "$to"
    note "/etc/systemd/system/$unit.service"
    units_changed=1
  fi
done

if [ $changed = 0 ]; then say "mlfleet is installed in $root; nothing changed"; else say "mlfleet installed in $root"; fi
if [ -z "$R" ]; then
  [ $units_changed = 1 ] && systemctl daemon-reload
  say "next:"
  [ $coordinator = 1 ] && say "  edit /etc/mlfleet/coordinator.yaml, then: systemctl enable --now mlfleet-coordinator"
  [ $agent = 1 ] && say "  edit /etc/mlfleet/agent.yaml$([ -z "$join_token_file" ] && printf ', put MLFLEET_JOIN_TOKEN=… in /etc/mlfleet/agent.env (0600)'), then: systemctl enable --now mlfleet-agent"
fi
exit 0
