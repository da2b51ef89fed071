#!/bin/sh
# Install the Vitrina gateway agent on Raspberry Pi OS or Debian 12 (bookworm), as root:
#
#   curl -fsSL https://<orchestrator>/install/gateway.sh | sudo sh -s -- \
#       --package <the vitrina wheel: a file or an https:// address> \
#       --code XXXX-XXXX --cloud https://<orchestrator>
#
# or, from a copy of this file, `sudo sh install-gateway.sh --package ... --code ...`.
# It installs what the agent needs from Debian's packages, puts the agent (vitrina with its
# `edge` extra) in a virtual environment at /opt/vitrina, makes the user it runs as
# (vitrina-edge, in the groups bluetooth and netdev), installs and enables the systemd unit
# that the package ships (provisioning/systemd/vitrina-edge.service) and, given a code,
# enrols the gateway and starts the agent. Run again, it changes only what is missing or
# different. `--uninstall` takes it all away again; `--uninstall --purge` also deletes the
# gateway's identity (/etc/vitrina) and its outbox (/var/lib/vitrina).
#
# Exit codes: 0 done; 1 a step failed (its message says which); 2 a usage error, or a
# bundle already there for a code; 3 the cloud refused the enrolment code; 4 something
# could not be reached (Debian's mirror, the package index, the cloud); 5 not run as root;
# 6 not a system this installer supports.
set -eu

PREFIX=/opt/vitrina
CONFIG_DIR=/etc/vitrina
STATE_DIR=/var/lib/vitrina
UNIT_NAME=vitrina-edge.service
UNIT_PATH=/etc/systemd/system/$UNIT_NAME
AGENT_USER=vitrina-edge
AGENT_GROUPS="bluetooth netdev"
# bluez: BLE scanning through bluetoothd; iw: Wi-Fi monitor mode and channels; libpcap0.8:
# scapy's capture; python3-venv: the agent's environment; ca-certificates: HTTPS to the
# cloud and the package index.
SYSTEM_PACKAGES="bluez iw libpcap0.8 python3 python3-venv ca-certificates"

EXIT_FAILED=1 EXIT_USAGE=2 EXIT_REFUSED=3 EXIT_UNREACHABLE=4 EXIT_NOT_ROOT=5
EXIT_UNSUPPORTED=6

say() { printf 'vitrina install: %s\n' "$*"; }
fail() { # fail CODE MESSAGE
    code=$1
    shift
    printf 'vitrina install: error: %s\n' "$*" >&2
    exit "$code"
}

usage() {
    cat <<'EOF'
usage: install-gateway.sh [--package SPEC] [--index-url URL] [--find-links DIR|URL]
                          [--no-index] [--code CODE --cloud URL [--ca-file FILE]] [--reenrol]
       install-gateway.sh --uninstall [--purge]

  --package SPEC     what pip installs: the vitrina wheel (a path or an https:// address)
                     or a requirement such as 'vitrina==0.1.0' from --index-url; the edge
                     extra is added. Needed on a first install; on a later run the agent
                     already installed is kept (or upgraded to SPEC when given)
  --index-url URL    the package index for vitrina and its dependencies (default: pip's, PyPI)
  --find-links LOC   a wheelhouse (directory or address) pip looks in too
  --no-index         only --find-links and --package: no index at all (offline)
  --code CODE        the one-time code from the console (Add gateway); needs --cloud
  --cloud URL        the orchestrator's https:// address
  --ca-file FILE     the CA that signed the cloud's certificate, for a private CA
  --reenrol          with --code: replace the identity this gateway already has
  --uninstall        remove the unit, the agent's environment and its user
  --purge            with --uninstall: delete /etc/vitrina (the gateway's identity) and
                     /var/lib/vitrina (events not yet sent) too
EOF
}

PACKAGE="" INDEX_URL="" FIND_LINKS="" NO_INDEX=0 CODE="" CLOUD="" CA_FILE="" REENROL=0
UNINSTALL=0 PURGE=0
need_value() { [ "$2" -ge 2 ] || fail $EXIT_USAGE "$1 needs a value (--help says more)"; }

parse_options() {
    while [ $# -gt 0 ]; do
        case $1 in
            --package) need_value "$1" $#; PACKAGE=$2; shift 2 ;;
            --index-url) need_value "$1" $#; INDEX_URL=$2; shift 2 ;;
            --find-links) need_value "$1" $#; FIND_LINKS=$2; shift 2 ;;
            --no-index) NO_INDEX=1; shift ;;
            --code) need_value "$1" $#; CODE=$2; shift 2 ;;
            --cloud) need_value "$1" $#; CLOUD=$2; shift 2 ;;
            --ca-file) need_value "$1" $#; CA_FILE=$2; shift 2 ;;
            --reenrol) REENROL=1; shift ;;
            --uninstall) UNINSTALL=1; shift ;;
            --purge) PURGE=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; fail $EXIT_USAGE "unknown option: $1" ;;
        esac
    done
    if [ $UNINSTALL = 1 ]; then
        if [ -n "$PACKAGE$INDEX_URL$FIND_LINKS$CODE$CLOUD$CA_FILE" ] \
                || [ $NO_INDEX$REENROL != 00 ]; then
            fail $EXIT_USAGE "--uninstall takes no other option but --purge"
        fi
    else
        [ $PURGE = 0 ] || fail $EXIT_USAGE "--purge goes with --uninstall"
        if [ -n "$CODE" ] && [ -z "$CLOUD" ]; then
            fail $EXIT_USAGE "--code needs --cloud, the orchestrator's https:// address"
        fi
        [ -z "$CLOUD" ] || [ -n "$CODE" ] \
            || fail $EXIT_USAGE "--cloud goes with --code (the one-time code from the console)"
        [ $REENROL = 0 ] || [ -n "$CODE" ] || fail $EXIT_USAGE "--reenrol needs --code"
        if [ -n "$CA_FILE" ] && [ ! -r "$CA_FILE" ]; then
            fail $EXIT_USAGE "cannot read the CA file $CA_FILE"
        fi
    fi
}

# --- checks -------------------------------------------------------------------------------

check_system() {
    [ -r /etc/os-release ] || fail $EXIT_UNSUPPORTED "no /etc/os-release: not a Debian system"
    # shellcheck disable=SC1091
    os_id=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck disable=SC1091
    os_codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    # shellcheck disable=SC1091
    os_name=$(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")
    case "$os_id:$os_codename" in
        debian:bookworm|raspbian:bookworm) ;;
        *) fail $EXIT_UNSUPPORTED "$os_name is not supported: this installer is for Debian 12 (bookworm) and Raspberry Pi OS based on it" ;;
    esac
    command -v apt-get >/dev/null 2>&1 || fail $EXIT_UNSUPPORTED "apt-get is missing"
    command -v systemctl >/dev/null 2>&1 \
        || fail $EXIT_UNSUPPORTED "systemd is missing: the agent runs as a systemd service"
}

# Where the agent comes from: needed unless it is installed already.
check_source() {
    if [ -z "$PACKAGE" ]; then
        [ -x "$PREFIX/bin/vitrina-edge" ] \
            || fail $EXIT_USAGE "say where the agent comes from: --package (the vitrina wheel, or a requirement with --index-url)"
        return
    fi
    case $PACKAGE in
        *://*|vitrina|vitrina[=~!\<\>\[]*) ;;
        *) [ -r "$PACKAGE" ] || fail $EXIT_USAGE "no such file: $PACKAGE (--package)" ;;
    esac
}

# What a change of the installation would change: the unit, the bundle, the packages.
fingerprint() {
    cat "$UNIT_PATH" "$CONFIG_DIR"/* 2>/dev/null | cksum
    "$PREFIX/bin/python" -m pip freeze --all 2>/dev/null | cksum
}

# systemd running here (not only installed, as in a chroot or an image being built).
systemd_running() { [ -d /run/systemd/system ]; }

# --- uninstall ----------------------------------------------------------------------------

uninstall() {
    if [ -e "$UNIT_PATH" ] || [ -L "/etc/systemd/system/multi-user.target.wants/$UNIT_NAME" ]; then
        if systemd_running; then
            systemctl disable --now "$UNIT_NAME" >/dev/null 2>&1 || true
        else
            systemctl disable "$UNIT_NAME" >/dev/null 2>&1 || true
        fi
        rm -f "$UNIT_PATH" "/etc/systemd/system/multi-user.target.wants/$UNIT_NAME"
        ! systemd_running || systemctl daemon-reload
        say "removed the service $UNIT_NAME"
    fi
    if [ -e "$PREFIX/pyvenv.cfg" ]; then
        rm -rf "$PREFIX"
        say "removed the agent's environment $PREFIX"
    elif [ -e "$PREFIX" ]; then
        say "left $PREFIX alone: it is not a Python environment this installer made"
    fi
    if getent passwd "$AGENT_USER" >/dev/null; then
        userdel "$AGENT_USER"
        say "removed the user $AGENT_USER"
    fi
    if getent group "$AGENT_USER" >/dev/null; then
        groupdel "$AGENT_USER"
    fi
    if [ $PURGE = 1 ]; then
        rm -rf "$CONFIG_DIR" "$STATE_DIR"
        say "deleted the gateway's identity ($CONFIG_DIR) and its outbox ($STATE_DIR)"
    else
        # Their user and group are gone: root keeps them until a new install.
        for path in "$CONFIG_DIR" "$STATE_DIR"; do
            rmdir "$path" 2>/dev/null || true
            [ ! -e "$path" ] || chown -R root:root "$path"
        done
        if [ -e "$CONFIG_DIR/edge.toml" ] || [ -e "$STATE_DIR" ]; then
            say "kept the gateway's identity ($CONFIG_DIR) and its outbox ($STATE_DIR): --purge deletes them"
        fi
    fi
    say "uninstalled (Debian's packages bluez, iw, libpcap0.8 and python3-venv stay)"
}

# --- install ------------------------------------------------------------------------------

install_system_packages() {
    missing=""
    for package in $SYSTEM_PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing="$missing $package"
    done
    if [ -z "$missing" ]; then
        say "Debian's packages are there: $SYSTEM_PACKAGES"
        return
    fi
    say "installing from Debian's packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    if ! apt-get update -q >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        fail $EXIT_UNREACHABLE "cannot reach Debian's package mirror (apt-get update failed): check the network"
    fi
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing >>"$log" 2>&1; then
        cat "$log" >&2
        if grep -q 'Failed to fetch\|Temporary failure resolving\|Could not connect\|Unable to locate package' "$log"; then
            rm -f "$log"
            fail $EXIT_UNREACHABLE "cannot reach Debian's package mirror: check the network"
        fi
        rm -f "$log"
        fail $EXIT_FAILED "apt-get could not install$missing"
    fi
    rm -f "$log"
}

check_python() {
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fail $EXIT_UNSUPPORTED "the agent needs Python 3.11 or newer; this system has $(python3 --version 2>&1)"
}

make_user() {
    for group in $AGENT_GROUPS; do
        if ! getent group "$group" >/dev/null; then
            groupadd --system "$group"
            say "made the group $group"
        fi
    done
    if ! getent passwd "$AGENT_USER" >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir "$STATE_DIR" \
            --shell /usr/sbin/nologin --comment "Vitrina gateway agent" "$AGENT_USER"
        say "made the user $AGENT_USER"
    fi
    for group in $AGENT_GROUPS; do
        if ! id -nG "$AGENT_USER" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" "$AGENT_USER"
        fi
    done
}

pip_failed() { # pip_failed LOG
    if grep -q 'NewConnectionError\|Temporary failure in name resolution\|Name or service not known\|Network is unreachable\|ConnectTimeoutError' "$1"; then
        fail $EXIT_UNREACHABLE "cannot reach the package index: check the network (or give --find-links and --no-index)"
    fi
    fail $EXIT_FAILED "pip could not install the agent (its output is above)"
}

install_agent() {
    if [ ! -x "$PREFIX/bin/python" ] || ! "$PREFIX/bin/python" -c '' 2>/dev/null; then
        python3 -m venv --clear "$PREFIX" || fail $EXIT_FAILED "cannot make the environment $PREFIX"
        say "made the environment $PREFIX"
    fi
    if [ -z "$PACKAGE" ] && [ -x "$PREFIX/bin/vitrina-edge" ]; then
        say "the agent is there: $("$PREFIX/bin/python" -m pip show vitrina 2>/dev/null | sed -n 's/^Version: /vitrina /p')"
        return
    fi
    set -- --disable-pip-version-check --no-input --quiet --upgrade
    [ -z "$INDEX_URL" ] || set -- "$@" --index-url "$INDEX_URL"
    [ -z "$FIND_LINKS" ] || set -- "$@" --find-links "$FIND_LINKS"
    [ $NO_INDEX = 0 ] || set -- "$@" --no-index
    # The edge extra: "vitrina==0.1.0" is asked for as "vitrina[edge]==0.1.0", a wheel's
    # address as "vitrina[edge] @ https://...", a wheel's path as "path[edge]".
    case $PACKAGE in
        *\[*) requirement=$PACKAGE ;;
        vitrina|vitrina[=~!\<\>]*) requirement="vitrina[edge]${PACKAGE#vitrina}" ;;
        *://*) requirement="vitrina[edge] @ $PACKAGE" ;;
        *) requirement="${PACKAGE}[edge]" ;;
    esac
    log=$(mktemp)
    if ! "$PREFIX/bin/python" -m pip install "$@" "$requirement" 2>"$log"; then
        cat "$log" >&2
        pip_failed "$log"
    fi
    rm -f "$log"
    "$PREFIX/bin/vitrina-edge" --help >/dev/null \
        || fail $EXIT_FAILED "the agent was installed but does not run: $PREFIX/bin/vitrina-edge --help failed"
    say "installed $("$PREFIX/bin/python" -m pip show vitrina | sed -n 's/^Version: /vitrina /p') in $PREFIX"
}

shipped_unit() {
    "$PREFIX/bin/python" - <<'EOF'
import pathlib, provisioning
print(pathlib.Path(provisioning.__file__).parent / "systemd" / "vitrina-edge.service")
EOF
}

install_unit() {
    unit=$(shipped_unit)
    [ -r "$unit" ] || fail $EXIT_FAILED "the package has no unit file at $unit"
    if ! cmp -s "$unit" "$UNIT_PATH"; then
        install -m 0644 -o root -g root "$unit" "$UNIT_PATH"
        ! systemd_running || systemctl daemon-reload
        say "installed the service $UNIT_PATH"
    fi
    # The unit starts the agent only once a config is there (ConditionPathExists).
    if ! systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
        systemctl enable --quiet "$UNIT_NAME" || fail $EXIT_FAILED "systemctl enable $UNIT_NAME failed"
    fi
}

# The agent reads its config as its own user: root owns it, the agent's group reads it.
own_config() {
    install -d -m 0750 -o root -g "$AGENT_USER" "$CONFIG_DIR"
    chown root:"$AGENT_USER" "$CONFIG_DIR"
    chmod 0750 "$CONFIG_DIR"
    for file in "$CONFIG_DIR"/*; do
        [ -f "$file" ] || continue
        chown root:"$AGENT_USER" "$file"
        chmod 0640 "$file"
    done
}

enrol() {
    if [ -z "$CODE" ]; then
        return
    fi
    if [ -e "$CONFIG_DIR/edge.toml" ] && [ $REENROL = 0 ]; then
        say "this gateway is enrolled already ($CONFIG_DIR/edge.toml): the code was not used (--reenrol replaces the identity)"
        return
    fi
    set -- --code "$CODE" --cloud "$CLOUD" --dir "$CONFIG_DIR" --group "$AGENT_USER"
    [ -z "$CA_FILE" ] || set -- "$@" --ca-file "$CA_FILE"
    [ $REENROL = 0 ] || set -- "$@" --force
    status=0
    "$PREFIX/bin/vitrina-edge" enrol "$@" || status=$?
    case $status in
        0) ;;
        2) fail $EXIT_USAGE "enrolment failed (above); the agent is installed" ;;
        3) fail $EXIT_REFUSED "the cloud refused the code: ask the console for a new one, then run this again" ;;
        4) fail $EXIT_UNREACHABLE "cannot enrol now; the code was not used: run this again" ;;
        *) fail $EXIT_FAILED "enrolment failed (exit $status)" ;;
    esac
}

start() {
    if [ ! -e "$CONFIG_DIR/edge.toml" ]; then
        say "installed; not enrolled yet: run this again with --code and --cloud, or put a bundle in $CONFIG_DIR"
        return
    fi
    if systemd_running; then
        if [ "$(fingerprint)" != "$BEFORE" ]; then
            systemctl restart "$UNIT_NAME" \
                || fail $EXIT_FAILED "the agent did not start: journalctl -u $UNIT_NAME says why"
        else  # nothing changed: started if it was not, left alone if it was
            systemctl start "$UNIT_NAME" \
                || fail $EXIT_FAILED "the agent did not start: journalctl -u $UNIT_NAME says why"
        fi
        say "the agent is running: systemctl status $UNIT_NAME"
    else
        say "systemd is not running here: the agent starts at the next boot"
    fi
}

main() {
    parse_options "$@"
    [ "$(id -u)" = 0 ] \
        || fail $EXIT_NOT_ROOT "run this as root (sudo sh ...): it installs packages, a user and a system service"
    if [ $UNINSTALL = 1 ]; then
        uninstall
        return
    fi
    check_system
    check_source
    BEFORE=$(fingerprint)
    install_system_packages
    check_python
    make_user
    install_agent
    install_unit
    enrol
    own_config
    start
}

# Everything above is read before anything runs, and nothing that runs reads the rest of
# the script from standard input (as `curl ... | sh` would give it).
main "$@" </dev/null
