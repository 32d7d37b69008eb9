# Kills the command whose pid ptest's exec wrapper wrote to the file $1, with its process
# group and every descendant (also those that left the group). Each generation is stopped
# before its children are looked for, so nothing forks away meanwhile; then all are killed.
# POSIX sh only: it runs in whatever image the environment has.
# A command killed as it starts may not have written its pid yet: give it a few seconds.
tries=0
while [ ! -s "$1" ] && [ $tries -lt 5 ]; do
  sleep 1
  tries=$((tries + 1))
done
pid=$(cat "$1" 2>/dev/null) || exit 0
case $pid in '' | *[!0-9]*) exit 0 ;; esac
kill -STOP "$pid" 2>/dev/null || exit 0
tree=$pid
frontier=$pid
while [ -n "$frontier" ]; do
  next=
  for status in /proc/[0-9]*/status; do
    ppid=
    while read -r key value; do
      if [ "$key" = "PPid:" ]; then ppid=$value; break; fi
    done < "$status" 2>/dev/null
    for parent in $frontier; do
      if [ "$ppid" = "$parent" ]; then
        child=${status#/proc/}
        child=${child%/status}
        kill -STOP "$child" 2>/dev/null
        next="$next $child"
      fi
    done
  done
  tree="$tree$next"
  frontier=$next
done
kill -KILL -- "-$pid" 2>/dev/null
# shellcheck disable=SC2086 # one pid a word
kill -KILL $tree 2>/dev/null
rm -f "$1"
exit 0
