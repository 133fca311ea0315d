// replica-machine: containers forked from copy-on-write templates, seeded and booted with systemd-nspawn.
// A doorway: the commands are MachineTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

MachineTool.main()
