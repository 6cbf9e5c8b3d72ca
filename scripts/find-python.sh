#!/bin/sh
# Prints the path of a Python 3.12+ interpreter, or says what to install and fails.
# PySide6 6.12 on Python 3.11 corrupts reference counts on signal emits and aborts,
# so 3.11 is never acceptable, even when it is the default python3.
works() {
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}
for candidate in python3.12 python3.13 python3.14 python3; do
    # A pyenv shim can exist and still answer "command not found": run it to be sure.
    if command -v "$candidate" >/dev/null 2>&1 && works "$candidate"; then
        command -v "$candidate"
        exit 0
    fi
done
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for version in $(pyenv versions --bare 2>/dev/null | sort -V); do
        case "$version" in
            3.1[2-9]* | 3.[2-9][0-9]*)
                if works "$root/versions/$version/bin/python3"; then
                    echo "$root/versions/$version/bin/python3"
                    exit 0
                fi
                ;;
        esac
    done
fi
cat >&2 <<'MSG'
Meridian Terminal needs Python 3.12 or newer, and none was found.
Install it, then run the command again:
  Debian/Ubuntu: sudo apt-get install python3.12 python3.12-venv   (or use pyenv: pyenv install 3.12)
  macOS:         brew install python@3.12
  Windows:       winget install Python.Python.3.12
MSG
exit 1
