#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Checks po/POTFILES.in against the sources:
#  - every src/**/*.c, src/**/*.h or ui/**/*.ui file that has translatable
#    strings (_(), N_(), C_(), NC_(), ngettext or translatable="yes") must be
#    listed;
#  - every listed file must exist;
#  - the list must be sorted.
#
# Usage: check-potfiles.sh SOURCE_ROOT

set -u

if [ $# -ne 1 ]; then
  echo "usage: $0 SOURCE_ROOT" >&2
  exit 2
fi

cd "$1" || exit 2

potfiles=po/POTFILES.in
if [ ! -f "$potfiles" ]; then
  echo "$potfiles: not found" >&2
  exit 1
fi

listed=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' "$potfiles" | grep -v '^$')

status=0

# Listed files that do not exist.
while IFS= read -r f; do
  [ -n "$f" ] || continue
  if [ ! -f "$f" ]; then
    echo "$potfiles lists $f, which does not exist"
    status=1
  fi
done <<< "$listed"

# Files with translatable strings that are not listed.
c_pattern='(^|[^A-Za-z0-9_])(N?C?_|Q_|g_dngettext|g_dpgettext2?|ngettext)[[:space:]]*\('
ui_pattern='translatable="(yes|true|1)"'

candidates=$(
  {
    if [ -d src ]; then
      find src -type f \( -name '*.c' -o -name '*.h' \) -print0 |
        xargs -0 -r grep -lE -- "$c_pattern"
    fi
    if [ -d ui ]; then
      find ui -type f -name '*.ui' -print0 |
        xargs -0 -r grep -lE -- "$ui_pattern"
    fi
  } | LC_ALL=C sort
)

while IFS= read -r f; do
  [ -n "$f" ] || continue
  if ! grep -qxF -- "$f" <<< "$listed"; then
    echo "$f has translatable strings but is not listed in $potfiles"
    status=1
  fi
done <<< "$candidates"

# Sorted (byte order, as `LC_ALL=C sort` does).
if ! LC_ALL=C sort -c <<< "$listed" 2>/dev/null; then
  echo "$potfiles is not sorted; expected order:"
  LC_ALL=C sort <<< "$listed" | sed 's/^/  /'
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "$potfiles is complete ($(grep -c . <<< "$listed") files)"
fi

exit "$status"
