#!/bin/sh
# Open MPI launch agent (--mca plm_rsh_agent) for tests/py/test_server_tp_netns.py: stands in for
# ssh, "logging in" to a host by entering the network namespace that plays it. mpirun calls it as
#   netns_rsh.sh [options] HOST COMMAND...
# and it runs COMMAND (a remote shell's command line, as ssh would pass it) with
#   ip netns exec NS sh -c "COMMAND"
# where NS is HOST's entry in DS_NETNS_HOSTS ("HOST=NS HOST=NS ...", from mpirun's environment).
while [ $# -gt 0 ]; do
  case "$1" in -*) shift ;; *) break ;; esac
done
host="$1"
shift
for pair in $DS_NETNS_HOSTS; do
  if [ "${pair%%=*}" = "$host" ]; then
    exec ip netns exec "${pair#*=}" sh -c "$*"
  fi
done
echo "netns_rsh.sh: no network namespace for host '$host' in DS_NETNS_HOSTS='$DS_NETNS_HOSTS'" >&2
exit 255
