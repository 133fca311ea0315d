// replica-snap: read-only btrfs snapshots of service state, pruned by policy; run by
// replica-snap@.timer. The commands are SnapTool's, in the Replica module.
import Glibc
import Replica
import ReplicaKit

signal(SIGPIPE, SIG_IGN)  // a closed pipe is an error to report, not a reason to die
SnapTool.main()
