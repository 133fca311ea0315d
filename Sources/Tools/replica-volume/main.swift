// replica-volume: Nomad's dynamic host-volume plugin: volumes as subvolumes of the btrfs store.
// A doorway: the commands are VolumeTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

VolumeTool.main()
