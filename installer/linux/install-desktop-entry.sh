#!/bin/sh
# Adds Meridian Terminal (this portable folder) to the current user's application menu.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/share/meridian-terminal.png" "$icons/meridian-terminal.png"
sed -e "s|^Exec=.*|Exec=\"$here/meridian\"|" -e "s|^TryExec=.*|TryExec=$here/meridian|" \
    "$here/share/meridian-terminal.desktop" > "$apps/meridian-terminal.desktop"
echo "Added Meridian Terminal to the application menu ($apps/meridian-terminal.desktop)."
