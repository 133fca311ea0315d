// replica-shift: prepares a sandboxed service's state and config (ExecStartPre=) and prints its drop-in.
// A doorway: the commands are ShiftTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

ShiftTool.main()
