// replica-run: runs a command in the sandbox a service profile describes, without systemd.
// A doorway: the commands are RunTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

RunTool.main()
