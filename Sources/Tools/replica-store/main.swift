// replica-store: the embedded default store, a loop-mounted btrfs image file; run at boot by replica-store.service.
// A doorway: the commands are StoreTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

StoreTool.main()
