# Shared by scripts/postgres.sh and scripts/nats.sh (sourced, not run). The caller
# defines die() and say() with its own name in the messages.

# install_package PACKAGE WHAT: installs Debian's PACKAGE with apt-get (sudo when not root).
install_package() {
    local package=$1 what=$2 apt=(apt-get)
    say "$what is not installed; installing Debian's package $package"
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "$what is not installed and I am not root (no sudo either): install it with 'apt-get install $package' as root, then run me again"
        apt=(sudo apt-get)
    fi
    "${apt[@]}" update -qq >&2 &&
        "${apt[@]}" install -y -qq "$package" >/dev/null </dev/null ||
        die "could not install $what: run 'apt-get install $package' as root and look at its errors"
}

# port_in_use PORT: whether something accepts connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
