#!/usr/bin/env bash
# Starts and stops a real control plane (etcd + kube-apiserver) on loopback for
# the end-to-end tests, in the manner of controller-runtime's envtest.
#
#   controlplane.sh up DIR [--owner-pid PID]   prints KUBECONFIG=DIR/kubeconfig last
#   controlplane.sh down DIR                   stops what `up` started; idempotent
#
#   PORTCULLIS_CONTROL_PLANE_BIN   directory holding etcd and kube-apiserver
#                                  (default: whatever build-control-plane.sh prints)
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
log() { echo "controlplane: $*" >&2; }
die() { log "$@"; exit 1; }

# A pid counts as running only if it exists, is not a zombie and (when a name is
# given) is still that program, so a recycled pid is never signalled.
alive() { # pid [comm]
  local pid=$1 state comm
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != [ZX] ]] || return 1
  [[ $# -lt 2 ]] && return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$2" ]]
}

# Polls a command every 0.2s until it succeeds or the deadline passes; bails out
# early if the server it is waiting for has died.
wait_for() { # what deadline_s pid logfile command...
  local what=$1 deadline=$((SECONDS + $2)) pid=$3 logfile=$4
  shift 4
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pid" || ((SECONDS >= deadline)); then
      log "$what did not become ready (pid $pid); last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

stop() { # pidfile comm
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  if alive "$pid" "$2"; then
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while alive "$pid" "$2" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid" "$2"; then
      log "$2 ignored SIGTERM for 20s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$1"
}

down() { # dir
  local dir=$1 wpid
  # The watchdog runs in its own session; killing its group also ends its sleep.
  if wpid=$(cat "$dir/watchdog.pid" 2>/dev/null) && alive "$wpid"; then
    kill -TERM -- "-$wpid" 2>/dev/null || true
  fi
  rm -f "$dir/watchdog.pid"
  stop "$dir/kube-apiserver.pid" kube-apiserver
  stop "$dir/etcd.pid" etcd
}

# Detached loop: once the owner is gone, tear the servers down. It removes its
# own pid file first so that `down` does not kill the process running it.
watchdog() { # dir owner_pid
  while alive "$2"; do sleep 1; done
  log "owner pid $2 exited; stopping the control plane in $1"
  rm -f "$1/watchdog.pid"
  down "$1"
}

certs() { # dir
  local d=$1
  log "generating certificates in $d"
  # One CA signs both the serving cert and the admin client cert.
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=portcullis-e2e-ca \
    -keyout "$d/ca.key" -out "$d/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  sign() { # name subject extensions
    openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
    printf '%b' "$3" >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 30 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
    rm -f "$d/$1.csr" "$d/$1.ext"
  }
  sign apiserver /CN=kube-apiserver \
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
  # O=system:masters makes the admin a superuser under RBAC without any binding.
  sign admin '/O=system:masters/CN=portcullis-admin' \
    'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 600 "$d"/*.key
}

kubeconfig() { # dir port
  local d=$1 b64='base64 -w0'
  cat >"$d/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: portcullis-e2e
  cluster:
    server: https://127.0.0.1:$2
    certificate-authority-data: $($b64 "$d/ca.crt")
users:
- name: portcullis-admin
  user:
    client-certificate-data: $($b64 "$d/admin.crt")
    client-key-data: $($b64 "$d/admin.key")
contexts:
- name: portcullis-e2e
  context: {cluster: portcullis-e2e, user: portcullis-admin}
current-context: portcullis-e2e
EOF
  chmod 600 "$d/kubeconfig"
}

up() { # dir [--owner-pid PID]; sets the global dir, which the EXIT trap uses
  local owner=""
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  shift
  while (($#)); do
    case $1 in
      --owner-pid) owner=${2:?--owner-pid needs a pid}; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [[ -z $owner ]] || alive "$owner" || die "owner pid $owner is not running"
  if alive "$(cat "$dir/etcd.pid" 2>/dev/null)" etcd || alive "$(cat "$dir/kube-apiserver.pid" 2>/dev/null)" kube-apiserver; then
    die "a control plane is already running in $dir; run down first"
  fi

  local bin=${PORTCULLIS_CONTROL_PLANE_BIN:-}
  if [[ -z $bin ]]; then
    bin=$(bash "$(dirname "$self")/build-control-plane.sh" | tail -n 1) || die "build-control-plane.sh failed"
  fi
  [[ -x $bin/etcd && -x $bin/kube-apiserver ]] || die "no etcd/kube-apiserver in '$bin'"

  # Anything that fails from here on, or a signal to `up` itself, leaves no
  # server running behind it (a plain signal death would skip the EXIT trap).
  trap 'down "$dir"' EXIT
  trap 'exit 130' INT TERM HUP
  certs "$dir"

  # Bind three sockets to port 0 at once so the kernel hands out three distinct
  # free ports; there is a small window before the servers bind them.
  local ports etcd_port peer_port api_port
  ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  read -r etcd_port peer_port api_port <<<"$ports"
  log "ports: etcd $etcd_port, etcd peer $peer_port, kube-apiserver $api_port"

  local etcd_url=http://127.0.0.1:$etcd_port peer_url=http://127.0.0.1:$peer_port
  log "starting etcd"
  # stdio is detached from the caller so `$(controlplane.sh up ...)` returns.
  "$bin/etcd" --name=portcullis --data-dir="$dir/etcd-data" \
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="portcullis=$peer_url" --initial-cluster-state=new \
    --unsafe-no-fsync </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  wait_for etcd 60 $! "$dir/etcd.log" curl -fsS --max-time 2 "$etcd_url/health"

  log "starting kube-apiserver"
  # Since v1.37 the lease endpoint reconciler refuses a loopback advertise
  # address at startup; with no pods nothing needs the kubernetes Endpoints, so
  # the reconciler is off rather than advertising a non-loopback host address.
  "$bin/kube-apiserver" --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address=127.0.0.1 \
    --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \
    --client-ca-file="$dir/ca.crt" \
    --service-account-issuer="https://127.0.0.1:$api_port" \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none \
    </dev/null >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"
  wait_for kube-apiserver 120 $! "$dir/kube-apiserver.log" \
    curl -fsS --max-time 5 --cacert "$dir/ca.crt" --cert "$dir/admin.crt" --key "$dir/admin.key" \
    "https://127.0.0.1:$api_port/readyz"

  kubeconfig "$dir" "$api_port"
  if [[ -n $owner ]]; then
    # Its own session keeps it out of the owner's process group and signals.
    setsid "$self" _watchdog "$dir" "$owner" </dev/null >>"$dir/watchdog.log" 2>&1 &
    echo $! >"$dir/watchdog.pid"
    log "watchdog (pid $!) stops the control plane when pid $owner exits"
  fi
  trap - EXIT INT TERM HUP
  log "ready in ${SECONDS}s"
  echo "KUBECONFIG=$dir/kubeconfig"
}

case ${1:-} in
  up) [[ $# -ge 2 ]] || die "usage: $0 up DIR [--owner-pid PID]"; shift; up "$@" ;;
  down) [[ $# -eq 2 ]] || die "usage: $0 down DIR"; down "$(cd "$2" 2>/dev/null && pwd || echo "$2")" ;;
  _watchdog) watchdog "$2" "$3" ;;
  *) die "usage: $0 up DIR [--owner-pid PID] | down DIR" ;;
esac
